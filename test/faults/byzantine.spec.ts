/**
 * A Byzantine volunteer: five pages train mnist-softmax, one of them with a
 * worker that computes every update sign-flipped and scaled ×10. The test
 * injects it through the page only: it routes that page's training-worker
 * script and puts in front of it a wrapper that multiplies the learning rate
 * the worker is started with by −10 (the page itself, the coordinator and
 * every other page are untouched; nothing in the product can switch this on).
 * Three runs of the same length under BSP without spot-checks: clean with
 * mean, attacked with mean (fails visibly), attacked with trimmed:0.2 (within
 * a point of the clean run). A fourth, attacked with trimmed:0.2 and
 * spot-checks every second: the attacker, and only it, is flagged and, after
 * three failed checks, dropped.
 */
import { test, expect, type Browser, type BrowserContext } from "@playwright/test";
import { startCoordinatorProcess, waitFor, type CoordinatorProcess, type Status } from "../support/coordinator.ts";
import { digestsAgree } from "../../client/replica.ts";

const WORKERS = 5;
const CLOCKS = Number(process.env["GRID_BYZANTINE_CLOCKS"] ?? 150);
/** A run's accuracy: the mean of the test evaluations in its last 40 clocks (one every 5: single evaluations swing by several points). */
const TAIL = 40;

/** Runs in the attacker's Web Worker before its code: the `start` call's welcome gets learningRate × −10. */
const ATTACK = `
{
  const add = self.addEventListener;
  self.addEventListener = function (type, listener, options) {
    if (type !== "message" || typeof listener !== "function") return add.call(this, type, listener, options);
    return add.call(this, type, function (ev) {
      const d = ev.data;
      if (d && d.type === "APPLY" && Array.isArray(d.path) && d.path[0] === "start") {
        const w = d.argumentList && d.argumentList[1];
        if (w && w.type === "RAW" && w.value && w.value.job) w.value.job.learningRate *= -10;
      }
      return listener.call(this, ev);
    }, options);
  };
}
`;

async function attackerContext(browser: Browser): Promise<BrowserContext> {
  const ctx = await browser.newContext();
  await ctx.route(/\/assets\/worker-[^/]*\.js$/, async (route) => {
    const res = await route.fetch();
    const body = await res.text();
    // Only the training worker (it exposes the replica's loop); other workers pass unchanged.
    const training = body.includes("the step produced non-finite numbers");
    await route.fulfill({ response: res, body: training ? ATTACK + body : body });
  });
  return ctx;
}

interface RunResult {
  readonly accuracy: number;
  readonly final: number;
  readonly status: Status & Record<string, unknown>;
}

let coord: CoordinatorProcess | null = null;
const contexts: BrowserContext[] = [];

test.afterEach(async ({}, testInfo) => {
  if (testInfo.status !== testInfo.expectedStatus && coord) console.log(coord.output().split("\n").slice(-60).join("\n"));
  await coord?.stop();
  coord = null;
  for (const c of contexts.splice(0)) await c.close().catch(() => undefined);
});

async function run(browser: Browser, flags: string[], attacker: boolean, clocks = CLOCKS): Promise<RunResult> {
  const c = await startCoordinatorProcess(["--min-workers", String(WORKERS), "--max-clock", String(clocks), "--target-accuracy", "0.999", "--work-sizing", "off", "--drop-stragglers", "off", "--consistency", "bsp", "--eval-interval", "0", "--eval-every", "5", ...flags]);
  coord = c;
  for (let i = 0; i < WORKERS; i++) {
    const bad = attacker && i === WORKERS - 1;
    const ctx = bad ? await attackerContext(browser) : await browser.newContext();
    contexts.push(ctx);
    const page = await ctx.newPage();
    await page.goto(`${c.url}/?name=${bad ? "attacker" : `honest-${i}`}&backend=cpu`);
  }
  const done = await waitFor("the job to finish", async () => {
    const s = await c.status();
    const last = s.metrics.test.series.at(-1);
    const survivors = s.workers.filter((w) => w.state === "active");
    const drained = survivors.length > 0 && survivors.every((w) => w.digest !== null);
    return s.job.state === "done" && drained && last !== undefined && last[0] >= clocks ? s : null;
  }, 150_000, 500);
  const final = (done.metrics.test.series.at(-1) as [number, number])[1];
  const tail = done.metrics.test.series.filter(([clock]) => clock > clocks - TAIL).map(([, v]) => v);
  const accuracy = tail.reduce((a, b) => a + b, 0) / tail.length;
  await c.stop();
  coord = null;
  for (const ctx of contexts.splice(0)) await ctx.close();
  return { accuracy, final, status: done as RunResult["status"] };
}

test("one volunteer sending sign-flipped ×10 updates: mean fails, trimmed:0.2 loses at most a point against the clean run", async ({ browser }) => {
  test.setTimeout(600_000);
  const off = ["--spot-every", "0"];
  const clean = await run(browser, off, false);
  const attackedMean = await run(browser, off, true);
  const attackedTrimmed = await run(browser, [...off, "--aggregation", "trimmed:0.2"], true);
  const show = (r: RunResult): string => `${r.accuracy.toFixed(4)} (final ${r.final.toFixed(4)})`;
  const note = `test accuracy over clocks ${CLOCKS - TAIL + 1}..${CLOCKS}: clean mean ${show(clean)}, attacked mean ${show(attackedMean)}, attacked trimmed:0.2 ${show(attackedTrimmed)}`;
  console.log(note);
  test.info().annotations.push({ type: "byzantine", description: note });

  expect(clean.accuracy).toBeGreaterThan(0.8);
  // Plain mean: the attacker outweighs the four honest workers (4 − 10 < 0).
  expect(attackedMean.accuracy).toBeLessThan(clean.accuracy - 0.2);
  // Trimmed mean with clipping: at most one point below the clean run. (It may
  // well be above: the clean mean run, a sum of five updates a clock, swings
  // more from one evaluation to the next.)
  expect(attackedTrimmed.accuracy).toBeGreaterThanOrEqual(clean.accuracy - 0.01);
  expect(attackedTrimmed.status["aggregation"]).toEqual({ rule: "trimmed:0.2", clip: "auto" });

  // Every replica of the robust run ends equal (the attacker's own replica too: it aggregates the same updates).
  const digests = attackedTrimmed.status.workers.filter((w) => w.state === "active").map((w) => w.digest);
  expect(digests).toHaveLength(WORKERS);
  for (const d of digests.slice(1)) expect(digests[0] && d && digestsAgree(digests[0], d)).toBe(true);
});

type TrustWorker = Status["workers"][number] & { trust: { trust: number; checks: number; failures: number } | null; dropReason: string | null };
type TrustStatus = Omit<Status, "workers"> & { workers: TrustWorker[] };

test("spot-checks flag the volunteer whose updates are sign-flipped ×10, and only it, then drop it", async ({ browser }) => {
  test.setTimeout(300_000);
  const r = await run(browser, ["--aggregation", "trimmed:0.2", "--spot-every", "1000"], true, 100);
  const s = r.status as unknown as TrustStatus;
  const attacker = s.workers.find((w) => w.name === "attacker");
  expect(attacker).toBeDefined();
  const flagged = s.events.filter((e) => e.kind === "flagged");
  const note = `flagged events: ${flagged.map((e) => `${e.worker}: ${e.detail}`).join(" | ")}; trust: ${s.workers.map((w) => `${w.name} ${JSON.stringify(w.trust)}`).join(", ")}`;
  console.log(note);
  test.info().annotations.push({ type: "spot-checks", description: note });
  expect(flagged.length).toBeGreaterThanOrEqual(1);
  expect(new Set(flagged.map((e) => e.worker))).toEqual(new Set([attacker?.id]));
  expect(attacker?.state).toBe("dropped");
  expect(attacker?.dropReason).toMatch(/failed 3 spot-checks/);
  const honest = s.workers.filter((w) => w.name !== "attacker");
  expect(honest).toHaveLength(WORKERS - 1);
  for (const w of honest) {
    expect(w.state).toBe("active");
    expect(w.trust?.failures).toBe(0);
    expect(w.trust?.checks ?? 0).toBeGreaterThan(0);
    expect(w.trust?.trust ?? 0).toBeGreaterThan(attacker?.trust?.trust ?? 1);
  }
  // The survivors end with equal replicas.
  const digests = honest.map((w) => w.digest);
  for (const d of digests.slice(1)) expect(digests[0] && d && digestsAgree(digests[0], d)).toBe(true);
});
