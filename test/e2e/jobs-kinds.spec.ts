/**
 * Two jobs of different kinds on one grid (mnist-mlp and mnist-softmax) in
 * real browsers: a pause moves a volunteer from one kind to the other (its
 * worker builds the other job's kernels and measures its backend again), a
 * resume brings it back to a job that goes on from where it stood, not from
 * its initial parameters, and each job's end digests agree.
 */
import { test, expect, type Page } from "@playwright/test";
import { waitFor, type CoordinatorProcess, type Status } from "../support/coordinator.ts";
import { fetchJobs, reportJobsFailure, startJobsCoordinator } from "../support/jobs-grid.ts";
import { digestsAgree } from "../../client/replica.ts";

type JobStatus = Status & { id: string; volunteers: number };
interface JobsList {
  jobs: JobStatus[];
  volunteers: { id: string; name: string; job: string | null; worker: string | null; moving: string | null }[];
  moves: { t: number; volunteer: string; from: string | null; to: string; reason: string }[];
}

let coord: CoordinatorProcess;
const logs: string[] = [];

test.beforeAll(async () => {
  // A long rebalance period: the allocation at join and the moves on pause and
  // resume are under test, not periodic rebalancing by measured throughput.
  coord = await startJobsCoordinator(
    [
      { id: "mlp", job: "mnist-mlp", weight: 2, flags: ["--min-workers", "2", "--target-accuracy", "0.9", "--epochs", "2", "--work-sizing", "off"] },
      // Softmax regression would reach any reachable target in seconds on one
      // page; this one runs on the coverage count instead (six epochs).
      { id: "soft", job: "mnist-softmax", weight: 1, flags: ["--min-workers", "1", "--target-accuracy", "0.99", "--epochs", "6", "--seed", "2", "--work-sizing", "off"] },
    ],
    ["--rebalance-interval", "600000", "--eval-interval", "500", "--drop-stragglers", "off"],
  );
});

test.afterEach(async ({}, testInfo) => {
  await reportJobsFailure(testInfo, coord, logs);
});

test.afterAll(async () => {
  await coord?.stop();
});

const jobs = (): Promise<JobsList> => fetchJobs<JobsList>(coord);

async function control(body: Record<string, string>): Promise<void> {
  const r = await fetch(`${coord.url}/api/control`, {
    method: "POST",
    headers: { "Content-Type": "application/json", Authorization: `Bearer ${coord.token}` },
    body: JSON.stringify(body),
  });
  expect(r.status).toBe(200);
}

const job = (l: JobsList, id: string): JobStatus => l.jobs.find((j) => j.id === id) as JobStatus;
const on = (l: JobsList, id: string): JobsList["volunteers"] => l.volunteers.filter((v) => v.job === id && v.moving === null);
const stepping = (j: JobStatus, above: number): JobStatus["workers"] => j.workers.filter((w) => w.state === "active" && w.clock > above);

test("a volunteer moves from mnist-mlp to mnist-softmax on pause, one comes back on resume, and the mlp job goes on from where it stood", async ({ browser }) => {
  test.setTimeout(240_000);
  const pages: Page[] = await Promise.all(
    Array.from({ length: 3 }, async (_, i) => {
      const page = await (await browser.newContext()).newPage();
      page.on("console", (m) => logs.push(`k${i}: ${m.text()}`));
      // Paced (every step at least 20 ms) so that neither job ends before the moves are seen.
      await page.goto(`${coord.url}/?name=k${i}&steptime=20`);
      return page;
    }),
  );
  const byName = (name: string): Page => pages[Number(name.slice(1))] as Page;
  // Weights 2:1 over three volunteers: two on mlp, one on softmax.
  await waitFor("2:1 split", async () => {
    const l = await jobs();
    return on(l, "mlp").length === 2 && on(l, "soft").length === 1 ? l : null;
  }, 60_000, 250);
  const running = await waitFor("both jobs stepping", async () => {
    const l = await jobs();
    return stepping(job(l, "mlp"), 5).length === 2 && stepping(job(l, "soft"), 5).length === 1 ? l : null;
  }, 60_000, 250);
  expect(job(running, "mlp").job.name).toBe("mnist-mlp");

  // Pause mlp: it keeps one volunteer holding its model; the other moves to softmax.
  await control({ action: "pause", job: "mlp" });
  const paused = await waitFor("a volunteer moved to soft", async () => {
    const l = await jobs();
    return on(l, "soft").length === 2 && on(l, "mlp").length === 1 ? l : null;
  }, 20_000, 250);
  const pausedAt = Math.max(...job(paused, "mlp").workers.filter((w) => w.state === "active").map((w) => w.clock));
  const mover = on(paused, "soft").find((v) => on(running, "mlp").some((r) => r.id === v.id));
  expect(mover, "one of mlp's volunteers is now on soft").toBeTruthy();
  const moverPage = byName(mover!.name);
  await expect(moverPage.locator("#job")).toContainText("job soft:");
  // Its worker runs the softmax job's step on a backend it measured for that job.
  const onSoft = await waitFor("the mover stepping for soft", async () => {
    const l = await jobs();
    const w = job(l, "soft").workers.find((x) => x.name === mover!.name && x.state === "active" && x.clock > x.startClock + 3);
    return w ? w : null;
  }, 60_000, 250);
  expect(onSoft.backend).toMatch(/^(webgpu|cpu)$/);
  expect(onSoft.kernel).not.toBe("");

  // Resume mlp: two volunteers again, and its clocks go on past the pause.
  await control({ action: "resume", job: "mlp" });
  const resumed = await waitFor("mlp stepping with two again", async () => {
    const l = await jobs();
    const j = job(l, "mlp");
    return on(l, "mlp").length === 2 && stepping(j, pausedAt + 3).length === 2 ? l : null;
  }, 60_000, 250);
  const back = job(resumed, "mlp");
  // Whichever volunteer the allocation sends (the mover or another), it joined
  // from a snapshot at the job's clock, not from the start.
  const held = on(paused, "mlp")[0]!.name;
  const joined = back.workers.filter((w) => w.state === "active" && w.name !== held);
  expect(joined).toHaveLength(1);
  expect(joined[0]!.startClock).toBeGreaterThanOrEqual(pausedAt);
  test.info().annotations.push({ type: "moves", description: resumed.moves.map((m) => `${m.volunteer} ${m.from ?? "-"}→${m.to}`).join(", ") });
  expect(back.events.some((e) => e.kind === "cut-lowered")).toBe(false);

  const done = await waitFor("both jobs done", async () => {
    const l = await jobs();
    return l.jobs.every((j) => j.job.state === "done") ? l : null;
  }, 150_000, 500);
  for (const id of ["mlp", "soft"]) {
    const j = job(done, id);
    const ds = j.workers.filter((w) => w.state === "active").map((w) => w.digest);
    expect(ds.length).toBeGreaterThan(0);
    for (const d of ds) expect(d).not.toBeNull();
    for (const d of ds) expect(digestsAgree(ds[0]!, d!)).toBe(true);
  }
  // The mlp job ended trained, not restarted: its last test accuracy is near its target.
  const series = job(done, "mlp").metrics.test.series;
  expect(series.at(-1)?.[1] ?? 0).toBeGreaterThan(0.85);
});
