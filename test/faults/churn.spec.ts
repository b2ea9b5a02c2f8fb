/**
 * Churn run (`npm run test:faults`; minutes, so not in `npm test`): ten
 * volunteers train mnist-softmax (minibatch 200) for two epochs (`--epochs 2`: until every shard was processed twice) while
 * three of them (30%) are closed at random moments of the first epochs. The
 * job completes, the coordinator's epoch coverage (shards whose every example
 * was processed, per epoch) completes epoch after epoch, so no shard of a
 * closed page was lost, and the seven survivors end with equal digests.
 * GRID_CHURN_SEED=N replays a schedule (the seed is printed).
 */
import { test, expect, type BrowserContext } from "@playwright/test";
import { waitFor, type Status } from "../support/coordinator.ts";
import { coordinatorPerTest } from "../support/coordinator-per-test.ts";
import { rng } from "../support/random.ts";
import { digestsAgree } from "../../client/replica.ts";

const PAGES = 10;
const KILLS = 3;
const EPOCHS = 2;

type CoverageStatus = Status & { coverage: { epoch: number; shards: number; covered: number; epochsDone: { epoch: number; t: number }[] } };

const coordinator = coordinatorPerTest();

test("30% of the pages closed at random moments: the job completes, no shard is lost, the survivors agree", async ({ browser }) => {
  test.setTimeout(420_000);
  const seed = Number(process.env["GRID_CHURN_SEED"] ?? Date.now() % 1_000_000);
  const random = rng(seed);
  const victims: number[] = [];
  while (victims.length < KILLS) {
    const v = Math.floor(random() * PAGES);
    if (!victims.includes(v)) victims.push(v);
  }
  // Moments in seconds after the first training step, spread over the first epochs.
  const moments = victims.map(() => 2 + random() * 10).sort((a, b) => a - b);
  console.log(`churn seed ${seed}: closing pages ${victims.map((v) => `c${v}`).join(", ")} at ${moments.map((m) => m.toFixed(1)).join(", ")} s`);

  const c = await coordinator.start(["--min-workers", String(PAGES), "--epochs", String(EPOCHS), "--batch", "200", "--target-accuracy", "0.999", "--drop-stragglers", "off", "--eval-interval", "3000"]);
  const contexts: BrowserContext[] = [];
  for (let i = 0; i < PAGES; i++) {
    const ctx = await browser.newContext();
    await (await ctx.newPage()).goto(`${c.url}/?name=c${i}&backend=cpu`);
    contexts.push(ctx);
  }
  await waitFor("the first training step", async () => (await c.status()).clock.max > 0, 120_000, 200);
  const t0 = Date.now();
  const shardsAt: number[] = [];
  const closing: Promise<void>[] = [];
  for (let k = 0; k < KILLS; k++) {
    const wait = t0 + (moments[k] as number) * 1000 - Date.now();
    if (wait > 0) await new Promise((r) => setTimeout(r, wait));
    const s = (await c.status().catch(() => null)) as CoverageStatus | null;
    shardsAt.push(s?.workers.find((w) => w.name === `c${victims[k]}`)?.shards ?? -1);
    // Not awaited: closing a page takes seconds on a loaded machine and must not delay the next kill.
    closing.push((contexts[victims[k] as number] as BrowserContext).close());
  }
  await Promise.all(closing);

  const done = (await waitFor("the job to complete", async () => {
    // A status request may fail while ten pages load the machine: ask again.
    const s = (await c.status().catch(() => null)) as CoverageStatus | null;
    if (s === null) return null;
    return s.job.state === "done" && s.workers.filter((w) => w.state === "active" && w.digest !== null).length === PAGES - KILLS ? s : null;
  }, 300_000, 1000)) as CoverageStatus;
  const elapsed = (Date.now() - t0) / 1000;

  // The closed pages left (their shards held at the moment: shardsAt), the others survived.
  const killedNames = victims.map((v) => `c${v}`).sort();
  expect(done.workers.filter((w) => w.state === "left").map((w) => w.name).sort()).toEqual(killedNames);
  expect(shardsAt.filter((n) => n >= 0).every((n) => n > 0)).toBe(true); // (-1: the status did not answer then)
  const survivors = done.workers.filter((w) => w.state === "active");
  expect(survivors).toHaveLength(PAGES - KILLS);

  // Coverage: epochs in which every shard was processed in full, despite the shards the closed pages held.
  const cov = done.coverage;
  const epochEvents = done.events.filter((e) => e.kind === "epoch");
  console.log(
    `churn: done in ${elapsed.toFixed(1)} s after the first step; ${done.examples} examples; ${cov.shards} shards; ` +
      `${cov.epochsDone.length} epochs fully covered, epoch ${cov.epoch} at ${cov.covered}/${cov.shards}; closed pages held ${shardsAt.join(", ")} shards`,
  );
  expect(cov.epochsDone.length).toBeGreaterThanOrEqual(EPOCHS);
  expect(epochEvents.map((e) => e.detail)).toEqual(cov.epochsDone.map((e) => `epoch ${e.epoch}: every training example processed`));
  // The first epoch completed after the last page was closed: the closed pages' shards were processed by others.
  const lastKillAt = Math.max(...done.events.filter((e) => e.kind === "left").map((e) => e.t));
  expect(cov.epochsDone.some((e) => e.t > lastKillAt)).toBe(true);

  // Equal replicas at the end.
  const [d0, ...rest] = survivors.map((w) => w.digest);
  expect(d0).toBeTruthy();
  for (const d of rest) expect(d0 && d && digestsAgree(d0, d)).toBe(true);
});
