/**
 * `npm start -- FLAGS`: builds the client when dist/ is missing or older than
 * its sources, loads the data, starts the coordinator and prints the volunteer
 * URL, the console URL and the console token. Bad flags: one line, exit 2.
 */
import { spawnSync } from "node:child_process";
import { existsSync, readdirSync, realpathSync, statSync } from "node:fs";
import { dirname, join, resolve } from "node:path";
import { fileURLToPath } from "node:url";
import { jobFor } from "../client/jobs/registry.ts";
import { parseCoordinatorArgs, UsageError, type CoordinatorConfig } from "./cli.ts";
import { loadMnist } from "./data.ts";
import { JobRun } from "./job.ts";
import { DEFAULT_SPOT } from "./spotcheck.ts";
import { inlineEvaluator, threadEvaluator } from "./evaluator.ts";
import { mfDpDataset } from "./mf/dp-data.ts";
import { startServer, type GridRun, type RunningServer } from "./server.ts";
import { MfRun, mfStateKey } from "./mf/run.ts";
import { modelFloats } from "../client/mf/problem.ts";
import { JobStore, StateMismatchError, openJobState } from "./state.ts";
import type { Dataset } from "./data.ts";
import { baseArgs, JobGrid, jobSpec, readJobsFile, type JobEntry, type JobSpec } from "./jobs.ts";
import { SubmittedJobs } from "./submitted.ts";

const ROOT = resolve(dirname(fileURLToPath(import.meta.url)), "..");
const SOURCES = ["client", "shaders", "coordinator/console", "index.html", "selftest.html", "vite.config.ts", "package.json"];

function newestMtime(path: string): number {
  if (!existsSync(path)) return 0;
  const st = statSync(path);
  if (!st.isDirectory()) return st.mtimeMs;
  let max = st.mtimeMs;
  for (const e of readdirSync(path)) max = Math.max(max, newestMtime(join(path, e)));
  return max;
}

/** Build dist/ with vite when it is missing or older than any client source. */
export function ensureClientBuilt(log: (l: string) => void): void {
  const stamp = join(ROOT, "dist", "index.html");
  const built = existsSync(stamp) ? statSync(stamp).mtimeMs : 0;
  const src = Math.max(...SOURCES.map((s) => newestMtime(join(ROOT, s))));
  if (built >= src) return;
  log(built === 0 ? "building the client (dist/ is missing)..." : "rebuilding the client (sources changed)...");
  const vite = join(ROOT, "node_modules", ".bin", "vite");
  const r = spawnSync(vite, ["build", "--logLevel", "error"], { cwd: ROOT, stdio: "inherit" });
  if (r.status !== 0) throw new Error("vite build failed");
}

/**
 * The run of a data-parallel job from its configuration, its state in
 * `stateDir/ID/`; `load` gives MNIST (mf-dp brings its own ratings).
 */
function buildJobRun(cfg: CoordinatorConfig, id: string, load: () => Dataset, log: (l: string) => void, spotChecks = false, onEvent?: (kind: string) => void): JobRun {
  // mf-dp: job mf's problem trained data-parallel, built from the --mf-* flags.
  const mfProblem = cfg.mf?.problem;
  const job = jobFor(cfg.job, mfProblem);
  if (!job) throw new UsageError(`unknown job ${cfg.job}`);
  const batch = cfg.batch ?? job.batch;
  const store = new JobStore(cfg.stateDir, id, log);
  let resume;
  try {
    resume = openJobState(store, job, cfg.fresh, log);
  } catch (e) {
    if (e instanceof StateMismatchError) throw new UsageError(e.message);
    throw e;
  }
  const data = mfProblem ? mfDpDataset(mfProblem) : load();
  return new JobRun({
    job,
    data,
    consistency: cfg.consistency,
    seed: cfg.seed,
    maxClock: cfg.maxClock,
    maxEpochs: cfg.epochs,
    targetAccuracy: cfg.targetAccuracy,
    minWorkers: cfg.minWorkers,
    evalEvery: cfg.evalEvery,
    batch,
    // mf-dp: --lr is job mf's per-rating step; a clock's mean gradient takes `batch` of them.
    learningRate: mfProblem ? mfProblem.lr * batch : (cfg.learningRate ?? job.learningRate),
    ...(cfg.optimizer !== null ? { optimizer: cfg.optimizer } : {}),
    ...(cfg.lrScaling !== "sum" ? { lrScaling: cfg.lrScaling } : {}),
    workSizing: cfg.workSizing,
    store,
    resume,
    checkpointIntervalMs: cfg.checkpointIntervalMs,
    log,
    dropStragglers: cfg.dropStragglers,
    minEvalIntervalMs: cfg.evalIntervalMs,
    viewBatchMs: cfg.viewBatchMs,
    // The evaluation thread looks its job up by name; mf-dp is built per problem (and its RMSE is cheap).
    evaluator: mfProblem ? inlineEvaluator(job, data.test) : threadEvaluator(job, data.test, log),
    ...(mfProblem ? { mfProblem } : {}),
    fullViews: cfg.fullViews,
    compression: cfg.compression,
    aggregation: cfg.aggregation,
    // Spot-checks serve their models at GET /api/spot/TASK, a route of the only job (not in a --jobs grid yet).
    ...(cfg.spotEveryMs > 0 && spotChecks ? { spotChecks: { ...DEFAULT_SPOT, everyMs: cfg.spotEveryMs } } : {}),
    dataPlane: { ...cfg.ice, meshMax: cfg.meshMax },
    ...(onEvent ? { onEvent } : {}),
  });
}

/**
 * Start the coordinator: one job from `cfg`, or, with `jobs` (the entries of
 * `--jobs FILE` and the command line they start from), several on one grid;
 * the first entry is then the default job.
 */
export async function startCoordinator(
  cfg: CoordinatorConfig,
  log: (l: string) => void,
  dataset?: Dataset,
  jobs?: { readonly specs: readonly JobSpec[]; readonly base: readonly string[] },
): Promise<{ server: RunningServer; run: GridRun; grid?: JobGrid }> {
  const distDir = cfg.dist ?? join(ROOT, "dist");
  if (cfg.mf && cfg.job === "mf") {
    const store = new JobStore(cfg.stateDir, "default", log);
    const p = cfg.mf.problem;
    let resume;
    try {
      // Keyed by the problem: a restart with other --mf-* flags or --seed is refused, not resumed.
      resume = openJobState(store, { name: mfStateKey(p), parameters: modelFloats(p) }, cfg.fresh, log);
    } catch (e) {
      if (e instanceof StateMismatchError) throw new UsageError(e.message);
      throw e;
    }
    const run = new MfRun({ config: cfg.mf, minWorkers: cfg.minWorkers, store, resume, log });
    const server = await startServer({ host: cfg.host, port: cfg.port, token: cfg.token, distDir, crossOriginIsolation: cfg.crossOriginIsolation, run, log });
    return { server, run };
  }
  let data = dataset ?? null;
  const load = (): Dataset => (data ??= loadMnist());
  if (!jobs) {
    const run = buildJobRun(cfg, "default", load, log, true);
    const server = await startServer({ host: cfg.host, port: cfg.port, token: cfg.token, distDir, crossOriginIsolation: cfg.crossOriginIsolation, run, log });
    return { server, run };
  }
  const base = jobs.base;
  // A job's event (finishing, done) reaches the grid after the run's own code has returned: its volunteers move at once.
  const onEvent = (): void => void setImmediate(() => grid.jobEvent());
  const make = (spec: JobSpec): JobRun => buildJobRun(spec.cfg, spec.entry.id, load, (l) => log(`[${spec.entry.id}] ${l}`), false, onEvent);
  // Jobs submitted to an earlier run on this state directory come back after the jobs file's (--fresh sets them aside).
  const submitted = new SubmittedJobs(cfg.stateDir, log);
  let restore: JobEntry[] = [];
  if (cfg.fresh) {
    const to = submitted.archive();
    if (to !== null) log(`state: the jobs submitted to the earlier run were moved to ${to}`);
  } else restore = submitted.load();
  const grid = new JobGrid({
    multi: true,
    rebalanceMs: cfg.rebalanceMs,
    log,
    submit: (raw) => {
      const spec = jobSpec(raw, base);
      return { entry: spec.entry, run: make(spec) };
    },
    remember: submitted,
  });
  for (const spec of jobs.specs) grid.add(spec.entry, make(spec));
  const restored = new Set<string>();
  for (const entry of restore) {
    if (grid.job(entry.id)) {
      log(`state: submitted job ${entry.id} is not restored: the jobs file has a job with that id`);
      continue;
    }
    try {
      const spec = jobSpec(entry, base);
      grid.add(spec.entry, make(spec));
      restored.add(entry.id);
      log(`state: submitted job ${entry.id} (${entry.job}, weight ${entry.weight}) restored`);
    } catch (e) {
      if (!(e instanceof UsageError)) throw e;
      log(`state: submitted job ${entry.id} is not restored: ${e.message}`);
    }
  }
  submitted.keep(restored);
  const server = await startServer({ host: cfg.host, port: cfg.port, token: cfg.token, distDir, crossOriginIsolation: cfg.crossOriginIsolation, grid, log });
  return { server, run: grid.defaultJob.run, grid };
}

async function main(): Promise<void> {
  let cfg: CoordinatorConfig;
  let jobs: { specs: JobSpec[]; base: string[] } | undefined;
  try {
    const argv = process.argv.slice(2);
    cfg = parseCoordinatorArgs(argv);
    if (cfg.jobsFile !== null) {
      const base = baseArgs(argv);
      jobs = { specs: readJobsFile(cfg.jobsFile, base), base };
    }
  } catch (e) {
    if (e instanceof UsageError) {
      process.stderr.write(`grid: ${e.message}\n`);
      process.exit(2);
    }
    throw e;
  }
  const log = (l: string): void => {
    process.stdout.write(`[${new Date().toISOString().slice(11, 19)}] ${l}\n`);
  };
  if (cfg.build) ensureClientBuilt(log);
  let started;
  try {
    started = await startCoordinator(cfg, log, undefined, jobs);
  } catch (e) {
    if (e instanceof UsageError) {
      process.stderr.write(`grid: ${e.message}\n`);
      process.exit(2);
    }
    throw e;
  }
  const { server, run, grid } = started;
  const mode = cfg.mf && cfg.job === "mf"
    ? `model parallel, ${cfg.mf.problem.blocks} blocks`
    : cfg.consistency.mode === "ssp" ? `ssp, s=${cfg.consistency.staleness}` : cfg.consistency.mode;
  const target = cfg.mf && cfg.job === "mf" ? `target test RMSE ${cfg.mf.target} × noise ${cfg.mf.problem.noise}` : `target accuracy ${cfg.targetAccuracy}`;
  process.stdout.write(
    [
      ``,
      grid
        ? `the grid: ${grid.all().length} jobs (${grid.all().map((j) => `${j.id}: ${j.run.job.name}, weight ${j.weight}`).join("; ")}); default job ${grid.defaultJob.id}`
        : `the grid: job ${cfg.job} (${run.job.parameters} parameters), ${mode}, ${target}`,
      `  volunteer URL: ${server.url}/`,
      `  console URL:   ${server.url}/console?token=${cfg.token}`,
      `  console token: ${cfg.token}${cfg.tokenGenerated ? " (generated; pass --token to choose one)" : ""}`,
      `  status:        ${server.url}/api/status`,
      ...(cfg.crossOriginIsolation ? [`  pages:         cross-origin isolated (COOP/COEP headers): the CPU path may use WASM threads`] : []),
      ``,
    ].join("\n") + "\n",
  );
  const stop = (): void => {
    void server.close().finally(() => process.exit(0));
  };
  process.on("SIGINT", stop);
  process.on("SIGTERM", stop);
}

/** Run as the entry point (not when a test imports `startCoordinator`). */
function isEntry(): boolean {
  const arg = process.argv[1];
  if (arg === undefined) return false;
  try {
    return realpathSync(resolve(arg)) === realpathSync(fileURLToPath(import.meta.url));
  } catch {
    return false;
  }
}

if (isEntry()) {
  main().catch((e: unknown) => {
    process.stderr.write(`grid: ${e instanceof Error ? e.message : String(e)}\n`);
    process.exit(1);
  });
}
