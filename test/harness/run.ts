/**
 * One harness experiment: a real coordinator process on a free loopback port,
 * N volunteer pages in headless Chromium (browser contexts of one process, or
 * spread over K processes), slowdowns, kills and joins on schedule, and the
 * coordinator's /api/status sampled every `sampleMs` until the job is done,
 * fails, or the time limit passes.
 *
 * Contract:
 * - Time 0 of a run is the moment `runExperiment` was called; every `t` in the
 *   result is seconds since then. `--kill`/`--join` times count from the first
 *   training step (first sample in which some worker's clock is above 0), so
 *   that browser start-up time does not eat into them.
 * - `reached` is true exactly when the coordinator logged a `finishing` event
 *   whose detail names the target and the job then became `done`.
 * - Once the target was reached the run waits for `done` up to
 *   `DRAIN_GRACE_SEC` past the time limit (the coordinator's drain timeout is 30 s).
 * - Everything started here is stopped before it returns, also on errors.
 */
import { chromium, type Browser, type BrowserContext } from "@playwright/test";
import { CHROMIUM_ARGS, chromiumExecutable } from "../support/chromium.ts";
import { startCoordinatorProcess, type CoordinatorProcess, type Status } from "../support/coordinator.ts";
import { digestsAgree } from "../../client/replica.ts";
import type { RunSpec } from "./flags.ts";
import { asRmseOverFloor } from "./rmse.ts";

const DRAIN_GRACE_SEC = 35;

export interface WorkerSample {
  /** Harness worker number (from the page name `hI`), or null for a page the harness did not open. */
  readonly n: number | null;
  readonly id: string;
  readonly state: string;
  readonly clock: number;
  readonly examples: number;
  readonly bytesIn: number;
  readonly bytesOut: number;
  /** Time spent waiting at the SSP gate so far (ms, as the worker reports it). */
  readonly waitMs: number;
}

export interface Sample {
  readonly t: number;
  readonly state: string;
  readonly epoch: number;
  readonly active: number;
  readonly clockMin: number;
  readonly clockMax: number;
  readonly examples: number;
  /** Clock of the evaluating worker (lowest id in the view), for placing test points. */
  readonly evalClock: number | null;
  readonly workers: readonly WorkerSample[];
}

export interface TestPoint {
  readonly clock: number;
  readonly value: number;
  /** Wall time and examples interpolated at the evaluator's clock from the samples. */
  readonly t: number;
  readonly examples: number;
}

export interface RunEvent {
  readonly t: number;
  readonly source: "harness" | "coordinator";
  readonly kind: string;
  readonly worker?: string;
  readonly detail?: string;
}

export type Outcome = "target" | "finished" | "timeout" | "failed" | "interrupted" | "error";

export interface RunTimings {
  coordinatorReadySec: number | null;
  browsersReadySec: number | null;
  pagesOpenSec: number | null;
  /** First sample in which the job was running (every `--min-workers` page joined). */
  runningSec: number | null;
  firstStepSec: number | null;
  finishingSec: number | null;
  doneSec: number | null;
  totalSec: number;
}

export interface RunSummary {
  readonly reached: boolean;
  readonly outcome: Outcome;
  readonly reason: string;
  readonly metric: string;
  readonly best: number | null;
  readonly last: number | null;
  /** From the first training step to the first test point at or above the target. */
  readonly secondsToTarget: number | null;
  readonly examplesToTarget: number | null;
  readonly clockToTarget: number | null;
  readonly finalClockMax: number;
  readonly examples: number;
  /** Max clock per second and examples per second between the first step and the finish. */
  readonly clocksPerSec: number | null;
  readonly examplesPerSec: number | null;
  readonly bytesTotal: number;
  /** Bytes the coordinator served (shards, factor blocks) plus the factor blocks it received (job mf's checkpoints). */
  readonly coordinatorBytes: number;
  readonly digests: number;
  /** All reported end digests agree within the relative tolerance (null: fewer than two). */
  readonly digestsAgree: boolean | null;
  /**
   * Share of their training time that the pages with the smallest slowdown spent
   * waiting at the SSP gate (null when there is no such page or no time).
   */
  readonly fastWaitShare: number | null;
}

export interface RunResult {
  readonly label: string;
  readonly spec: {
    workers: number;
    browsers: number;
    slow: Record<string, number>;
    stepTimeMs: number;
    kills: { worker: number; atSec: number }[];
    joins: { worker: number; atSec: number }[];
    timeoutSec: number;
    sampleMs: number;
    coordinatorArgs: string[];
    targetAccuracy: number;
  };
  readonly summary: RunSummary;
  readonly timings: RunTimings;
  readonly samples: Sample[];
  readonly testPoints: TestPoint[];
  readonly events: RunEvent[];
  readonly finalStatus: Status | null;
  readonly coordinatorLogTail: string[];
}

export interface RunHooks {
  /** Called after every sample. */
  sample(s: Sample, testLatest: TestPoint | null): void;
  event(e: RunEvent): void;
  /** Polled: stop early (Ctrl-C). */
  interrupted(): boolean;
}

/** Coordinators of runs in progress, for `stopAllNow` on a hard exit. */
const liveCoordinators = new Set<CoordinatorProcess>();

/**
 * Synchronous last resort before `process.exit` (second Ctrl-C): SIGTERM to
 * every coordinator still running. Its process is `tsx`, which passes the
 * signal on to the Node child (SIGKILL would orphan that child). Browsers
 * exit by themselves when their pipe to this process closes.
 */
export function stopAllNow(): void {
  for (const c of liveCoordinators) if (c.child.exitCode === null) c.child.kill("SIGTERM");
}

const sleep = (ms: number): Promise<void> => new Promise((r) => setTimeout(r, ms));

/** How long a finished run waits for the evaluation of the drained model. */
const FINAL_EVAL_WAIT_SEC = 15;

/**
 * The drained replica (every worker's updates up to the final clocks) is
 * uploaded just before the digests, so its evaluation usually ends after the
 * job is `done`. Wait for it (a test point at the largest final clock, up to
 * FINAL_EVAL_WAIT_SEC), so that a report's last accuracy is the final model's.
 * Returns the newest status.
 */
async function awaitFinalEvaluation(url: string, done: Status, sampleMs: number): Promise<Status> {
  const finalClock = Math.max(0, ...done.workers.filter((w) => w.state === "active").map((w) => w.clock));
  const evaluated = (st: Status): boolean => (st.metrics.test.series.at(-1)?.[0] ?? -1) >= finalClock;
  let latest = done;
  const until = Date.now() + FINAL_EVAL_WAIT_SEC * 1000;
  while (!evaluated(latest) && Date.now() < until) {
    await sleep(sampleMs);
    try {
      const res = await fetch(`${url}/api/status`, { signal: AbortSignal.timeout(5000) });
      latest = (await res.json()) as Status;
    } catch {
      break;
    }
  }
  return latest;
}

/** Linear interpolation of `y` at `x` over points sorted by x; clamps at the ends. */
export function interpolate(points: readonly (readonly [number, number])[], x: number): number | null {
  if (points.length === 0) return null;
  const first = points[0] as readonly [number, number];
  if (x <= first[0]) return first[1];
  for (let i = 1; i < points.length; i++) {
    const [x1, y1] = points[i] as readonly [number, number];
    if (x1 >= x) {
      const [x0, y0] = points[i - 1] as readonly [number, number];
      return x1 === x0 ? y1 : y0 + ((y1 - y0) * (x - x0)) / (x1 - x0);
    }
  }
  return (points[points.length - 1] as readonly [number, number])[1];
}

/** Test points placed in wall time and examples by the evaluator's clock. */
export function placeTestPoints(series: readonly [number, number][], samples: readonly Sample[]): TestPoint[] {
  const byClock: [number, number][] = [];
  const exByClock: [number, number][] = [];
  for (const s of samples) {
    if (s.evalClock === null) continue;
    const last = byClock[byClock.length - 1];
    if (last && s.evalClock <= last[0]) continue; // keep the first sample of each clock, x increasing
    byClock.push([s.evalClock, s.t]);
    exByClock.push([s.evalClock, s.examples]);
  }
  return series.map(([clock, value]) => ({
    clock,
    value,
    t: interpolate(byClock, clock) ?? 0,
    examples: Math.round(interpolate(exByClock, clock) ?? 0),
  }));
}

/** Page I's URL parameters: its name, its `?slowdown` and the run's `?steptime` (client/pace.ts). */
export function pageQuery(n: number, slowdown: number, stepTimeMs: number): string {
  const q = new URLSearchParams({ name: `h${n}` });
  if (slowdown !== 1) q.set("slowdown", String(slowdown));
  if (stepTimeMs > 0) q.set("steptime", String(stepTimeMs));
  return q.toString();
}

function workerNumber(name: string): number | null {
  const m = /^h([0-9]+)$/.exec(name);
  return m?.[1] ? Number(m[1]) : null;
}

/**
 * Waiting share of the fast pages (those with the smallest slowdown): the
 * gate waiting their worker records accumulated while they were in the
 * view, over the time they were in it (from their first sample with a clock
 * above 0 to their last sample as active or straggler, or the end), summed
 * over every record (a page that rejoins gets a new worker id).
 */
export function fastWaitShare(samples: readonly Sample[], slow: ReadonlyMap<number, number>, endT: number | null): number | null {
  const spans = new Map<string, { from: number; to: number; wait0: number; wait: number }>();
  let fastest = Infinity;
  for (const s of samples) for (const w of s.workers) if (w.n !== null) fastest = Math.min(fastest, slow.get(w.n) ?? 1);
  for (const s of samples) {
    if (endT !== null && s.t > endT) break;
    for (const w of s.workers) {
      if (w.n === null || (slow.get(w.n) ?? 1) > fastest) continue;
      const inView = w.state === "active" || w.state === "straggler";
      const span = spans.get(w.id);
      if (!span) {
        if (inView && w.clock > 0) spans.set(w.id, { from: s.t, to: s.t, wait0: w.waitMs, wait: w.waitMs });
      } else if (inView) {
        span.to = s.t;
        span.wait = w.waitMs;
      }
    }
  }
  let wait = 0;
  let time = 0;
  for (const sp of spans.values()) {
    wait += Math.max(0, sp.wait - sp.wait0) / 1000;
    time += sp.to - sp.from;
  }
  return time > 0 ? Math.min(1, wait / time) : null;
}

function toSample(t: number, s: Status): Sample {
  const evaluator = s.view.active[0];
  const ev = evaluator === undefined ? undefined : s.workers.find((w) => w.id === evaluator);
  return {
    t,
    state: s.job.state,
    epoch: s.view.epoch,
    active: s.view.active.length,
    clockMin: s.clock.min,
    clockMax: s.clock.max,
    examples: s.examples,
    evalClock: ev ? ev.clock : null,
    workers: s.workers.map((w) => ({
      n: workerNumber(w.name),
      id: w.id,
      state: w.state,
      clock: w.clock,
      examples: w.examples,
      bytesIn: w.bytesIn,
      bytesOut: w.bytesOut,
      waitMs: w.waitMs,
    })),
  };
}

export async function runExperiment(spec: RunSpec, hooks: RunHooks): Promise<RunResult> {
  const t0 = Date.now();
  const now = (): number => (Date.now() - t0) / 1000;
  const events: RunEvent[] = [];
  const samples: Sample[] = [];
  const timings: RunTimings = {
    coordinatorReadySec: null,
    browsersReadySec: null,
    pagesOpenSec: null,
    runningSec: null,
    firstStepSec: null,
    finishingSec: null,
    doneSec: null,
    totalSec: 0,
  };
  const harnessEvent = (kind: string, worker?: string, detail?: string): void => {
    const e: RunEvent = { t: now(), source: "harness", kind, ...(worker ? { worker } : {}), ...(detail ? { detail } : {}) };
    events.push(e);
    hooks.event(e);
  };
  const seen = new Set<string>();
  let coord: CoordinatorProcess | null = null;
  const browsers: Browser[] = [];
  const contexts = new Map<number, BrowserContext>();
  let finalStatus: Status | null = null;
  let outcome: Outcome = "timeout";
  let reason = "";
  let reachedTarget = false;

  const openPage = async (n: number): Promise<void> => {
    const browser = browsers[(n - 1) % browsers.length] as Browser;
    const ctx = await browser.newContext();
    contexts.set(n, ctx);
    const page = await ctx.newPage();
    let errors = 0;
    page.on("pageerror", (err) => {
      if (errors++ < 3) harnessEvent("page-error", `h${n}`, err.message.slice(0, 200));
    });
    page.on("crash", () => harnessEvent("page-crash", `h${n}`));
    page.on("console", (msg) => {
      if (msg.type() === "error" && errors++ < 3) harnessEvent("page-console-error", `h${n}`, msg.text().slice(0, 200));
    });
    const f = spec.slow.get(n) ?? 1;
    await page.goto(`${(coord as CoordinatorProcess).url}/?${pageQuery(n, f, spec.stepTimeMs)}`);
    const pacing = [f !== 1 ? `slowdown ${f}` : "", spec.stepTimeMs > 0 ? `steptime ${spec.stepTimeMs} ms` : ""].filter((x) => x !== "");
    harnessEvent("opened", `h${n}`, pacing.length > 0 ? pacing.join(", ") : undefined);
  };

  try {
    coord = await startCoordinatorProcess([...spec.coordinatorArgs]);
    liveCoordinators.add(coord);
    timings.coordinatorReadySec = now();
    harnessEvent("coordinator", undefined, `${coord.url} ${spec.coordinatorArgs.join(" ")}`.trim());
    const executablePath = chromiumExecutable();
    for (let b = 0; b < spec.browsers; b++) {
      browsers.push(
        await chromium.launch({ headless: true, args: [...CHROMIUM_ARGS], ...(executablePath !== undefined ? { executablePath } : {}) }),
      );
    }
    timings.browsersReadySec = now();
    for (let n = 1; n <= spec.workers; n++) await openPage(n);
    timings.pagesOpenSec = now();

    type Pending = { kind: "kill" | "join"; worker: number; atSec: number };
    const schedule: Pending[] = [
      ...spec.kills.map((k) => ({ kind: "kill" as const, ...k })),
      ...spec.joins.map((j) => ({ kind: "join" as const, ...j })),
    ].sort((a, b) => a.atSec - b.atSec || (a.kind === "kill" ? -1 : 1));

    let deadline = spec.timeoutSec;
    for (;;) {
      if (hooks.interrupted()) {
        outcome = "interrupted";
        reason = "interrupted";
        break;
      }
      let status: Status | null = null;
      try {
        // Our own fetch with a time limit: a stalled coordinator must not stall the harness.
        const res = await fetch(`${coord.url}/api/status`, { signal: AbortSignal.timeout(Math.max(5000, spec.sampleMs * 4)) });
        status = (await res.json()) as Status;
      } catch (e) {
        if (coord.child.exitCode !== null) {
          outcome = "error";
          reason = `coordinator exited with ${coord.child.exitCode}`;
          break;
        }
        harnessEvent("status-error", undefined, e instanceof Error ? e.message : String(e));
      }
      if (status) {
        finalStatus = status;
        const s = toSample(now(), status);
        samples.push(s);
        for (const e of status.events) {
          const key = `${e.t}|${e.kind}|${e.worker ?? ""}|${e.detail ?? ""}`;
          if (seen.has(key)) continue;
          seen.add(key);
          const ev: RunEvent = {
            t: (e.t - t0) / 1000,
            source: "coordinator",
            kind: e.kind,
            ...(e.worker ? { worker: e.worker } : {}),
            ...(e.detail ? { detail: e.detail } : {}),
          };
          events.push(ev);
          hooks.event(ev);
          if (e.kind === "finishing") {
            timings.finishingSec ??= ev.t;
            reason = e.detail ?? "finishing";
            if (/target/.test(e.detail ?? "")) {
              reachedTarget = true;
              deadline = Math.max(deadline, ev.t + DRAIN_GRACE_SEC);
            }
          }
        }
        if (timings.firstStepSec === null && status.workers.some((w) => w.clock > 0)) timings.firstStepSec = s.t;
        if (timings.runningSec === null && status.job.state !== "waiting") timings.runningSec = s.t;
        const series = status.metrics.test.series;
        const latest = series.length > 0 ? placeTestPoints(series.slice(-1), samples)[0] ?? null : null;
        hooks.sample(s, latest);
        if (status.job.state === "done" || status.job.state === "failed") {
          timings.doneSec = s.t;
          if (status.job.state === "done") finalStatus = await awaitFinalEvaluation(coord.url, status, spec.sampleMs);
          outcome = status.job.state === "failed" ? "failed" : reachedTarget ? "target" : "finished";
          if (!reason) reason = `job ${status.job.state}`;
          break;
        }
      }
      // Kills and joins, timed from the first training step.
      const first = timings.firstStepSec;
      while (first !== null && schedule.length > 0 && (schedule[0] as Pending).atSec <= now() - first) {
        const p = schedule.shift() as Pending;
        if (p.kind === "kill") {
          const ctx = contexts.get(p.worker);
          contexts.delete(p.worker);
          harnessEvent("kill", `h${p.worker}`, `page closed at +${p.atSec} s`);
          await ctx?.close().catch(() => {});
        } else {
          harnessEvent("join", `h${p.worker}`, `page opened at +${p.atSec} s`);
          await openPage(p.worker).catch((e: unknown) => harnessEvent("join-failed", `h${p.worker}`, String(e)));
        }
      }
      if (now() > deadline) {
        outcome = "timeout";
        reason = reachedTarget ? "target reached but the job did not finish draining in time" : `no target within ${spec.timeoutSec} s`;
        break;
      }
      await sleep(spec.sampleMs);
    }
  } catch (e) {
    outcome = "error";
    reason = e instanceof Error ? e.message.split("\n")[0] ?? "error" : String(e);
    harnessEvent("error", undefined, reason);
  } finally {
    for (const b of browsers) await b.close().catch(() => {});
    await coord?.stop().catch(() => {});
    if (coord) liveCoordinators.delete(coord);
  }
  timings.totalSec = now();
  events.sort((a, b) => a.t - b.t);

  const series = finalStatus?.metrics.test.series ?? [];
  const metricName = finalStatus?.metrics.test.name ?? "accuracy";
  // mf and mf-dp: RMSE / σ, lower is better, timed from the job's start (a
  // model-parallel worker's clock moves only when its first block is done).
  const rmse = spec.rmse;
  const testPoints = rmse ? asRmseOverFloor(metricName, placeTestPoints(series, samples), rmse.noise) : placeTestPoints(series, samples);
  const target = rmse ? rmse.target : spec.targetAccuracy;
  const hit = testPoints.find((p) => (rmse ? p.value <= target : p.value >= target)) ?? null;
  const first = rmse ? timings.runningSec : timings.firstStepSec;
  const lastSample = samples[samples.length - 1];
  const endT = timings.finishingSec ?? lastSample?.t ?? null;
  const firstSample = first === null ? undefined : samples.find((s) => s.t >= first);
  const span = first !== null && endT !== null ? endT - first : null;
  const endSample = endT === null ? undefined : [...samples].reverse().find((s) => s.t <= endT);
  const digests = (finalStatus?.workers ?? []).flatMap((w) => (w.digest ? [w.digest] : []));
  const d0 = digests[0];
  const reached = outcome === "target";
  const summary: RunSummary = {
    reached,
    outcome,
    reason,
    metric: rmse ? "rmse/σ" : metricName,
    best: testPoints.length ? (rmse ? Math.min : Math.max)(...testPoints.map((p) => p.value)) : null,
    last: testPoints.length ? (testPoints[testPoints.length - 1] as TestPoint).value : null,
    secondsToTarget: hit && first !== null ? Math.max(0, hit.t - first) : null,
    examplesToTarget: hit ? hit.examples : null,
    clockToTarget: hit ? hit.clock : null,
    finalClockMax: lastSample?.clockMax ?? 0,
    examples: finalStatus?.examples ?? 0,
    clocksPerSec: span && span > 0 && endSample && firstSample ? (endSample.clockMax - firstSample.clockMax) / (endSample.t - firstSample.t || span) : null,
    examplesPerSec: span && span > 0 && endSample && firstSample ? (endSample.examples - firstSample.examples) / (endSample.t - firstSample.t || span) : null,
    bytesTotal: (finalStatus?.workers ?? []).reduce((s, w) => s + w.bytesIn + w.bytesOut, 0),
    coordinatorBytes: (finalStatus?.served.bytes ?? 0) + (finalStatus?.mf?.checkpointBytesIn ?? 0),
    digests: digests.length,
    digestsAgree: d0 && digests.length > 1 ? digests.every((d) => digestsAgree(d0, d)) : null,
    fastWaitShare: fastWaitShare(samples, spec.slow, endT),
  };
  return {
    label: spec.label,
    spec: {
      workers: spec.workers,
      browsers: spec.browsers,
      slow: Object.fromEntries([...spec.slow].map(([k, v]) => [String(k), v])),
      stepTimeMs: spec.stepTimeMs,
      kills: spec.kills.map((k) => ({ ...k })),
      joins: spec.joins.map((j) => ({ ...j })),
      timeoutSec: spec.timeoutSec,
      sampleMs: spec.sampleMs,
      coordinatorArgs: [...spec.coordinatorArgs],
      targetAccuracy: target,
    },
    summary,
    timings,
    samples,
    testPoints,
    events,
    finalStatus,
    coordinatorLogTail: (coord?.output() ?? "").split("\n").slice(-80),
  };
}
