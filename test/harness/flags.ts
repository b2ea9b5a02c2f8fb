/**
 * Harness flags (INTERFACE.md "Harness flags"), parsed strictly and without
 * side effects, so that every mistake is found before a coordinator or a
 * browser starts. A mistake is a `UsageError` (one line); main exits with 2.
 *
 * Workers are numbered 1..N in the order their pages are opened; worker I's
 * page is opened with `?name=hI`, which is how the harness finds it in the
 * coordinator's status. `--join I@S` opens page I at S seconds: I is a new
 * number (> N), or one whose page an earlier `--kill I@T` (T < S) closed.
 *
 * Coordinator flags are validated with the coordinator's own
 * `configFromValues`, per run, and passed through as given, except the ones the
 * harness owns: `--port` (a free loopback port), `--host` (loopback only),
 * `--token` and `--no-build` (the harness serves the already built dist/).
 * `--min-workers` defaults to the number of pages opened at start, so the job
 * starts with every one of them.
 */
import { parseArgs } from "node:util";
import { COORDINATOR_FLAGS, configFromValues, UsageError } from "../../coordinator/cli.ts";
import { MAX_STEP_TIME_MS } from "../../client/pace.ts";

export { UsageError };

/** Coordinator flags the harness sets itself and does not pass through. */
const OWNED_FLAGS = new Set(["port", "host", "token", "no-build"]);

export const HARNESS_FLAGS = {
  ...COORDINATOR_FLAGS,
  workers: { type: "string" },
  browsers: { type: "string" },
  slow: { type: "string", multiple: true },
  slowdown: { type: "string" },
  "step-time": { type: "string" },
  kill: { type: "string", multiple: true },
  join: { type: "string", multiple: true },
  timeout: { type: "string" },
  out: { type: "string" },
  compare: { type: "string" },
  "sample-ms": { type: "string" },
  /** With --jobs: `SEC:FILE` posts the job entry in FILE to POST /api/jobs SEC seconds after every page has a job. */
  submit: { type: "string", multiple: true },
  help: { type: "boolean" },
} as const;

export interface TimedWorker {
  readonly worker: number;
  readonly atSec: number;
}

/** One experiment: what main hands to `runExperiment`. */
export interface RunSpec {
  /** Short name of this run in a comparison ("workers=4"), or "run". */
  readonly label: string;
  readonly workers: number;
  readonly browsers: number;
  /** Slowdown factor per worker number (1 when absent). */
  readonly slow: ReadonlyMap<number, number>;
  /** `--step-time MS`: every page gets `?steptime=MS` (0: none); a `--slow` factor multiplies it. */
  readonly stepTimeMs: number;
  readonly kills: readonly TimedWorker[];
  readonly joins: readonly TimedWorker[];
  readonly timeoutSec: number;
  readonly sampleMs: number;
  /** Coordinator argv (validated), without the flags the harness owns. */
  readonly coordinatorArgs: readonly string[];
  /** The coordinator's target accuracy for this run (validated default included). */
  readonly targetAccuracy: number;
  readonly maxClock: number;
  /** `--submit SEC:FILE` (with --jobs): jobs posted during the run. */
  readonly submits: readonly { readonly atSec: number; readonly file: string }[];
  /**
   * Jobs mf and mf-dp: their test metric is read as test RMSE / σ (lower is
   * better) and the target is `--mf-target`, so both jobs compare on one scale.
   */
  readonly rmse: { readonly noise: number; readonly target: number } | null;
}

export interface HarnessConfig {
  readonly runs: readonly RunSpec[];
  readonly out: string | null;
  /** `--compare KEY=…` as given, or null. */
  readonly compare: { readonly key: string; readonly values: readonly string[] } | null;
  readonly help: boolean;
}

export const USAGE = `usage: npm run harness -- [--workers N] [--browsers K] [--slow I:F]... [--slowdown F]
       [--step-time MS] [--kill I@SEC]... [--join I@SEC]... [--timeout SEC] [--out DIR] [--compare KEY=V1,V2,...]
       [--sample-ms MS] [--submit SEC:FILE]... (with --jobs FILE) [coordinator flags: --job --consistency --staleness --max-clock --epochs
       --target-accuracy --min-workers --batch --lr --eval-every --seed --state-dir]
compare keys: workers, browsers, slowdown, step-time, consistency (bsp, ssp:S, asp), or any coordinator flag`;

type Values = Record<string, string | boolean | string[] | undefined>;

function wholeNumber(flag: string, v: string, min: number, max: number): number {
  if (!/^[0-9]+$/.test(v)) throw new UsageError(`--${flag} wants a whole number, got "${v}"`);
  const n = Number(v);
  if (n < min || n > max) throw new UsageError(`--${flag} must be between ${min} and ${max}, got ${n}`);
  return n;
}

function positiveNumber(flag: string, v: string, min: number, max: number): number {
  const n = Number(v);
  if (v.trim() === "" || !Number.isFinite(n)) throw new UsageError(`--${flag} wants a number, got "${v}"`);
  if (n < min || n > max) throw new UsageError(`--${flag} must be between ${min} and ${max}, got ${n}`);
  return n;
}

/** `I:F` → worker I slowed down by F. */
function parseSlow(v: string): [number, number] {
  const m = /^([0-9]+):([0-9.]+)$/.exec(v);
  if (!m?.[1] || !m[2]) throw new UsageError(`--slow wants I:F (worker number and factor ≥ 1), got "${v}"`);
  return [wholeNumber("slow", m[1], 1, 10_000), positiveNumber("slow", m[2], 1, 1000)];
}

/** `I@SEC` → worker I at SEC seconds. */
function parseTimed(flag: string, v: string): TimedWorker {
  const m = /^([0-9]+)@([0-9.]+)$/.exec(v);
  if (!m?.[1] || !m[2]) throw new UsageError(`--${flag} wants I@SECONDS, got "${v}"`);
  return { worker: wholeNumber(flag, m[1], 1, 10_000), atSec: positiveNumber(flag, m[2], 0, 86_400) };
}

/** Check that kills and joins name pages that are open at that moment. */
function checkSchedule(workers: number, kills: readonly TimedWorker[], joins: readonly TimedWorker[], slow: ReadonlyMap<number, number>): void {
  type Ev = { kind: "kill" | "join"; w: TimedWorker };
  const evs: Ev[] = [...kills.map((w) => ({ kind: "kill" as const, w })), ...joins.map((w) => ({ kind: "join" as const, w }))];
  // At equal times a kill comes first, so `--kill 2@10 --join 2@10` replaces a page.
  evs.sort((a, b) => a.w.atSec - b.w.atSec || (a.kind === "kill" ? -1 : 1));
  const open = new Set<number>();
  const known = new Set<number>();
  for (let i = 1; i <= workers; i++) open.add(i), known.add(i);
  for (const e of evs) {
    const i = e.w.worker;
    if (e.kind === "kill") {
      if (!open.has(i)) throw new UsageError(`--kill ${i}@${e.w.atSec}: worker ${i} is not open then (workers are 1..${workers} plus --join)`);
      open.delete(i);
    } else {
      if (open.has(i)) throw new UsageError(`--join ${i}@${e.w.atSec}: worker ${i} is already open then; use a new number`);
      open.add(i);
      known.add(i);
    }
  }
  for (const i of slow.keys()) {
    if (!known.has(i)) throw new UsageError(`--slow ${i}:…: there is no worker ${i} (workers are 1..${workers} plus --join)`);
  }
}

const COMPARE_HARNESS_KEYS = new Set(["workers", "browsers", "slowdown", "step-time"]);

/** Apply one `--compare` value to a copy of the parsed values. */
function withCompareValue(values: Values, key: string, v: string): Values {
  const next: Values = { ...values };
  if (key === "consistency") {
    const [mode, s] = v.split(":");
    next["consistency"] = mode ?? v;
    if (s !== undefined) next["staleness"] = s;
  } else {
    next[key] = v;
  }
  return next;
}

function str(values: Values, k: string): string | undefined {
  const v = values[k];
  return typeof v === "string" ? v : undefined;
}

function list(values: Values, k: string): string[] {
  const v = values[k];
  return Array.isArray(v) ? v : [];
}

/** Coordinator argv from parsed values: every coordinator flag given, minus the owned ones. */
function coordinatorArgv(values: Values): string[] {
  const argv: string[] = [];
  for (const [k, spec] of Object.entries(COORDINATOR_FLAGS)) {
    if (OWNED_FLAGS.has(k)) continue;
    const v = values[k];
    if (spec.type === "boolean") {
      if (v === true) argv.push(`--${k}`);
    } else if (typeof v === "string") {
      argv.push(`--${k}`, v);
    }
  }
  return argv;
}

function runSpec(values: Values, label: string): RunSpec {
  const workers = wholeNumber("workers", str(values, "workers") ?? "2", 1, 64);
  const browsers = wholeNumber("browsers", str(values, "browsers") ?? "1", 1, 64);
  if (browsers > workers + list(values, "join").length) {
    throw new UsageError(`--browsers ${browsers} is more than the ${workers} pages opened`);
  }
  const allSlow = str(values, "slowdown");
  const slowAll = allSlow === undefined ? 1 : positiveNumber("slowdown", allSlow, 1, 1000);
  const slow = new Map<number, number>();
  const kills = list(values, "kill").map((v) => parseTimed("kill", v));
  const joins = list(values, "join").map((v) => parseTimed("join", v));
  if (slowAll !== 1) {
    for (let i = 1; i <= workers; i++) slow.set(i, slowAll);
    for (const j of joins) slow.set(j.worker, slowAll);
  }
  for (const v of list(values, "slow")) {
    const [i, f] = parseSlow(v);
    slow.set(i, f);
  }
  checkSchedule(workers, kills, joins, slow);
  const stepTime = str(values, "step-time");
  const stepTimeMs = stepTime === undefined ? 0 : positiveNumber("step-time", stepTime, 1, MAX_STEP_TIME_MS);
  const coordValues: Values = { ...values };
  // Several jobs: each job's own flags say how many workers it waits for.
  if (str(values, "min-workers") === undefined && str(values, "jobs") === undefined) coordValues["min-workers"] = String(workers);
  const submits = list(values, "submit").map((v) => {
    const m = /^([0-9]+(?:\.[0-9]+)?):(.+)$/.exec(v);
    if (!m?.[1] || !m[2]) throw new UsageError(`--submit wants SEC:FILE, got "${v}"`);
    if (str(values, "jobs") === undefined) throw new UsageError("--submit needs --jobs FILE");
    return { atSec: Number(m[1]), file: m[2] };
  });
  const coordStrings: Record<string, string | boolean | undefined> = {};
  for (const k of Object.keys(COORDINATOR_FLAGS)) {
    const v = coordValues[k];
    if (typeof v === "string" || typeof v === "boolean") coordStrings[k] = v;
  }
  // The coordinator's own validation, so the harness accepts exactly what it accepts.
  const cfg = configFromValues(coordStrings);
  const timeoutSec = positiveNumber("timeout", str(values, "timeout") ?? "300", 1, 86_400);
  const sampleMs = wholeNumber("sample-ms", str(values, "sample-ms") ?? "250", 50, 60_000);
  return {
    label,
    workers,
    browsers,
    slow,
    stepTimeMs,
    kills,
    joins,
    timeoutSec,
    sampleMs,
    coordinatorArgs: coordinatorArgv(coordValues),
    targetAccuracy: cfg.targetAccuracy,
    maxClock: cfg.maxClock,
    submits,
    rmse: cfg.mf ? { noise: cfg.mf.problem.noise, target: cfg.mf.target } : null,
  };
}

/** Parse the harness's argv (without node and script) or throw a `UsageError`. */
export function parseHarnessArgs(argv: readonly string[]): HarnessConfig {
  let values: Values;
  try {
    values = parseArgs({ args: [...argv], options: HARNESS_FLAGS, strict: true, allowPositionals: false }).values as Values;
  } catch (e) {
    throw new UsageError((e instanceof Error ? e.message.split("\n")[0] : String(e)) ?? "bad flags");
  }
  if (values["help"] === true) return { runs: [], out: null, compare: null, help: true };
  const out = str(values, "out") ?? null;
  if (out !== null && out.trim() === "") throw new UsageError("--out wants a directory");
  const cmp = str(values, "compare");
  if (cmp === undefined) return { runs: [runSpec(values, "run")], out, compare: null, help: false };
  const m = /^([a-z-]+)=(.+)$/.exec(cmp);
  if (!m?.[1] || !m[2]) throw new UsageError(`--compare wants KEY=V1,V2,..., got "${cmp}"`);
  const key = m[1];
  const isCoordinatorKey = key in COORDINATOR_FLAGS && !OWNED_FLAGS.has(key);
  if (!COMPARE_HARNESS_KEYS.has(key) && !isCoordinatorKey) {
    throw new UsageError(`--compare: cannot vary "${key}" (try workers, browsers, slowdown, step-time, consistency, staleness, batch, lr, ...)`);
  }
  const vals = m[2].split(",").map((v) => v.trim());
  if (vals.length < 1 || vals.some((v) => v === "")) throw new UsageError(`--compare ${key}: empty value in "${m[2]}"`);
  if (vals.length > 16) throw new UsageError(`--compare: at most 16 values, got ${vals.length}`);
  if (key === "workers" && str(values, "min-workers") !== undefined) {
    throw new UsageError("--compare workers=…: leave --min-workers out (it follows the number of workers)");
  }
  const runs = vals.map((v) => {
    try {
      return runSpec(withCompareValue(values, key, v), `${key}=${v}`);
    } catch (e) {
      if (e instanceof UsageError) throw new UsageError(`--compare ${key}=${v}: ${e.message}`);
      throw e;
    }
  });
  return { runs, out, compare: { key, values: vals }, help: false };
}
