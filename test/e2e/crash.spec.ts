/**
 * The coordinator's host dies in the middle of a job: two volunteer pages
 * train, the coordinator is killed with SIGKILL once it has acknowledged a
 * checkpoint, and a new coordinator starts on the same port with the same
 * state directory and flags. The pages reconnect by themselves, rejoin, start
 * from the checkpoint and train to the target with equal end digests.
 */
import { test, expect, type Page } from "@playwright/test";
import { startCoordinatorProcess, waitFor, type CoordinatorProcess, type Status } from "../support/coordinator.ts";
import { digestsAgree } from "../../client/replica.ts";

interface DurableStatus extends Status {
  durable: { incarnation: number; resumedFrom: { clock: number; file: string } | null; checkpoint: { clock: number } | null };
}

let coord: CoordinatorProcess | null = null;

test.afterEach(async ({}, testInfo) => {
  if (coord && testInfo.status !== testInfo.expectedStatus) console.log(coord.output().split("\n").slice(-40).join("\n"));
  await coord?.stop();
  coord = null;
});

test("pages reconnect after a kill -9 of the coordinator and the job resumes from its checkpoint", async ({ browser }) => {
  const flags = ["--min-workers", "2", "--target-accuracy", "0.9", "--checkpoint-interval", "300"];
  const first = await startCoordinatorProcess(flags);
  coord = first;
  const pages: Page[] = [];
  for (let i = 0; i < 2; i++) {
    const page = await (await browser.newContext()).newPage();
    await page.goto(`${first.url}/?name=crash-${i}&backend=cpu`);
    pages.push(page);
  }
  const before = await waitFor("a checkpoint while the job runs", async () => {
    const s = (await first.status()) as DurableStatus;
    return s.job.state === "running" && (s.durable.checkpoint?.clock ?? 0) >= 10 ? s : null;
  }, 120_000, 100);
  expect(before.durable.incarnation).toBe(1);
  const acked = before.durable.checkpoint?.clock ?? 0;
  const bestBefore = Math.max(0, ...before.metrics.test.series.map(([, v]) => v));
  expect(bestBefore).toBeLessThan(0.9);

  const exited = new Promise((r) => first.child.once("exit", r));
  first.child.kill("SIGKILL");
  await exited;
  const port = Number(new URL(first.url).port);
  const second = await startCoordinatorProcess(flags, 60_000, { stateDir: first.stateDir, port });
  coord = second;
  expect(second.output()).toMatch(/resuming the job from its checkpoint at clock \d+/);

  const done = (await waitFor("the resumed job to finish", async () => {
    const s = await second.status();
    return s.job.state === "done" ? s : null;
  }, 4 * 60_000, 1000)) as DurableStatus;
  expect(done.durable.incarnation).toBe(2);
  const resumedAt = done.durable.resumedFrom?.clock ?? -1;
  expect(resumedAt).toBeGreaterThanOrEqual(acked);
  expect(done.events.some((e) => e.kind === "resumed")).toBe(true);
  // History from before the crash is kept: what the status showed up to the checkpoint's clock.
  const keptLoss = before.metrics.trainLoss.filter(([c]) => c <= resumedAt);
  expect(keptLoss.length).toBeGreaterThan(0);
  for (const point of keptLoss) expect(done.metrics.trainLoss).toContainEqual(point);
  for (const point of before.metrics.test.series.filter(([c]) => c <= resumedAt)) expect(done.metrics.test.series).toContainEqual(point);
  expect(Math.max(...done.metrics.test.series.map(([, v]) => v))).toBeGreaterThanOrEqual(0.9);
  // The pages rejoined on their own as new workers of this incarnation, started at the checkpoint,
  // recognized as the same volunteers (the state log keeps their credentials' hashes).
  const active = done.workers.filter((w) => w.state === "active");
  expect(active).toHaveLength(2);
  const firstIds = before.workers.map((w) => w.id);
  for (const w of active) expect(firstIds).toContain((w as unknown as { lineage: string }).lineage);
  expect(done.events.filter((e) => e.kind === "rejoined").length).toBeGreaterThanOrEqual(2);
  for (const w of active) {
    expect(w.startClock).toBeGreaterThanOrEqual(resumedAt);
    expect(w.clock).toBeGreaterThan(resumedAt);
  }
  for (const p of pages) expect((await p.evaluate(() => (window as unknown as { grid: { log: string[] } }).grid.log)).join("\n")).toMatch(/resumed from the coordinator's checkpoint|took a snapshot/);
  const [a, b] = active.map((w) => w.digest);
  expect(a && b && digestsAgree(a, b)).toBe(true);
});
