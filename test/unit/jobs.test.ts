/**
 * Several jobs on one grid (coordinator/jobs.ts): the jobs file, allocation of
 * joining volunteers, moves when a job ends or is paused, and the HTTP API.
 * Node only: tiny JobRuns, fake pages that answer like the real one.
 */
import { tinyJobOptions } from "../support/tiny-run.ts";
import { afterAll, describe, expect, it } from "vitest";
import { spawnSync } from "node:child_process";
import { mkdtempSync, writeFileSync } from "node:fs";
import { tmpdir } from "node:os";
import { join, resolve } from "node:path";
import { UsageError } from "../../coordinator/cli.ts";
import { JobRun } from "../../coordinator/job.ts";
import { baseArgs, CLOSING_SOON_MS, JobGrid, jobSpec, readJobsFile } from "../../coordinator/jobs.ts";
import { startServer, type RunningServer } from "../../coordinator/server.ts";
import { decodeModelUpload, encodeModelUpload, parseServerMessage, type ServerMessage } from "../../coordinator/protocol.ts";
import { mnistSoftmax } from "../../client/jobs/mnist-softmax.ts";
import { jobRows, moveLines, parseJobsList } from "../../coordinator/console/jobs.ts";
import { phaseShares, intervalUses, utilization, type JobsSample } from "../harness/jobs.ts";
import { parseHarnessArgs } from "../harness/flags.ts";

const ROOT = resolve(import.meta.dirname, "..", "..");
const JOIN = { type: "join" as const, backend: "cpu" as const, kernel: "k", adapter: "a" };

function jobsFile(entries: unknown): string {
  const path = join(mkdtempSync(join(tmpdir(), "grid-jobs-")), "jobs.json");
  writeFileSync(path, typeof entries === "string" ? entries : JSON.stringify(entries));
  return path;
}

describe("--jobs FILE", () => {
  it("parses each entry's flags on top of the command line, with defaults", () => {
    const base = baseArgs(["--port", "0", "--jobs", "x.json", "--staleness", "4", "--jobs=y.json"]);
    expect(base).toEqual(["--port", "0", "--staleness", "4"]);
    const specs = readJobsFile(
      jobsFile([
        { id: "a", job: "mnist-softmax", weight: 2, flags: ["--target-accuracy", "0.8"] },
        { id: "b", job: "mnist-mlp", weight: 1, minWorkers: 1, maxWorkers: 3, priority: 2, flags: ["--staleness", "1"] },
      ]),
      base,
    );
    expect(specs.map((s) => s.entry)).toEqual([
      { id: "a", job: "mnist-softmax", weight: 2, minWorkers: 0, maxWorkers: 100_000, priority: 0, flags: ["--target-accuracy", "0.8"] },
      { id: "b", job: "mnist-mlp", weight: 1, minWorkers: 1, maxWorkers: 3, priority: 2, flags: ["--staleness", "1"] },
    ]);
    expect(specs[0]?.cfg.targetAccuracy).toBe(0.8);
    expect(specs[0]?.cfg.consistency.staleness).toBe(4);
    expect(specs[1]?.cfg.job).toBe("mnist-mlp");
    expect(specs[1]?.cfg.consistency.staleness).toBe(1);
  });

  it("refuses bad entries with one line naming the job", () => {
    const cases: [unknown, RegExp][] = [
      [[{ id: "a", job: "mf" }], /job "a": job mf .* cannot share the grid/],
      [[{ id: "a", job: "nope" }], /job "a": unknown job "nope"/],
      [[{ id: "a", job: "mnist-softmax", flags: ["--port", "1"] }], /job "a": --port is set for the whole grid/],
      [[{ id: "a", job: "mnist-softmax", flags: ["--staleness", "x"] }], /job "a": --staleness wants a whole number/],
      [[{ id: "a", job: "mnist-softmax", flags: ["--bogus"] }], /job "a": .*bogus/],
      [[{ id: "a", job: "mnist-softmax", weight: 0 }], /job "a": weight: /],
      [[{ id: "a", job: "mnist-softmax", minWorkers: 5, maxWorkers: 2 }], /minWorkers must not exceed maxWorkers/],
      [[{ id: "a", job: "mnist-softmax", extra: 1 }], /job "a": .*extra/],
      [[{ id: "A b", job: "mnist-softmax" }], /id: /],
      [[{ id: "a", job: "mnist-softmax" }, { id: "a", job: "mnist-mlp" }], /"a" appears twice/],
      [[], /non-empty JSON array/],
      ["{not json", /is not JSON/],
    ];
    for (const [entries, want] of cases) {
      let err: unknown;
      try {
        readJobsFile(jobsFile(entries), []);
      } catch (e) {
        err = e;
      }
      expect(err).toBeInstanceOf(UsageError);
      const msg = (err as Error).message;
      expect(msg).toMatch(want);
      expect(msg).toMatch(/^--jobs: /);
      expect(msg.includes("\n")).toBe(false);
    }
  });

  it("the coordinator exits with status 2 and one line on a bad jobs file", () => {
    const path = jobsFile([{ id: "a", job: "mf" }]);
    const r = spawnSync(join(ROOT, "node_modules/.bin/tsx"), ["coordinator/main.ts", "--no-build", "--jobs", path], { cwd: ROOT, encoding: "utf8", timeout: 30_000 });
    expect(r.status).toBe(2);
    expect(r.stderr.trim().split("\n")).toEqual([`grid: --jobs: job "a": job mf (model parallel) cannot share the grid; run it alone with --job mf`]);
  });
});

/** A page as the grid sees it: the messages it got, and its answers to `move`. */
class FakePage {
  readonly got: ServerMessage[] = [];
  readonly vid: string;
  constructor(private readonly grid: JobGrid) {
    this.vid = grid.connect((m) => {
      // Every message must pass the page's own validation.
      const p = parseServerMessage(JSON.stringify(m));
      if (!p.ok) throw new Error(`invalid server message: ${p.message}`);
      this.got.push(p.value);
    });
  }
  join(): void {
    this.grid.join(this.vid, JOIN);
  }
  last<T extends ServerMessage["type"]>(type: T): Extract<ServerMessage, { type: T }> | undefined {
    return this.got.filter((m): m is Extract<ServerMessage, { type: T }> => m.type === type).at(-1);
  }
  /** Answer a move as the page does: last clock, leave, join again. */
  move(clock: number): void {
    this.grid.onMessage(this.vid, { type: "final", clock });
    this.grid.onMessage(this.vid, { type: "leave" });
    this.join();
  }
  clock(clock: number, stepMs = 10): void {
    const phaseMs = { stepping: clock * stepMs, gate: clock, loading: 0, paused: 0, draining: 0, idle: 0 };
    this.grid.onMessage(this.vid, { type: "clock", clock, minApplied: 0, loss: 1, stepMs, batch: 8, examples: clock * 8, bytesIn: 0, bytesOut: 0, peers: 0, phaseMs });
  }
}

function twoJobs(now: () => number): { grid: JobGrid; a: JobRun; b: JobRun } {
  const grid = new JobGrid({ multi: true, rebalanceMs: 5000, now });
  const a = new JobRun(tinyJobOptions({ now, viewBatchMs: 0 }));
  const b = new JobRun(tinyJobOptions({ now, viewBatchMs: 0 }));
  grid.add({ id: "a", weight: 2, minWorkers: 0, maxWorkers: 100, priority: 0 }, a);
  grid.add({ id: "b", weight: 1, minWorkers: 0, maxWorkers: 100, priority: 0 }, b);
  return { grid, a, b };
}

/** Each page got a move to job b for `why`, answered it at clock 9 and is a worker of b, welcomed there. */
function answerMoveToB(grid: JobGrid, pages: readonly FakePage[], why: RegExp): void {
  for (const p of pages) {
    const mv = p.last("move");
    expect(mv?.job).toBe("b");
    expect(mv?.reason).toMatch(why);
    p.move(9);
    expect(grid.membership(p.vid)?.job).toBe("b");
    expect(p.last("welcome")?.grid?.job).toBe("b");
  }
}

/** Job a (weight `weightA`, max clock 1000) and job b (weight 1) on a grid that rebalances only when something happens; `n` pages joined. */
function maxClockJobs(now: () => number, weightA: number, n: number): { grid: JobGrid; a: JobRun; pages: FakePage[] } {
  const grid = new JobGrid({ multi: true, rebalanceMs: 60_000, now });
  const a = new JobRun(tinyJobOptions({ now, viewBatchMs: 0, maxClock: 1000 }));
  const b = new JobRun(tinyJobOptions({ now, viewBatchMs: 0 }));
  grid.add({ id: "a", weight: weightA, minWorkers: 0, maxWorkers: 100, priority: 0 }, a);
  grid.add({ id: "b", weight: 1, minWorkers: 0, maxWorkers: 100, priority: 0 }, b);
  const pages = Array.from({ length: n }, () => new FakePage(grid));
  for (const p of pages) p.join();
  return { grid, a, pages };
}

const counts = (grid: JobGrid, pages: FakePage[]): Record<string, number> => {
  const c: Record<string, number> = {};
  for (const p of pages) {
    const m = grid.membership(p.vid);
    if (m) c[m.job] = (c[m.job] ?? 0) + 1;
  }
  return c;
};

describe("volunteers shared between jobs", () => {
  it("gives six joining volunteers 4:2 to jobs weighted 2:1 and says which job and why", () => {
    let t = 1000;
    const { grid } = twoJobs(() => t);
    const pages = Array.from({ length: 6 }, () => new FakePage(grid));
    for (const p of pages) {
      p.join();
      t += 100;
    }
    expect(counts(grid, pages)).toEqual({ a: 4, b: 2 });
    for (const p of pages) {
      const w = p.last("welcome");
      expect(w?.grid?.job).toBe(grid.membership(p.vid)?.job);
      expect(w?.grid?.reason).toMatch(/weighted fair share: job [ab] \(weight [12] of 3\)/);
    }
    // Nobody was moved to get there, and a rebalance on rates that differ by up to 20% (noise) keeps it.
    expect(pages.every((p) => p.last("move") === undefined)).toBe(true);
    for (let k = 1; k <= 5; k++) {
      pages.forEach((p, i) => p.clock(k, 10 * (1 + 0.04 * i)));
      t += 1000;
    }
    expect((grid.list() as { volunteers: { rates: Record<string, number> }[] }).volunteers.every((v) => Object.keys(v.rates).length === 1)).toBe(true);
    t += 6000;
    grid.tick();
    expect(pages.every((p) => p.last("move") === undefined)).toBe(true);
    const list = grid.list() as { jobs: { id: string; share: { target: number; actual: number }; volunteers: number }[]; fairnessError: number };
    expect(list.jobs.map((j) => [j.id, j.volunteers, j.share.target])).toEqual([["a", 4, 2 / 3], ["b", 2, 1 / 3]]);
    expect(list.jobs[0]?.share.actual).toBeCloseTo(2 / 3);
    expect(list.fairnessError).toBeLessThan(1e-9);
  });

  it("a finishing job keeps two volunteers to drain and moves the others at once; the two follow when it is done", () => {
    let t = 1000;
    const { grid, a, b } = twoJobs(() => t);
    const pages = Array.from({ length: 6 }, () => new FakePage(grid));
    for (const p of pages) {
      p.join();
      t += 10;
    }
    const onA = pages.filter((p) => grid.membership(p.vid)?.job === "a");
    expect(onA).toHaveLength(4);
    onA.forEach((p, i) => p.clock(3 + i));
    t += 5000;
    // Job a reaches its end: the run tells the grid (coordinator/main.ts calls jobEvent after each
    // event), which moves all but the two longest in it without waiting for a tick.
    a.finish("target reached");
    grid.jobEvent();
    const [kept, released] = [onA.slice(0, 2), onA.slice(2)];
    expect(kept.every((p) => p.last("move") === undefined)).toBe(true);
    // The page stops, reports its final clock and leaves: a clean leave at that clock.
    answerMoveToB(grid, released, /job a is finishing/);
    const as = () => a.status() as { workers: { id: string; state: string; digest: unknown }[]; events: { kind: string; detail?: string }[] };
    expect(as().workers.filter((w) => w.state === "left")).toHaveLength(2);
    expect(as().events.filter((e) => e.kind === "left").every((e) => /moved to job b/.test(e.detail ?? ""))).toBe(true);
    // The kept two drain (their target counts the leavers' final clocks) and report digests: done.
    for (const p of kept) grid.onMessage(p.vid, { type: "final", clock: 9 });
    const drain = kept[0]?.last("drain");
    expect(drain?.target).toBeDefined();
    expect(Object.values(drain?.target ?? {}).every((c) => c === 9)).toBe(true);
    expect(Object.keys(drain?.target ?? {})).toHaveLength(4);
    for (const p of kept) grid.onMessage(p.vid, { type: "digest", digest: { sum: 1, l2: 1, proj: [1] }, vector: {} });
    expect(a.state).toBe("done");
    expect(as().workers.filter((w) => w.state === "active" && w.digest !== null)).toHaveLength(2);
    expect(as().events.some((e) => e.kind === "cut-lowered")).toBe(false);
    grid.jobEvent();
    answerMoveToB(grid, kept, /job a is done/);
    expect(counts(grid, pages)).toEqual({ b: 6 });
    const bs = b.status() as { workers: { state: string }[] };
    expect(bs.workers.filter((w) => w.state === "active")).toHaveLength(6);
    const moves = (grid.list() as { moves: { from: string; to: string }[] }).moves;
    expect(moves.filter((m) => m.from === "a" && m.to === "b")).toHaveLength(4);
  });

  it("a job about to reach its max clock takes no new volunteer; one that is not gets it", () => {
    for (const clocksPerSec of [300, 20]) {
      let t = 1000;
      const { grid, pages } = maxClockJobs(() => t, 2, 3);
      const onA = pages.filter((p) => grid.membership(p.vid)?.job === "a");
      expect(onA).toHaveLength(2);
      // Three seconds of ticks with job a's clock advancing at `clocksPerSec`.
      for (let k = 1; k <= 6; k++) {
        t += 500;
        for (const p of onA) p.clock(Math.round((clocksPerSec * k) / 2));
        grid.tick();
      }
      const aStatus = (grid.list() as { jobs: { id: string; endsInSec: number | null }[] }).jobs;
      const ends = aStatus.find((j) => j.id === "a")?.endsInSec;
      expect(aStatus.find((j) => j.id === "b")?.endsInSec).toBeNull();
      const late = new FakePage(grid);
      late.join();
      if (clocksPerSec === 300) {
        // 900 of 1000 clocks at 300 a second: it ends in about 1/3 s.
        expect(ends).toBeGreaterThan(0);
        expect(ends! * 1000).toBeLessThan(CLOSING_SOON_MS);
        expect(grid.membership(late.vid)?.job).toBe("b");
      } else {
        // 60 of 1000 clocks at 20 a second: 47 s to go; the weights give the newcomer to a.
        expect(ends! * 1000).toBeGreaterThan(CLOSING_SOON_MS);
        expect(grid.membership(late.vid)?.job).toBe("a");
      }
      // Nobody already on job a was moved away.
      for (const p of onA) expect(grid.membership(p.vid)?.job).toBe("a");
    }
  });

  it("a new job waits for the volunteers of a job that ends within seconds rather than taking one from a running job", () => {
    for (const endsSoon of [true, false]) {
      let t = 1000;
      const { grid, a, pages } = maxClockJobs(() => t, 1, 4);
      const onA = pages.filter((p) => grid.membership(p.vid)?.job === "a");
      const onB = pages.filter((p) => grid.membership(p.vid)?.job === "b");
      expect([onA.length, onB.length]).toEqual([2, 2]);
      // Job a steps 300 clocks a second (ends within a second) or 20 (ends in about 45 s).
      const rate = endsSoon ? 300 : 20;
      for (let k = 1; k <= 6; k++) {
        t += 500;
        for (const p of onA) p.clock(Math.round((rate * k) / 2));
        for (const p of onB) p.clock(k * 10);
        grid.tick();
      }
      t += 5000; // everyone has settled in its job
      const c = new JobRun(tinyJobOptions({ now: () => t, viewBatchMs: 0 }));
      grid.add({ id: "c", weight: 1, minWorkers: 0, maxWorkers: 100, priority: 0 }, c);
      const moved = pages.filter((p) => p.last("move") !== undefined);
      if (!endsSoon) {
        // Nothing ends soon: job c gets its share from the running jobs at once.
        expect(moved).toHaveLength(1);
        expect(moved[0]?.last("move")?.job).toBe("c");
        continue;
      }
      // Job a ends within a second: job c waits for its volunteers; nobody leaves job b.
      expect(moved).toHaveLength(0);
      t += 200;
      grid.tick();
      expect(pages.every((p) => p.last("move") === undefined)).toBe(true);
      // Job a finishes (both its volunteers keep draining), then is done: they go to job c.
      a.finish("max clock");
      grid.jobEvent();
      expect(pages.every((p) => p.last("move") === undefined)).toBe(true);
      for (const p of onA) grid.onMessage(p.vid, { type: "final", clock: 900 });
      for (const p of onA) grid.onMessage(p.vid, { type: "digest", digest: { sum: 1, l2: 1, proj: [1] }, vector: {} });
      expect(a.state).toBe("done");
      grid.jobEvent();
      for (const p of onA) {
        expect(p.last("move")?.job).toBe("c");
        p.move(900);
      }
      expect(onB.every((p) => p.last("move") === undefined)).toBe(true);
      expect(counts(grid, pages)).toEqual({ b: 2, c: 2 });
    }
  });

  it("the wait for an ending job's volunteers lasts at most a few seconds", () => {
    let t = 1000;
    const { grid, a } = twoJobs(() => t);
    const pages = Array.from({ length: 6 }, () => new FakePage(grid));
    for (const p of pages) p.join();
    t += 5000;
    // Job a finishes, but its two keepers never report their digests (a drain that hangs).
    a.finish("target reached");
    grid.jobEvent();
    const released = pages.filter((p) => p.last("move") !== undefined);
    expect(released).toHaveLength(2);
    for (const p of released) p.move(9);
    const onB = pages.filter((p) => grid.membership(p.vid)?.job === "b");
    expect(onB).toHaveLength(4);
    const movesTo = (job: string): number => onB.reduce((n, p) => n + p.got.filter((m) => m.type === "move" && m.job === job).length, 0);
    t += 5000;
    const c = new JobRun(tinyJobOptions({ now: () => t, viewBatchMs: 0 }));
    grid.add({ id: "c", weight: 1, minWorkers: 0, maxWorkers: 100, priority: 0 }, c);
    expect(movesTo("c")).toBe(0);
    t += 2000;
    grid.tick();
    expect(movesTo("c")).toBe(0);
    // Past CLOSING_SOON_MS of waiting, job c takes its share from job b after all.
    t += CLOSING_SOON_MS;
    grid.tick();
    expect(a.state).not.toBe("done");
    expect(movesTo("c")).toBeGreaterThan(0);
  });

  it("a finishing job with no other job to go to keeps all its volunteers, and they wait when it is done", () => {
    let t = 1000;
    const grid = new JobGrid({ multi: true, rebalanceMs: 5000, now: () => t });
    const a = new JobRun(tinyJobOptions({ now: () => t, viewBatchMs: 0 }));
    grid.add({ id: "a", weight: 1, minWorkers: 0, maxWorkers: 100, priority: 0 }, a);
    const pages = Array.from({ length: 4 }, () => new FakePage(grid));
    for (const p of pages) p.join();
    pages.forEach((p, i) => p.clock(3 + i));
    a.finish("target reached");
    grid.jobEvent();
    t += 500;
    grid.tick();
    expect(pages.every((p) => p.last("move") === undefined)).toBe(true);
    for (const p of pages) grid.onMessage(p.vid, { type: "final", clock: 9 });
    for (const p of pages) grid.onMessage(p.vid, { type: "digest", digest: { sum: 1, l2: 1, proj: [1] }, vector: {} });
    expect(a.state).toBe("done");
    const s = a.status() as { workers: { state: string; digest: unknown }[] };
    expect(s.workers.filter((w) => w.state === "active" && w.digest !== null)).toHaveLength(4);
  });

  it("a job whose pages all closed resumes from the newest model it holds, not from its initial parameters", async () => {
    let t = 1000;
    const { grid, a, b } = twoJobs(() => t);
    const pages = Array.from({ length: 3 }, () => new FakePage(grid));
    for (const p of pages) p.join();
    const onB = pages.filter((p) => grid.membership(p.vid)?.job === "b");
    expect(onB).toHaveLength(1);
    const p = onB[0] as FakePage;
    const uploaded = new Float32Array(mnistSoftmax.parameters).map((_, i) => (i % 7) / 100);
    for (let c = 1; c <= 12; c++) {
      t += 100;
      p.clock(c);
      if (c === 10) {
        expect(grid.onBinary(p.vid, new Uint8Array(encodeModelUpload(c, uploaded)))).toBeNull();
        await new Promise((r) => setTimeout(r, 20)); // the evaluation answers asynchronously
      }
    }
    // `GET /api/jobs` shows each volunteer's phase counters as its page last reported them.
    const row = (grid.list() as { volunteers: { id: string; phaseMs?: Record<string, number> }[] }).volunteers.find((v) => v.id === p.vid);
    expect(row?.phaseMs).toEqual({ stepping: 120, gate: 12, loading: 0, paused: 0, draining: 0, idle: 0 });
    grid.disconnect(p.vid); // its page closed: job b has no worker left
    const st = b.status() as { view: { active: unknown[] }; events: { kind: string; detail?: string }[] };
    expect(st.view.active).toHaveLength(0);
    expect(st.events.at(-1)).toMatchObject({ kind: "resumed", detail: expect.stringMatching(/newest model at clock 10/) });
    // The grid gives job b one of job a's two volunteers again (weights 2:1), once that volunteer has
    // been in job a for 3 s (they joined 1.2 s ago: held back, then moved at the next tick after that).
    expect(pages.some((x) => x.last("move") !== undefined)).toBe(false);
    t += 2000;
    grid.tick();
    const q = pages.find((x) => x !== p && x.last("move")?.job === "b") as FakePage;
    expect(q).toBeDefined();
    q.move(3);
    expect(grid.membership(q.vid)?.job).toBe("b");
    // It starts at clock 10 from that model (loaded from the job's checkpoint route), with no snapshot and no cut of the departed worker.
    expect(q.last("welcome")).toMatchObject({ startClock: 10, needsSnapshot: false, base: { clock: 10 } });
    const base = decodeModelUpload(b.baseModel() ?? new Uint8Array(0), mnistSoftmax.parameters);
    expect(base.ok && base.value.clock).toBe(10);
    expect(base.ok && Array.from(base.value.params.subarray(0, 8))).toEqual(Array.from(uploaded.subarray(0, 8)));
    expect(q.last("view")?.cuts ?? []).toEqual([]);
    // Job a never uploaded a model: nothing to keep, its joiners start from its initial parameters as before.
    expect(a.baseModel()).toBeNull();
  });

  it("a paused job keeps one volunteer holding its model, the others move away and come back on resume; a mover counts as left, not dropped", () => {
    let t = 1000;
    const { grid, a, b } = twoJobs(() => t);
    const pages = Array.from({ length: 6 }, () => new FakePage(grid));
    for (const p of pages) p.join();
    const onB = pages.filter((p) => grid.membership(p.vid)?.job === "b");
    expect(onB).toHaveLength(2);
    onB.forEach((p, i) => p.clock(5, 10 + i));
    b.control("pause");
    grid.controlled("b", "was paused");
    const movers = onB.filter((p) => p.last("move") !== undefined);
    expect(movers).toHaveLength(1);
    const mover = movers[0]!;
    const bWorker = grid.membership(mover.vid)!.worker;
    const mv = mover.last("move");
    expect(mv).toMatchObject({ type: "move", job: "a", name: "mnist-softmax" });
    expect(mv?.reason).toMatch(/job b was paused/);
    mover.move(7);
    const st = b.status() as { workers: { id: string; state: string; clock: number }[]; events: { kind: string; worker?: string; detail?: string }[] };
    expect(st.workers.find((w) => w.id === bWorker)).toMatchObject({ state: "left", clock: 7 });
    expect(st.events.find((e) => e.kind === "left" && e.worker === bWorker)?.detail).toBe("moved to job a");
    expect(counts(grid, pages)).toEqual({ a: 5, b: 1 });
    // Nobody joins a paused job, and a periodic rebalance keeps it so.
    t += 6000;
    grid.tick();
    expect(counts(grid, pages)).toEqual({ a: 5, b: 1 });
    b.control("resume");
    grid.controlled("b", "was resumed");
    const back = pages.filter((p) => p.last("move")?.job === "b");
    expect(back).toHaveLength(1);
    expect(back[0]!.last("move")?.reason).toMatch(/job b was resumed/);
    back[0]!.move(12);
    expect(counts(grid, pages)).toEqual({ a: 4, b: 2 });
    expect(a.state).toBe("running");
  });

  it("a volunteer already leaving is retargeted without a second move message", () => {
    let t = 1000;
    const { grid, b } = twoJobs(() => t);
    const pages = Array.from({ length: 6 }, () => new FakePage(grid));
    for (const p of pages) p.join();
    for (let k = 1; k <= 5; k++) {
      pages.forEach((p) => p.clock(k));
      t += 1000;
    }
    b.control("pause");
    grid.controlled("b", "was paused");
    const mover = pages.find((p) => p.last("move") !== undefined)!;
    expect(mover.last("move")?.job).toBe("a");
    // b resumes before the page has left: the plan changes back, the page gets no second move.
    b.control("resume");
    grid.controlled("b", "was resumed");
    expect(mover.got.filter((m) => m.type === "move")).toHaveLength(1);
    mover.move(6);
    expect(grid.membership(mover.vid)?.job).toBe("b");
    expect(counts(grid, pages)).toEqual({ a: 4, b: 2 });
  });

  it("a page that does not answer a move is taken out of its old job after the timeout", () => {
    let t = 1000;
    const { grid, b } = twoJobs(() => t);
    const pages = Array.from({ length: 3 }, () => new FakePage(grid));
    for (const p of pages) p.join();
    const p = pages.find((x) => grid.membership(x.vid)?.job === "b")!;
    grid.cancel("b");
    expect(p.last("move")?.job).toBe("a");
    t += 11_000;
    grid.tick();
    expect(grid.membership(p.vid)).toBeNull();
    expect(b.state).toBe("done");
    p.join();
    expect(grid.membership(p.vid)?.job).toBe("a");
  });
});

describe("the console's jobs panel", () => {
  it("reads GET /api/jobs as the grid serves it: shares, workers, progress and the moves", () => {
    let t = Date.UTC(2026, 0, 1, 12, 0, 0);
    const { grid, a } = twoJobs(() => t);
    const pages = Array.from({ length: 3 }, () => new FakePage(grid));
    for (const p of pages) p.join();
    pages.forEach((p) => p.clock(4));
    a.control("pause");
    grid.controlled("a", "was paused");
    const list = parseJobsList(JSON.parse(JSON.stringify(grid.list())));
    expect(list).not.toBeNull();
    // The mover still counts for a until its page has left.
    expect(jobRows(list!)).toEqual([
      ["a", "mnist-softmax", "2", "paused", "67%", "67%", "2", "– of 0.99, 64 examples"],
      ["b", "mnist-softmax", "1", "running", "33%", "33%", "1", "– of 0.99, 32 examples"],
    ]);
    const lines = moveLines(list!);
    expect(lines).toHaveLength(1);
    expect(lines[0]).toMatch(/v[123]: a → b \(job a was paused; weighted fair share/);
    expect(parseJobsList({ jobs: "x" })).toBeNull();
  });
});

describe("the harness's utilization measure", () => {
  it("counts a volunteer busy in an interval only when the clock of the same worker advanced", () => {
    const ran = [{ id: "a", state: "running", volunteers: 2, target: 1, actual: 1 }];
    const at = (t: number, v: JobsSample["volunteers"], jobs: JobsSample["jobs"] = ran): JobsSample => ({ t, fairnessError: 0, jobs, volunteers: v });
    const samples = [
      at(0, [{ id: "v1", job: "a", worker: "w1", clock: 1 }, { id: "v2", job: "b", worker: "w1", clock: 1 }]),
      at(1, [{ id: "v1", job: "a", worker: "w1", clock: 3 }, { id: "v2", job: "b", worker: "w1", clock: 1 }]),
      // v2 moved: a new worker of another job, not counted as computing in that interval.
      at(2, [{ id: "v1", job: "a", worker: "w1", clock: 5 }, { id: "v2", job: "a", worker: "w2", clock: 0 }]),
      at(3, [{ id: "v1", job: "a", worker: "w1", clock: 6 }, { id: "v2", job: "a", worker: "w2", clock: 2 }, { id: "v3", job: null, worker: null, clock: null }]),
    ];
    expect(utilization(samples, 0, 3)).toBe(4 / 6);
    expect(utilization(samples, 1, 2)).toBe(1 / 2);
    expect(utilization(samples, 5, 9)).toBeNull();
    // The idle pairs by cause: v2 never stepped as b/w1, and had just joined a as w2 at 2 s.
    expect(intervalUses(samples, 0, 3)).toEqual({
      computing: 4 / 6,
      "no job (waiting or moving)": 0,
      "job waiting for its minimum": 0,
      "joined, no step yet": 2 / 6,
      "stalled after stepping": 0,
    });
    const later = [...samples, at(4, [{ id: "v1", job: "a", worker: "w1", clock: 6 }, { id: "v2", job: "a", worker: "w2", clock: 2 }, { id: "v3", job: null, worker: null, clock: null }])];
    // Intervals in which no job ran (all done, the next one not submitted yet) do not count.
    const idle = [...later, at(5, [{ id: "v1", job: "a", worker: "w1", clock: 6 }], [{ id: "a", state: "done", volunteers: 1, target: 1, actual: 1 }]), at(6, [{ id: "v1", job: null, worker: null, clock: null }], [])];
    // 4→5 counts (a ran at 4; v1 idle), 5→6 does not (no job ran at either end).
    expect(utilization(idle, 0, 6)).toBe(4 / 10);
    expect(utilization(idle, 5, 6)).toBeNull();
    expect(intervalUses(later, 3, 4)).toEqual({
      computing: 0,
      "no job (waiting or moving)": 1 / 3,
      "job waiting for its minimum": 0,
      "joined, no step yet": 0,
      "stalled after stepping": 2 / 3,
    });
  });

  it("splits the volunteers' time by their pages' own phase counters, scaled to each interval, moves included", () => {
    const ran = [{ id: "a", state: "running", volunteers: 2, target: 1, actual: 1 }];
    const at = (t: number, v: JobsSample["volunteers"], jobs: JobsSample["jobs"] = ran): JobsSample => ({ t, fairnessError: 0, jobs, volunteers: v });
    const ph = (stepping: number, gate: number, loading = 0, draining = 0, idle = 0) => ({ stepping, gate, loading, paused: 0, draining, idle });
    const samples = [
      at(0, [{ id: "v1", job: "a", worker: "w1", clock: 1, phaseMs: ph(0, 0) }, { id: "v2", job: "b", worker: "w1", clock: 1, phaseMs: ph(100, 0) }]),
      // v2 moved within the interval: 200 ms draining, 300 idle, 200 loading, 300 stepping in its new job.
      at(1, [{ id: "v1", job: "a", worker: "w1", clock: 3, phaseMs: ph(600, 400) }, { id: "v2", job: "a", worker: "w2", clock: 4, phaseMs: ph(400, 0, 200, 200, 300) }]),
      // A report's lag: 1,200 ms counted in a 1 s interval are scaled to it.
      at(2, [{ id: "v1", job: "a", worker: "w1", clock: 5, phaseMs: ph(1200, 1000) }, { id: "v2", job: "a", worker: "w2", clock: 4, phaseMs: ph(400, 0, 200, 200, 300) }]),
    ];
    const first = phaseShares(samples, 0, 1)!;
    expect(first.stepping).toBeCloseTo((600 + 300) / 2000, 12);
    expect(first.gate).toBeCloseTo(400 / 2000, 12);
    expect(first.loading + first.draining + first.idle).toBeCloseTo(700 / 2000, 12);
    expect(first.noReport).toBe(0);
    const both = phaseShares(samples, 0, 2)!;
    // v1's second interval: 600 + 600 of 1,200 → half a second each; v2 did not report: no report.
    expect(both.stepping).toBeCloseTo((600 + 300 + 500) / 4000, 12);
    expect(both.gate).toBeCloseTo((400 + 500) / 4000, 12);
    expect(both.noReport).toBeCloseTo(1000 / 4000, 12);
    expect(Object.values(both).reduce((x, y) => x + y, 0)).toBeCloseTo(1, 12);
    expect(utilization(samples, 0, 1)).toBe(1 / 2);
    expect(phaseShares(samples, 5, 9)).toBeNull();
    // Intervals in which no job ran do not count.
    const over = [...samples, at(3, [{ id: "v1", job: null, worker: null, clock: null, phaseMs: ph(1200, 1000, 0, 0, 1000) }], []), at(4, [{ id: "v1", job: null, worker: null, clock: null }], [])];
    expect(phaseShares(over, 2, 3)!.idle).toBe(1);
    expect(phaseShares(over, 3, 4)).toBeNull();
    // A page idle between jobs (no reports) joins one: its counters jump by the idle time before the
    // interval as well; only the interval's share of it counts (here 400 ms idle, 600 loading).
    const rejoined = [
      at(0, [{ id: "v1", job: null, worker: null, clock: null, phaseMs: ph(100, 100) }], []),
      at(1, [{ id: "v1", job: null, worker: null, clock: null, phaseMs: ph(100, 100) }], []),
      at(2, [{ id: "v1", job: "c", worker: "w1", clock: 0, phaseMs: ph(100, 100, 600, 0, 2400) }]),
    ];
    const r = phaseShares(rejoined, 0, 2)!;
    expect(r.idle).toBeCloseTo(0.4, 12);
    expect(r.loading).toBeCloseTo(0.6, 12);
  });

  it("takes --jobs FILE and --submit SEC:FILE, and leaves each job's --min-workers to its entry", () => {
    const run = parseHarnessArgs(["--workers", "6", "--jobs", "j.json", "--submit", "10:c.json", "--submit", "2.5:d.json"]).runs[0]!;
    expect(run.submits).toEqual([{ atSec: 10, file: "c.json" }, { atSec: 2.5, file: "d.json" }]);
    expect(run.coordinatorArgs).toContain("--jobs");
    expect(run.coordinatorArgs).not.toContain("--min-workers");
    expect(() => parseHarnessArgs(["--submit", "10:c.json"])).toThrow(/--submit needs --jobs/);
    expect(() => parseHarnessArgs(["--jobs", "j.json", "--submit", "soon"])).toThrow(/--submit wants SEC:FILE/);
  });
});

describe("the grid's HTTP API", () => {
  let server: RunningServer;
  const token = "unit-test-token-456";
  afterAll(async () => {
    await server?.close();
  });

  it("lists jobs, gives one, takes submissions with the token, controls one job", async () => {
    const grid = new JobGrid({
      multi: true,
      submit: (raw) => {
        const spec = jobSpec(raw, []);
        return { entry: spec.entry, run: new JobRun(tinyJobOptions({ targetAccuracy: spec.cfg.targetAccuracy })) };
      },
    });
    grid.add({ id: "a", weight: 2, minWorkers: 0, maxWorkers: 10, priority: 0 }, new JobRun(tinyJobOptions()));
    server = await startServer({ host: "127.0.0.1", port: 0, token, distDir: join(ROOT, "dist"), grid });
    const get = async (path: string): Promise<{ status: number; body: Record<string, unknown> }> => {
      const r = await fetch(server.url + path);
      return { status: r.status, body: (await r.json()) as Record<string, unknown> };
    };
    const post = async (path: string, body: unknown, auth = true): Promise<{ status: number; body: Record<string, unknown> }> => {
      const r = await fetch(server.url + path, {
        method: "POST",
        headers: { "Content-Type": "application/json", ...(auth ? { Authorization: `Bearer ${token}` } : {}) },
        body: JSON.stringify(body),
      });
      return { status: r.status, body: (await r.json()) as Record<string, unknown> };
    };
    const entry = { id: "b", job: "mnist-softmax", weight: 1, flags: ["--target-accuracy", "0.5"] };
    expect((await post("/api/jobs", entry, false)).status).toBe(401);
    const bad = await post("/api/jobs", { id: "b", job: "mf" });
    expect(bad.status).toBe(400);
    expect(bad.body["error"]).toMatch(/job mf/);
    expect((await post("/api/jobs", { id: "b", job: "mnist-softmax", flags: ["--port", "1"] })).status).toBe(400);
    const ok = await post("/api/jobs", entry);
    expect(ok.status).toBe(201);
    expect(ok.body).toMatchObject({ id: "b", weight: 1, job: { name: "mnist-softmax", state: "running" }, target: { accuracy: 0.5 } });
    expect((await post("/api/jobs", entry)).status).toBe(409);
    const list = await get("/api/jobs");
    expect((list.body["jobs"] as { id: string }[]).map((j) => j.id)).toEqual(["a", "b"]);
    expect((await get("/api/jobs/b/status")).body).toMatchObject({ id: "b", share: { target: 1 / 3 } });
    expect((await get("/api/jobs/zz/status")).status).toBe(404);
    // /api/status is the default (first) job.
    expect((await get("/api/status")).body).toMatchObject({ job: { name: "mnist-softmax" } });
    expect((await post("/api/control", { action: "pause", job: "b" }, false)).status).toBe(401);
    expect((await post("/api/control", { action: "pause", job: "zz" })).status).toBe(404);
    expect((await post("/api/control", { action: "pause", job: "b" })).body).toMatchObject({ ok: true, job: "b", state: "paused" });
    expect((await get("/api/jobs/a/status")).body).toMatchObject({ job: { state: "running" } });
    expect((await post("/api/control", { action: "cancel", job: "b" })).body).toMatchObject({ ok: true, job: "b" });
    expect((await get("/api/jobs/b/status")).body).toMatchObject({ cancelled: true });
  });
});
