/**
 * Two jobs on one grid in real browsers: six volunteer pages shared by
 * weighted fair share (2:1), the volunteers of the job that reaches its
 * target first moving to the other, and each job's end digests agreeing among its
 * own workers. Pause and resume moves (a clean leave mid-job, cached shards on
 * return) are tested in Node (test/unit/jobs.test.ts).
 */
import { test, expect, type Page } from "@playwright/test";
import { waitFor, type CoordinatorProcess, type Status } from "../support/coordinator.ts";
import { fetchJobs, reportJobsFailure, startJobsCoordinator } from "../support/jobs-grid.ts";
import { digestsAgree } from "../../client/replica.ts";
import { KEEP_AT_END } from "../../coordinator/jobs.ts";

type JobStatus = Status & { id: string; weight: number; volunteers: number; share: { target: number; actual: number }; served: { shards: number; bytes: number } };
interface JobsList {
  jobs: JobStatus[];
  volunteers: { id: string; job: string | null; moving: string | null; phaseMs?: Record<"stepping" | "gate" | "loading" | "paused" | "draining" | "idle", number> }[];
  moves: { t: number; volunteer: string; from: string | null; to: string; reason: string }[];
  fairnessError: number;
}

/**
 * Longer than the test: pages on this 2-core machine differ in speed by 2-3x
 * from one moment to the next, so a periodic rebalance by measured throughput
 * may rightly move one; here the allocation at join and the moves on pause,
 * resume and end are under test (periodic rebalancing: test/unit/jobs.test.ts).
 */
const REBALANCE_MS = 60_000;
let coord: CoordinatorProcess;

test.beforeAll(async () => {
  // Straggler drops off: six pages on two cores are uneven, and drops are not what this test is about.
  coord = await startJobsCoordinator(
    [
      // Equal targets; --epochs bounds the second job: with all six volunteers
      // its updates sum to six steps a clock and the test accuracy swings
      // around the target (0.74-0.91 seen), so it ends on the target or on
      // three epochs, whichever comes first. The first job ends on its target
      // (asserted below), about one epoch in.
      { id: "a", job: "mnist-softmax", weight: 2, flags: ["--min-workers", "4", "--target-accuracy", "0.9", "--epochs", "3", "--work-sizing", "off"] },
      { id: "b", job: "mnist-softmax", weight: 1, flags: ["--min-workers", "2", "--target-accuracy", "0.9", "--epochs", "3", "--seed", "2", "--work-sizing", "off"] },
    ],
    ["--rebalance-interval", String(REBALANCE_MS), "--eval-interval", "500", "--drop-stragglers", "off"],
  );
});

test.afterEach(async ({}, testInfo) => {
  await reportJobsFailure(testInfo, coord);
});

test.afterAll(async () => {
  await coord?.stop();
});

const jobs = (): Promise<JobsList> => fetchJobs<JobsList>(coord);

const count = (l: JobsList, job: string): number => l.volunteers.filter((v) => v.job === job && v.moving === null).length;
const job = (l: JobsList, id: string): JobStatus => l.jobs.find((j) => j.id === id) as JobStatus;

test("six volunteers split 4:2 between jobs weighted 2:1, move when a job ends, and each job's replicas agree", async ({ browser }) => {
  test.setTimeout(240_000);
  const started = Date.now();
  const pages: Page[] = await Promise.all(
    Array.from({ length: 6 }, async (_, i) => {
      const page = await (await browser.newContext()).newPage();
      await page.goto(`${coord.url}/?name=v${i}&backend=cpu`);
      return page;
    }),
  );
  const settled = await waitFor("six volunteers with a job", async () => {
    const l = await jobs();
    return l.volunteers.filter((v) => v.job !== null).length === 6 ? { l, t: Date.now() } : null;
  }, 60_000, 250);
  // Within one rebalancing period the split is 4:2 (and stays so while the rates are measured).
  const inPeriod = await waitFor("4:2", async () => {
    const l = await jobs();
    return count(l, "a") === 4 && count(l, "b") === 2 ? l : null;
  }, REBALANCE_MS, 250);
  expect(job(inPeriod, "a").share.target).toBeCloseTo(2 / 3);
  expect(Date.now() - settled.t).toBeLessThanOrEqual(REBALANCE_MS);
  // Each page says which job it works for and why.
  const onB: Page[] = [];
  for (const p of pages) {
    const g = await p.evaluate(() => (window as unknown as { grid: { job: string; jobReason: string } }).grid);
    expect(g.job).toMatch(/^[ab]$/);
    expect(g.jobReason).toMatch(/weighted fair share/);
    await expect(p.locator("#job")).toContainText(`job ${g.job}:`);
    if (g.job === "b") onB.push(p);
  }
  expect(onB).toHaveLength(2);
  await waitFor("both jobs stepping", async () => {
    const l = await jobs();
    return l.jobs.every((j) => j.workers.filter((w) => w.state === "active" && w.clock > 3).length >= (j.id === "a" ? 4 : 2)) ? l : null;
  }, 30_000, 250);

  // The first job to reach its target (two equal mnist-softmax jobs: which one
  // is a race between 4 workers and 2) hands its volunteers to the other
  // within seconds.
  const firstDone = await waitFor("one job done", async () => {
    const l = await jobs();
    const d = l.jobs.find((j) => j.job.state === "done");
    return d ? { l, first: d.id, second: d.id === "a" ? "b" : "a" } : null;
  }, 90_000, 250);
  const { first, second } = firstDone;
  const doneAt = job(firstDone.l, first).events.find((e) => e.kind === "done")?.t ?? 0;
  expect(job(firstDone.l, first).events.some((e) => e.kind === "finishing" && /target/.test(e.detail ?? ""))).toBe(true);
  const allOnSecond = await waitFor(`every volunteer on ${second}`, async () => {
    const l = await jobs();
    return count(l, second) === 6 ? { l, t: Date.now() } : null;
  }, 15_000, 250);
  const moveSeconds = (allOnSecond.t - doneAt) / 1000;
  test.info().annotations.push({ type: "move after done", description: `${first} done first; all on ${second} ${moveSeconds.toFixed(1)} s later` });
  expect(moveSeconds).toBeLessThan(8);

  const bothDone = await waitFor(`job ${second} done`, async () => {
    const l = await jobs();
    return job(l, second).job.state === "done" ? l : null;
  }, 120_000, 500);
  // Each job's end digests agree among its own workers: the first job kept two
  // of the 4 or 2 it had to drain (KEEP_AT_END; the others left for the second
  // job as it began to finish), the second all six; nothing was lost (no cut lowered).
  for (const id of [first, second]) {
    const j = job(bothDone, id);
    // In the view at the end: active, or flagged a straggler (drops are off; under load one page
    // was flagged for a 49 ms step against a 12 ms median and still drained with the others).
    const active = j.workers.filter((w) => w.state === "active" || w.state === "straggler");
    expect(active.length).toBe(id === second ? 6 : KEEP_AT_END);
    // The released ones left cleanly (a leave at their final clock), none was dropped.
    expect(j.workers.filter((w) => w.state === "dropped")).toEqual([]);
    const ds = active.map((w) => w.digest);
    for (const d of ds) expect(d).not.toBeNull();
    for (const d of ds) expect(digestsAgree(ds[0]!, d!)).toBe(true);
    expect(j.events.some((e) => e.kind === "cut-lowered")).toBe(false);
  }
  // Each page's own count of its time by phase (utilization) covers its life up to its last report:
  // every volunteer stepped, and the phases add up to no more than the time since its page opened
  // and at least the time from when all had a job until the second job began to finish.
  const finishing = job(bothDone, second).events.find((e) => e.kind === "finishing")?.t ?? Date.now();
  for (const v of bothDone.volunteers) {
    const ph = v.phaseMs;
    expect(ph, `${v.id} reports its phases`).toBeDefined();
    const sum = Object.values(ph!).reduce((x, y) => x + y, 0);
    expect(ph!.stepping).toBeGreaterThan(0);
    expect(sum).toBeLessThanOrEqual(Date.now() - started + 1000);
    expect(sum).toBeGreaterThanOrEqual(finishing - settled.t - 1000);
  }
  const [da, db] = [job(bothDone, "a").workers.find((w) => w.digest)?.digest, job(bothDone, "b").workers.find((w) => w.digest)?.digest];
  expect(digestsAgree(da!, db!)).toBe(false);
  test.info().annotations.push({ type: "elapsed", description: `${((Date.now() - started) / 1000).toFixed(1)} s` });
});
