/**
 * The harness with `--jobs FILE` (several jobs on one grid): N volunteer
 * pages shared by the coordinator's allocation, `--submit SEC:FILE` jobs
 * posted later (a job start), `GET /api/jobs` sampled until every job is done
 * or the time limit passes. Measures
 *
 * - utilization: the share of (volunteer, sample interval) pairs in which the
 *   volunteer computed for some job, i.e. the clock of its current worker
 *   advanced, over every connected volunteer (with a job, waiting for one,
 *   or moving between two) in the intervals in which some job was running
 *   (not waiting for its --min-workers, not over); also in the windows of
 *   ±`WINDOW_SEC` around each job's start and end;
 * - the fairness error over time (the coordinator's `fairnessError`: largest
 *   gap between a job's share of throughput and its weight's share, jobs
 *   pinned at a bound left out), its mean and maximum while two or more jobs
 *   ran, and how long after each job start or end it stayed above 0.1.
 */
import { readFileSync } from "node:fs";
import { chromium, type Browser } from "@playwright/test";
import { CHROMIUM_ARGS, chromiumExecutable } from "../support/chromium.ts";
import { startCoordinatorProcess, type CoordinatorProcess } from "../support/coordinator.ts";
import { pageQuery } from "./run.ts";
import { WORKER_PHASES, type PhaseTimes, type WorkerPhase } from "../../coordinator/protocol.ts";
import type { RunSpec } from "./flags.ts";

/** Seconds either side of a job's start or end over which utilization is also given. */
export const WINDOW_SEC = 10;

export interface JobsSample {
  readonly t: number;
  /** How long the coordinator took to answer this sample's `GET /api/jobs`, ms. */
  readonly fetchMs?: number;
  readonly fairnessError: number;
  readonly jobs: readonly { id: string; state: string; volunteers: number; target: number; actual: number; endsInSec?: number | null }[];
  /**
   * Per volunteer: its job and worker, and that worker's clock (null when it
   * has none); `phaseMs`, the page's own count of its trainer's time by phase
   * over all its jobs, as of its last report; `rates`, its measured
   * examples/s per job as the allocation sees them before normalizing.
   */
  readonly volunteers: readonly { id: string; job: string | null; worker: string | null; clock: number | null; phaseMs?: PhaseTimes; rates?: Record<string, number> }[];
}

export interface JobsSummary {
  readonly outcome: "done" | "timeout" | "error";
  readonly reason: string;
  readonly utilization: number | null;
  /** The pages' own time by phase, same intervals (`phaseShares`). */
  readonly phases: PhaseShares | null;
  /** The same intervals by what the volunteers did (shares; `computing` is the utilization). */
  readonly uses: Record<IntervalUse, number>;
  readonly windows: readonly { event: string; t: number; utilization: number | null; phases: PhaseShares | null }[];
  readonly fairness: { mean: number | null; max: number | null; settleSec: readonly { event: string; sec: number | null }[] };
  readonly moves: number;
  readonly jobs: readonly { id: string; state: string; doneSec: number | null; digestsAgree: boolean | null }[];
}

interface ApiJobs {
  jobs: { id: string; job: { state: string }; volunteers: number; share: { target: number; actual: number }; endsInSec?: number | null; workers: { id: string; state: string; clock: number; digest: { sum: number; l2: number; proj: number[] } | null }[]; events: { t: number; kind: string }[] }[];
  volunteers: { id: string; job: string | null; worker: string | null; moving: string | null; phaseMs?: PhaseTimes; rates?: Record<string, number> }[];
  moves: unknown[];
  fairnessError: number;
}

/** Some job ran (took volunteers and stepped, or was finishing) at this sample. */
const someJobRan = (s: JobsSample): boolean => s.jobs.some((j) => j.state === "running");

/**
 * Utilization over consecutive samples in [from, to]: intervals in which a
 * volunteer's worker clock advanced, over every connected volunteer's
 * intervals while some job ran (at either end of the interval).
 */
export function utilization(samples: readonly JobsSample[], from: number, to: number): number | null {
  let busy = 0;
  let all = 0;
  for (const { p, v } of volunteerIntervals(samples, from, to)) {
    all++;
    if (v.job !== null && v.job === p.job && v.worker === p.worker && v.clock !== null && p.clock !== null && v.clock > p.clock) busy++;
  }
  return all > 0 ? busy / all : null;
}

type SampledVolunteer = JobsSample["volunteers"][number];

/**
 * Each volunteer connected at both ends of an interval between consecutive
 * samples in [from, to] in which some job ran (at either end): its state
 * before (`p`) and after (`v`), and the interval's length in seconds.
 */
function* volunteerIntervals(samples: readonly JobsSample[], from: number, to: number): Generator<{ p: SampledVolunteer; v: SampledVolunteer; len: number }> {
  for (let i = 1; i < samples.length; i++) {
    const a = samples[i - 1] as JobsSample;
    const b = samples[i] as JobsSample;
    if (a.t < from || b.t > to || !(someJobRan(a) || someJobRan(b))) continue;
    const before = new Map(a.volunteers.map((v) => [v.id, v]));
    for (const v of b.volunteers) {
      const p = before.get(v.id);
      if (p) yield { p, v, len: b.t - a.t };
    }
  }
}

/** From the first sample in which some job ran to the last: the window the run's measures cover. */
export function runWindow(samples: readonly JobsSample[]): { start: number; end: number } {
  const running = samples.filter(someJobRan);
  const start = running[0]?.t ?? Infinity;
  return { start, end: running.at(-1)?.t ?? start };
}

/** Shares of the volunteers' time by what their trainer did (WORKER_PHASES), and `noReport`: no count for the interval. */
export type PhaseShares = Record<WorkerPhase | "noReport", number>;

/**
 * Utilization by the pages' own clocks: over the same intervals as
 * `utilization`, each volunteer's time by its trainer's phase (stepping, in
 * the staleness gate, loading, paused, draining, idle), from the increase of
 * its page's counters. A page reports up to 200 ms late, so an interval's
 * increases are scaled to the interval's length, after idle time beyond it
 * is taken off (a page without a membership does not report: its idle time
 * between jobs comes with its next report, after it); an interval in which a
 * volunteer's counters did not move at all (no report: between jobs, or a
 * page that stopped reporting) counts as `noReport`. Unlike `utilization` it
 * does not count a whole interval busy for one step in it, nor idle for a
 * move within it.
 */
export function phaseShares(samples: readonly JobsSample[], from: number, to: number): PhaseShares | null {
  const out: PhaseShares = { stepping: 0, gate: 0, loading: 0, paused: 0, draining: 0, idle: 0, noReport: 0 };
  let all = 0;
  const idle = WORKER_PHASES.indexOf("idle");
  for (const { p, v, len } of volunteerIntervals(samples, from, to)) {
    all += len;
    const d = WORKER_PHASES.map((k) => Math.max(0, (v.phaseMs?.[k] ?? 0) - (p.phaseMs?.[k] ?? 0)));
    // A page reports only while it has a membership: counters that grew by more than the
    // interval carry idle time from before it (between jobs, unreported), taken off first.
    const over = d.reduce((x, y) => x + y, 0) - len * 1000;
    if (over > 0) d[idle] = Math.max(0, (d[idle] as number) - over);
    const sum = d.reduce((x, y) => x + y, 0);
    if (sum <= 0) {
      out.noReport += len;
      continue;
    }
    WORKER_PHASES.forEach((k, n) => (out[k] += (len * (d[n] as number)) / sum));
  }
  if (all <= 0) return null;
  for (const k of Object.keys(out) as (keyof PhaseShares)[]) out[k] /= all;
  return out;
}

/** Where the (volunteer, interval) pairs of `utilization` went. */
export type IntervalUse = "computing" | "no job (waiting or moving)" | "job waiting for its minimum" | "joined, no step yet" | "stalled after stepping";

/**
 * The intervals of `utilization` in [from, to] by what the volunteer did:
 * computing (its worker's clock advanced), no job (waiting for one, or between
 * leaving one job and joining the next), in a job still waiting for its
 * --min-workers, joined but not stepped yet in this membership (data,
 * snapshot, links), or stalled after it had stepped (the staleness gate, a
 * lost link, draining at the end). Shares of all pairs.
 */
export function intervalUses(samples: readonly JobsSample[], from: number, to: number): Record<IntervalUse, number> {
  const n: Record<IntervalUse, number> = { computing: 0, "no job (waiting or moving)": 0, "job waiting for its minimum": 0, "joined, no step yet": 0, "stalled after stepping": 0 };
  const stepped = new Set<string>();
  let all = 0;
  for (let i = 1; i < samples.length; i++) {
    const a = samples[i - 1] as JobsSample;
    const b = samples[i] as JobsSample;
    const before = new Map(a.volunteers.map((v) => [v.id, v]));
    const state = new Map(b.jobs.map((j) => [j.id, j.state]));
    for (const v of b.volunteers) {
      const p = before.get(v.id);
      if (!p) continue;
      const member = `${v.id}/${v.job ?? ""}/${v.worker ?? ""}`;
      const advanced = v.job !== null && v.job === p.job && v.worker === p.worker && v.clock !== null && p.clock !== null && v.clock > p.clock;
      if (advanced) stepped.add(member);
      if (a.t < from || b.t > to || !(someJobRan(a) || someJobRan(b))) continue;
      all++;
      if (advanced) n.computing++;
      else if (v.job === null) n["no job (waiting or moving)"]++;
      else if (state.get(v.job) === "waiting") n["job waiting for its minimum"]++;
      else if (!stepped.has(member)) n["joined, no step yet"]++;
      else n["stalled after stepping"]++;
    }
  }
  for (const k of Object.keys(n) as IntervalUse[]) n[k] = all > 0 ? n[k] / all : 0;
  return n;
}

export async function runJobsExperiment(
  spec: RunSpec,
  submits: readonly { atSec: number; file: string }[],
  log: (line: string) => void,
): Promise<{ summary: JobsSummary; samples: JobsSample[]; coordinatorLog: string; pagesLog: string; last: unknown }> {
  const t0 = Date.now();
  const now = (): number => (Date.now() - t0) / 1000;
  const samples: JobsSample[] = [];
  const events: { event: string; t: number }[] = [];
  let coord: CoordinatorProcess | null = null;
  let browser: Browser | null = null;
  let outcome: JobsSummary["outcome"] = "timeout";
  let reason = `time limit ${spec.timeoutSec} s`;
  let last: ApiJobs | null = null;
  let coordinatorLog = "";
  // What the pages print (their move, join, snapshot and gate lines), with the run's time: where a move's time goes.
  const pageLines: string[] = [];
  try {
    coord = await startCoordinatorProcess([...spec.coordinatorArgs]);
    const executablePath = chromiumExecutable();
    browser = await chromium.launch({ headless: true, args: [...CHROMIUM_ARGS], ...(executablePath !== undefined ? { executablePath } : {}) });
    for (let n = 1; n <= spec.workers; n++) {
      const page = await (await browser.newContext()).newPage();
      page.on("console", (m) => {
        if (pageLines.length < 50_000) pageLines.push(`${now().toFixed(2)} h${n} ${m.text().slice(0, 300)}`);
      });
      await page.goto(`${coord.url}/?${pageQuery(n, spec.slow.get(n) ?? 1, spec.stepTimeMs)}`);
    }
    log(`${spec.workers} pages open at ${now().toFixed(1)} s`);
    const pending = [...submits].sort((a, b) => a.atSec - b.atSec);
    let allJoinedAt: number | null = null;
    const seenDone = new Set<string>();
    while (now() < spec.timeoutSec) {
      // A slow answer is recorded (`fetchMs`), not fatal: the coordinator shares the machine's two cores with six pages.
      const asked = performance.now();
      const res = await fetch(`${coord.url}/api/jobs`, { signal: AbortSignal.timeout(30_000) });
      const l = (await res.json()) as ApiJobs;
      const fetchMs = Math.round(performance.now() - asked);
      last = l;
      const t = now();
      const clockOf = new Map<string, number>();
      for (const j of l.jobs) for (const w of j.workers) clockOf.set(`${j.id}/${w.id}`, w.clock);
      samples.push({
        t,
        fetchMs,
        fairnessError: l.fairnessError,
        jobs: l.jobs.map((j) => ({ id: j.id, state: j.job.state, volunteers: j.volunteers, target: j.share.target, actual: j.share.actual, endsInSec: j.endsInSec ?? null })),
        volunteers: l.volunteers.map((v) => ({ id: v.id, job: v.moving === null ? v.job : null, worker: v.moving === null ? v.worker : null, clock: v.job !== null && v.worker !== null ? (clockOf.get(`${v.job}/${v.worker}`) ?? null) : null, ...(v.phaseMs !== undefined ? { phaseMs: v.phaseMs } : {}), ...(v.rates !== undefined ? { rates: v.rates } : {}) })),
      });
      if (allJoinedAt === null && l.volunteers.length >= spec.workers) {
        allJoinedAt = t;
        events.push({ event: "all volunteers have a job", t });
        log(`every volunteer has a job at ${t.toFixed(1)} s`);
      }
      for (const j of l.jobs) {
        if (j.job.state === "done" && !seenDone.has(j.id)) {
          seenDone.add(j.id);
          const doneT = (j.events.find((e) => e.kind === "done")?.t ?? Date.now()) - t0;
          events.push({ event: `job ${j.id} done`, t: doneT / 1000 });
          log(`job ${j.id} done at ${(doneT / 1000).toFixed(1)} s`);
        }
      }
      let submitted = false;
      while (allJoinedAt !== null && pending.length > 0 && t - allJoinedAt >= (pending[0]?.atSec ?? 0)) {
        submitted = true;
        const s = pending.shift() as { atSec: number; file: string };
        const r = await fetch(`${coord.url}/api/jobs`, {
          method: "POST",
          headers: { Authorization: `Bearer ${coord.token}`, "Content-Type": "application/json" },
          body: readFileSync(s.file, "utf8"),
        });
        const body = (await r.json()) as { id?: string; error?: string };
        if (r.status !== 201) throw new Error(`POST /api/jobs ${s.file}: HTTP ${r.status} ${body.error ?? ""}`);
        events.push({ event: `job ${body.id ?? "?"} submitted`, t: now() });
        log(`job ${body.id ?? "?"} submitted at ${now().toFixed(1)} s`);
      }
      // `l` was read before this turn's submissions: a job just submitted is not in it yet.
      if (!submitted && pending.length === 0 && l.jobs.every((j) => j.job.state === "done" || j.job.state === "failed")) {
        outcome = "done";
        reason = "every job done";
        break;
      }
      await new Promise((r) => setTimeout(r, spec.sampleMs));
    }
  } catch (e) {
    outcome = "error";
    reason = e instanceof Error ? e.message : String(e);
  } finally {
    await browser?.close().catch(() => {});
    await coord?.stop();
    coordinatorLog = coord?.output() ?? "";
  }
  // The window: while some job ran (from the first sample in which one was running to the last),
  // over every connected volunteer, whether it had a job, waited for one or was moving.
  const { start, end } = runWindow(samples);
  const jobEvents = events.filter((e) => e.event !== "all volunteers have a job");
  const windows = jobEvents.map((e) => {
    const from = Math.max(start, e.t - WINDOW_SEC);
    const to = Math.min(end, e.t + WINDOW_SEC);
    return { event: e.event, t: e.t, utilization: utilization(samples, from, to), phases: phaseShares(samples, from, to) };
  });
  const multi = samples.filter((s) => s.t >= start && s.jobs.filter((j) => j.state === "running").length >= 2);
  const errs = multi.map((s) => s.fairnessError);
  // Only events while some job still ran (after the last one ends there is no share to settle).
  const settleSec = jobEvents.filter((e) => e.t < end).map((e) => {
    const after = samples.filter((s) => s.t >= e.t && s.t <= end);
    const ok = after.find((s) => s.fairnessError <= 0.1);
    return { event: e.event, sec: ok ? ok.t - e.t : null };
  });
  const digestsOk = (j: ApiJobs["jobs"][number]): boolean | null => {
    const ds = j.workers.filter((w) => w.state === "active").map((w) => w.digest);
    if (ds.length === 0 || ds.some((d) => d === null)) return null;
    const [d0] = ds as { sum: number; l2: number }[];
    return (ds as { sum: number; l2: number }[]).every((d) => Math.abs(d.sum - (d0?.sum ?? 0)) <= 1e-4 * Math.max(d.l2, 1e-12) && Math.abs(d.l2 - (d0?.l2 ?? 0)) <= 1e-4 * Math.max(d.l2, 1e-12));
  };
  return {
    samples,
    coordinatorLog,
    pagesLog: pageLines.join("\n") + "\n",
    last,
    summary: {
      outcome,
      reason,
      utilization: utilization(samples, start, end),
      phases: phaseShares(samples, start, end),
      uses: intervalUses(samples, start, end),
      windows,
      fairness: { mean: errs.length > 0 ? errs.reduce((a, b) => a + b, 0) / errs.length : null, max: errs.length > 0 ? Math.max(...errs) : null, settleSec },
      moves: last?.moves.length ?? 0,
      jobs: (last?.jobs ?? []).map((j) => ({ id: j.id, state: j.job.state, doneSec: events.find((e) => e.event === `job ${j.id} done`)?.t ?? null, digestsAgree: digestsOk(j) })),
    },
  };
}
