/**
 * Coordinator flags (INTERFACE.md), parsed strictly: an unknown or invalid
 * flag is a `UsageError` whose message is one line; the entry point prints it
 * and exits with status 2. The harness reuses `parseCoordinatorFlags`.
 */
import { parseArgs } from "node:util";
import { randomBytes } from "node:crypto";
import { parseCompression, type Compression } from "../client/compress.ts";
import { MEAN, parseAggregation, type Aggregation } from "../client/aggregate.ts";
import { JOBS, PROBLEM_JOBS } from "../client/jobs/registry.ts";
import { LR_SCALINGS, OPTIMIZER_NAMES, type LrScaling, type OptimizerName } from "../client/jobs/optimizers.ts";
import { CONSISTENCY_MODES, type Consistency } from "./protocol.ts";
import { MF_FLAGS, MfFlagError, mfConfigFromValues, type MfRunConfig } from "./mf/config.ts";
import { IceConfigError, parseIceFlags, type IceConfig } from "./ice.ts";
import { DEFAULT_MESH_MAX } from "../client/peer/overlay.ts";

export class UsageError extends Error {}

export interface CoordinatorConfig {
  readonly port: number;
  readonly host: string;
  readonly job: string;
  readonly consistency: Consistency;
  readonly epochs: number;
  readonly maxClock: number;
  readonly targetAccuracy: number;
  readonly stateDir: string;
  readonly token: string;
  readonly tokenGenerated: boolean;
  readonly seed: number;
  readonly minWorkers: number;
  readonly batch: number | null;
  readonly learningRate: number | null;
  /** The job's optimizer instead of its default (`--optimizer`). */
  readonly optimizer: OptimizerName | null;
  /** Size each worker's minibatch to its measured speed (`--work-sizing on|off`). */
  readonly workSizing: boolean;
  /** Each worker's learning rate against the number of active workers (`--lr-scaling sum|sqrt|mean`, default sum). */
  readonly lrScaling: LrScaling;
  readonly evalEvery: number;
  readonly build: boolean;
  /** Least ms between two test evaluations (0: evaluate every upload; experiments). */
  readonly evalIntervalMs: number;
  /** Drop stragglers from the view (default) or only mark them. */
  readonly dropStragglers: boolean;
  /** Membership changes within this many ms make one view epoch (`--view-batch`, default 50). */
  readonly viewBatchMs: number;
  /** Every view in full to every worker, each change at once (`--full-views`: the old behaviour, for comparisons). */
  readonly fullViews: boolean;
  /** Folder of the built pages (default dist/ beside the sources). */
  readonly dist: string | null;
  /** How workers encode their updates (`--compression`, default none). */
  readonly compression: Compression;
  /** How each clock's updates are combined, with norm clipping (`--aggregation`, `--clip`; client/aggregate.ts). */
  readonly aggregation: Aggregation;
  /** Least ms between two spot-check tasks, 0: none (`--spot-every`, default 5000; coordinator/spotcheck.ts). */
  readonly spotEveryMs: number;
  /** Jobs mf (model parallel) and mf-dp (data parallel): the problem and stopping rule; null for the other jobs. */
  readonly mf: MfRunConfig | null;
  /** STUN/TURN servers and ICE policy handed to the pages (`--ice-servers`, `--ice-transport`). */
  readonly ice: IceConfig;
  /** Full mesh up to this many workers, overlay above (`--mesh-max`). */
  readonly meshMax: number;
  /** Set an unfinished job's state aside and start anew (`--fresh`). */
  readonly fresh: boolean;
  /** Least ms between two model checkpoints (`--checkpoint-interval`). */
  readonly checkpointIntervalMs: number;
  /** Several jobs at once: their file (`--jobs`; coordinator/jobs.ts reads it), or null. */
  readonly jobsFile: string | null;
  /** Several jobs: the allocation is recomputed at least this often, ms (`--rebalance-interval`). */
  readonly rebalanceMs: number;
  /** Serve every response with COOP/COEP so pages can run WASM threads (`--cross-origin-isolation on|off`, default off; coordinator/isolation.ts). */
  readonly crossOriginIsolation: boolean;
}

export const COORDINATOR_FLAGS = {
  port: { type: "string" },
  host: { type: "string" },
  job: { type: "string" },
  consistency: { type: "string" },
  staleness: { type: "string" },
  epochs: { type: "string" },
  "max-clock": { type: "string" },
  "target-accuracy": { type: "string" },
  "state-dir": { type: "string" },
  token: { type: "string" },
  seed: { type: "string" },
  jobs: { type: "string" },
  "min-workers": { type: "string" },
  batch: { type: "string" },
  lr: { type: "string" },
  optimizer: { type: "string" },
  "work-sizing": { type: "string" },
  "lr-scaling": { type: "string" },
  "eval-every": { type: "string" },
  "no-build": { type: "boolean" },
  dist: { type: "string" },
  "drop-stragglers": { type: "string" },
  "eval-interval": { type: "string" },
  "view-batch": { type: "string" },
  "full-views": { type: "boolean" },
  compression: { type: "string" },
  aggregation: { type: "string" },
  clip: { type: "string" },
  "spot-every": { type: "string" },
  ...MF_FLAGS,
  "ice-servers": { type: "string" },
  "ice-transport": { type: "string" },
  "mesh-max": { type: "string" },
  fresh: { type: "boolean" },
  "checkpoint-interval": { type: "string" },
  "rebalance-interval": { type: "string" },
  "cross-origin-isolation": { type: "string" },
} as const;

function int(name: string, v: string | undefined, def: number, min: number, max: number): number {
  if (v === undefined) return def;
  if (!/^-?[0-9]+$/.test(v)) throw new UsageError(`--${name} wants a whole number, got "${v}"`);
  const n = Number(v);
  if (n < min || n > max) throw new UsageError(`--${name} must be between ${min} and ${max}, got ${n}`);
  return n;
}

function num(name: string, v: string | undefined, min: number, max: number): number | null {
  if (v === undefined) return null;
  const n = Number(v);
  if (v.trim() === "" || !Number.isFinite(n)) throw new UsageError(`--${name} wants a number, got "${v}"`);
  if (n < min || n > max) throw new UsageError(`--${name} must be between ${min} and ${max}, got ${n}`);
  return n;
}

function onOff(name: string, v: string | undefined, def: boolean): boolean {
  if (v === undefined) return def;
  if (v === "on") return true;
  if (v === "off") return false;
  throw new UsageError(`--${name} must be on or off, got "${v}"`);
}

/**
 * `--aggregation mean|trimmed:β|median` and `--clip auto|off|C`: the clip
 * defaults to auto (the median norm of a clock's updates) with a robust rule
 * and is refused with mean; a robust rule needs a staleness gate (not asp) and
 * a data-parallel job.
 */
function parseAggregationFlags(rule: string | undefined, clip: string | undefined, job: string, mode: string): Aggregation {
  if (rule === undefined || rule === "mean") {
    if (clip !== undefined) throw new UsageError("--clip needs --aggregation trimmed:β or median");
    if (rule === undefined) return MEAN;
  }
  const r = parseAggregation(rule ?? "mean", clip ?? (rule === "mean" ? "off" : "auto"));
  if (!r.ok) throw new UsageError(`--aggregation/--clip: ${r.message}`);
  if (r.value.rule.kind !== "mean") {
    if (job === "mf") throw new UsageError("--aggregation: job mf exchanges blocks, not updates; only mean applies");
    if (mode === "asp") throw new UsageError("--aggregation: a robust rule waits for every update of a clock, which needs a staleness gate (not --consistency asp)");
  }
  return r.value;
}

/** Parse coordinator flags from already-split values (see `parseCoordinatorArgs`). */
export function configFromValues(values: Record<string, string | boolean | undefined>): CoordinatorConfig {
  const str = (k: string): string | undefined => {
    const v = values[k];
    return typeof v === "string" ? v : undefined;
  };
  const jobsFile = str("jobs") ?? null;
  if (jobsFile !== null && (str("job") === "mf" || jobsFile.trim() === "")) throw new UsageError(jobsFile.trim() === "" ? "--jobs wants a file" : "--jobs: job mf (model parallel) cannot share the grid");
  const job = str("job") ?? "mnist-softmax";
  const def = JOBS[job];
  // mf (model parallel) and mf-dp (the same problem, data parallel) take the --mf-* flags.
  const isMf = job === "mf" || PROBLEM_JOBS.includes(job);
  if (!def && !isMf) throw new UsageError(`--job: unknown job "${job}" (known: ${[...Object.keys(JOBS), "mf", ...PROBLEM_JOBS].join(", ")})`);
  const mfFlag = Object.keys(MF_FLAGS).find((k) => str(k) !== undefined);
  if (!isMf && mfFlag !== undefined) throw new UsageError(`--${mfFlag} needs --job mf or ${PROBLEM_JOBS.join(" or ")}`);
  const mode = str("consistency") ?? "ssp";
  if (!(CONSISTENCY_MODES as readonly string[]).includes(mode)) {
    throw new UsageError(`--consistency must be one of ${CONSISTENCY_MODES.join("|")}, got "${mode}"`);
  }
  const optimizer = str("optimizer") ?? null;
  if (optimizer !== null && !(OPTIMIZER_NAMES as readonly string[]).includes(optimizer)) {
    throw new UsageError(`--optimizer must be one of ${OPTIMIZER_NAMES.join("|")}, got "${optimizer}"`);
  }
  const staleness = int("staleness", str("staleness"), 3, 0, 1000);
  const host = str("host") ?? "127.0.0.1";
  if (host.trim() === "") throw new UsageError("--host must not be empty");
  const tokenFlag = str("token");
  if (tokenFlag !== undefined && !/^[A-Za-z0-9._~-]{8,200}$/.test(tokenFlag)) {
    throw new UsageError("--token must be 8 to 200 characters of A-Z a-z 0-9 . _ ~ -");
  }
  const compression = parseCompression(str("compression") ?? "none");
  if (!compression.ok) throw new UsageError(`--compression: ${compression.message}`);
  const aggregation = parseAggregationFlags(str("aggregation"), str("clip"), job, mode);
  const seed = int("seed", str("seed"), 1, 0, 2 ** 31 - 1);
  const learningRate = num("lr", str("lr"), 1e-6, 100);
  const lrScalingFlag = str("lr-scaling") ?? "sum";
  const lrScaling = LR_SCALINGS.find((r) => r === lrScalingFlag);
  if (lrScaling === undefined) throw new UsageError(`--lr-scaling must be one of ${LR_SCALINGS.join(", ")}, got "${lrScalingFlag}"`);
  let mf: MfRunConfig | null = null;
  try {
    mf = isMf ? mfConfigFromValues(str, seed, learningRate) : null;
  } catch (e) {
    if (e instanceof MfFlagError) throw new UsageError(e.message);
    throw e;
  }
  let ice: IceConfig;
  try {
    ice = parseIceFlags(str("ice-servers"), str("ice-transport"));
  } catch (e) {
    if (e instanceof IceConfigError) throw new UsageError(e.message);
    throw e;
  }
  return {
    port: int("port", str("port"), 8080, 0, 65535),
    host,
    job,
    consistency: { mode: mode as Consistency["mode"], staleness },
    epochs: int("epochs", str("epochs"), 0, 0, 10_000),
    maxClock: int("max-clock", str("max-clock"), 0, 0, 100_000_000),
    // mf-dp's metric is σ / test RMSE: --mf-target X stops it at 1 / X.
    targetAccuracy: num("target-accuracy", str("target-accuracy"), 0, 1) ?? (mf && job !== "mf" ? 1 / mf.target : def?.targetAccuracy ?? 0),
    stateDir: str("state-dir") ?? ".grid-state",
    token: tokenFlag ?? randomBytes(12).toString("hex"),
    tokenGenerated: tokenFlag === undefined,
    seed,
    minWorkers: int("min-workers", str("min-workers"), 1, 1, 10_000),
    batch: str("batch") === undefined ? null : int("batch", str("batch"), 0, 1, 4096),
    learningRate,
    optimizer: optimizer as OptimizerName | null,
    workSizing: onOff("work-sizing", str("work-sizing"), true),
    lrScaling,
    evalEvery: int("eval-every", str("eval-every"), 10, 1, 1_000_000),
    build: values["no-build"] !== true && str("dist") === undefined,
    dist: str("dist") ?? null,
    evalIntervalMs: int("eval-interval", str("eval-interval"), 1000, 0, 600_000),
    dropStragglers: onOff("drop-stragglers", str("drop-stragglers"), true),
    viewBatchMs: int("view-batch", str("view-batch"), 50, 0, 10_000),
    fullViews: values["full-views"] === true,
    compression: compression.value,
    aggregation,
    spotEveryMs: int("spot-every", str("spot-every"), 5000, 0, 3_600_000),
    mf,
    ice,
    meshMax: int("mesh-max", str("mesh-max"), DEFAULT_MESH_MAX, 0, 100_000),
    fresh: values["fresh"] === true,
    checkpointIntervalMs: int("checkpoint-interval", str("checkpoint-interval"), 2000, 0, 3_600_000),
    jobsFile,
    rebalanceMs: int("rebalance-interval", str("rebalance-interval"), 10_000, 500, 3_600_000),
    crossOriginIsolation: onOff("cross-origin-isolation", str("cross-origin-isolation"), false),
  };
}

/** Parse `argv` (without node and script) into a config, or throw `UsageError`. */
export function parseCoordinatorArgs(argv: readonly string[]): CoordinatorConfig {
  let parsed;
  try {
    parsed = parseArgs({ args: [...argv], options: COORDINATOR_FLAGS, strict: true, allowPositionals: false });
  } catch (e) {
    const msg = e instanceof Error ? e.message.split("\n")[0] : String(e);
    throw new UsageError(msg ?? "bad flags");
  }
  return configFromValues(parsed.values);
}
