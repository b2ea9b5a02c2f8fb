/**
 * Several jobs on one grid: the registry of jobs (the default job from the
 * start-up flags, the entries of `--jobs FILE`, those submitted with
 * `POST /api/jobs`) and the volunteers shared between them.
 *
 * Every control connection is a volunteer (`v1`, `v2`, …). When it joins, the
 * grid gives it to a job by weighted max-min fairness on measured throughput
 * (coordinator/alloc.ts) and hands its `join` to that job's run, which makes
 * it a worker of that job as before (ids, views, shards are per job). The
 * welcome says which job and why (`welcome.grid`). The allocation is computed
 * again when a job starts, ends, is paused, resumed or cancelled, when a
 * volunteer comes or goes, and every `rebalanceMs`; a volunteer whose job
 * changes gets a `move`: the page stops stepping, reports its last clock
 * (`final`), sends `leave` (its old job counts it as `left` with its cut at
 * that clock, so no update of it is lost, and gives its shards to the others),
 * keeps its old peer links open a few seconds for re-sends, and joins again:
 * the grid gives that membership to the new job, where it is an ordinary
 * joiner (snapshot from a peer, retained updates).
 *
 * Throughput: each clock report gives the worker's step time and batch; the
 * grid keeps a smoothed examples/s per volunteer and job. A volunteer not
 * measured on a job yet is estimated by `rateTable` (its speed relative to the
 * job medians on the jobs it ran, else the median).
 *
 * With a single job (no `--jobs`) the grid only routes: no allocation, no
 * `grid` field in the welcome, data under /data/JOB-NAME/ as before.
 */
import { parseArgs } from "node:util";
import { readFileSync } from "node:fs";
import { z } from "zod";
import { JOBS } from "../client/jobs/registry.ts";
import { allocate, fairnessError, rateTable, type JobDemand, type Volunteer } from "./alloc.ts";
import { COORDINATOR_FLAGS, parseCoordinatorArgs, UsageError, type CoordinatorConfig } from "./cli.ts";
import { gridJobId, type ClientMessage, type JoinMessage, type PhaseTimes, type RejectCode, type ServerMessage } from "./protocol.ts";
import type { GridRun } from "./server.ts";
import { sinkLike, type Sink } from "./outbox.ts";

/** One entry of `--jobs FILE` or the body of `POST /api/jobs`. */
export const jobEntrySchema = z
  .object({
    id: gridJobId,
    job: z.string().max(64),
    weight: z.number().finite().positive().max(1e6).default(1),
    minWorkers: z.number().int().min(0).max(100_000).default(0),
    maxWorkers: z.number().int().min(1).max(100_000).default(100_000),
    priority: z.number().int().min(-1000).max(1000).default(0),
    flags: z.array(z.string().max(2000)).max(100).default([]),
  })
  .strict()
  .refine((e) => e.minWorkers <= e.maxWorkers, { message: "minWorkers must not exceed maxWorkers" });
export type JobEntry = z.infer<typeof jobEntrySchema>;

/** Flags that belong to the whole grid, not to one job. */
const GRID_WIDE = ["port", "host", "token", "state-dir", "jobs", "dist", "no-build", "ice-servers", "ice-transport", "mesh-max", "job", "rebalance-interval"];

/** A job entry with its flags parsed: the configuration its run is built from. */
export interface JobSpec {
  readonly entry: JobEntry;
  readonly cfg: CoordinatorConfig;
}

/** The command line without `--jobs FILE`: the flags every job starts from. */
export function baseArgs(argv: readonly string[]): string[] {
  const { tokens } = parseArgs({ args: [...argv], options: COORDINATOR_FLAGS, strict: false, allowPositionals: true, tokens: true });
  const skip = new Set<number>();
  for (const t of tokens ?? []) {
    if (t.kind === "option" && t.name === "jobs") {
      skip.add(t.index);
      if (t.inlineValue === false) skip.add(t.index + 1);
    }
  }
  return argv.filter((_, i) => !skip.has(i));
}

/** Validate one entry and parse its flags on top of the base flags. Throws UsageError (one line). */
export function jobSpec(raw: unknown, base: readonly string[]): JobSpec {
  const parsed = jobEntrySchema.safeParse(raw);
  const label = typeof raw === "object" && raw !== null && "id" in raw && typeof raw.id === "string" ? `job "${raw.id.slice(0, 40)}"` : "a job";
  if (!parsed.success) {
    const issue = parsed.error.issues[0];
    throw new UsageError(`${label}: ${issue ? `${issue.path.join(".") || "entry"}: ${issue.message}` : "invalid entry"}`);
  }
  const entry = parsed.data;
  if (entry.job === "mf") throw new UsageError(`${label}: job mf (model parallel) cannot share the grid; run it alone with --job mf`);
  if (!JOBS[entry.job]) throw new UsageError(`${label}: unknown job "${entry.job}" (known: ${Object.keys(JOBS).join(", ")})`);
  let own;
  try {
    own = parseArgs({ args: entry.flags, options: COORDINATOR_FLAGS, strict: true, allowPositionals: false });
  } catch (e) {
    throw new UsageError(`${label}: ${e instanceof Error ? (e.message.split("\n")[0] ?? "bad flags") : String(e)}`);
  }
  const wide = Object.keys(own.values).find((k) => GRID_WIDE.includes(k));
  if (wide !== undefined) throw new UsageError(`${label}: --${wide} is set for the whole grid, not per job`);
  try {
    return { entry, cfg: parseCoordinatorArgs([...base, "--job", entry.job, ...entry.flags]) };
  } catch (e) {
    if (e instanceof UsageError) throw new UsageError(`${label}: ${e.message}`);
    throw e;
  }
}

/** Read and check `--jobs FILE`: a JSON array of entries with distinct ids. Throws UsageError (one line). */
export function readJobsFile(path: string, base: readonly string[]): JobSpec[] {
  let text: string;
  try {
    text = readFileSync(path, "utf8");
  } catch (e) {
    throw new UsageError(`--jobs: cannot read ${path} (${e instanceof Error ? e.message.split("\n")[0] : String(e)})`);
  }
  let raw: unknown;
  try {
    raw = JSON.parse(text);
  } catch (e) {
    throw new UsageError(`--jobs: ${path} is not JSON (${e instanceof Error ? e.message.split("\n")[0] : String(e)})`);
  }
  if (!Array.isArray(raw) || raw.length === 0) throw new UsageError(`--jobs: ${path} must hold a non-empty JSON array of jobs`);
  if (raw.length > 64) throw new UsageError(`--jobs: at most 64 jobs, got ${raw.length}`);
  const specs: JobSpec[] = [];
  for (const item of raw) {
    let spec: JobSpec;
    try {
      spec = jobSpec(item, base);
    } catch (e) {
      if (e instanceof UsageError) throw new UsageError(`--jobs: ${e.message}`);
      throw e;
    }
    if (specs.some((s) => s.entry.id === spec.entry.id)) throw new UsageError(`--jobs: job id "${spec.entry.id}" appears twice`);
    specs.push(spec);
  }
  return specs;
}

/** A job on the grid. */
export interface GridJob {
  readonly id: string;
  readonly weight: number;
  readonly minWorkers: number;
  readonly maxWorkers: number;
  readonly priority: number;
  readonly run: GridRun;
  /** Key of its data routes and of the pages' shard cache: the id (several jobs) or the job's name (one job). */
  readonly dataKey: string;
  readonly added: number;
  cancelled: boolean;
}

interface Vol {
  readonly id: string;
  readonly send: Sink<ServerMessage>;
  name: string;
  /** Connected and asking for work (joined, or waiting for a job); false after a drop until it joins again. */
  available: boolean;
  job: string | null;
  worker: string | null;
  /** Identity of the current membership: messages of an older one are not delivered. */
  member: object | null;
  /** Smoothed examples/s per job id, once measured long enough (see `measure`). */
  readonly rates: Map<string, number>;
  /** Per job id: the running measurement (first report, smoothed rate, last report and its clock). */
  readonly meters: Map<string, { first: number; rate: number; at: number; clock: number }>;
  /** A `move` is out: the page leaves `from` and joins again. */
  moving: { from: string; to: string; since: number; reason: string } | null;
  /** Where its next join goes, and why (after a move, or while it waits). */
  target: { job: string; reason: string } | null;
  /** Since when it computed for its current job (utilization), or null. */
  since: number;
  /** The page's own count of its trainer's time by phase, over all its jobs (its last report), ms. */
  phaseMs: PhaseTimes | null;
}

export interface MoveRecord {
  readonly t: number;
  readonly volunteer: string;
  readonly from: string | null;
  readonly to: string;
  readonly reason: string;
}

export interface JobGridOptions {
  /** Several jobs (allocation, moves, `welcome.grid`), or one job routed as before. */
  readonly multi: boolean;
  /** Builds the run of a job submitted later (`POST /api/jobs`); absent: submissions are refused. */
  readonly submit?: (raw: unknown) => { entry: JobEntry; run: GridRun };
  /** Keeps submitted jobs across restarts (coordinator/submitted.ts): told of each submission and cancellation. */
  readonly remember?: { add(entry: JobEntry): void; forget(id: string): void };
  /**
   * Hysteresis: a move must raise the lower normalized share of the two jobs
   * by this fraction (default 0.2: rates measured on shared machines vary by
   * that much between reports, and a move costs a leave and a snapshot).
   */
  readonly margin?: number;
  /** Periodic rebalancing, ms (default 10 s). */
  readonly rebalanceMs?: number;
  /** A move not completed within this long is completed by the coordinator (default 10 s). */
  readonly moveTimeoutMs?: number;
  readonly now?: () => number;
  readonly log?: (line: string) => void;
}

const MAX_MOVES_KEPT = 300;
/** Measured throughput: time constant of its smoothing, and how long a volunteer reports on a job before its rate counts. */
const RATE_TAU_MS = 5000;
const RATE_WARMUP_MS = 3000;
/** Rates within this factor of the job's median count as the median (measurement noise). */
const NOISE_BAND = 2;
/**
 * A volunteer stays at least this long in a job it has just joined while that
 * job is open: a move costs a leave, links and a snapshot (1–3 s measured), and
 * pages moved again within a second of a move stalled (the harness's 13:30 and
 * 13:36 runs in the README).
 */
const SETTLE_MS = 3000;

/**
 * A finishing job keeps this many of its volunteers to drain and report its end
 * digests (two, so that its end state is still checked by agreement); the
 * others go to other jobs as soon as it starts to finish, each a clean leave
 * at its final clock (its last updates counted in the drain target and served
 * from its page for a few seconds, as after any move), instead of waiting
 * idle through the drain.
 */
export const KEEP_AT_END = 2;

/**
 * A job expected to reach its max clock within this long (at the pace of its
 * last PACE_WINDOW_MS) takes no more volunteers: a join costs 1–3 s before the
 * joiner steps (links, snapshot, sync; more on a loaded machine), and a joiner
 * not synced when its job ends leaves with nothing done and moves again.
 * It keeps whom it has, and while a job ends this soon (or is finishing),
 * moves out of running jobs wait for the volunteers it frees (for at most
 * this long): a job that starts then takes those, one move each, rather than
 * volunteers of a running job that the ending job's then replace (two moves).
 */
export const CLOSING_SOON_MS = 5000;
const PACE_WINDOW_MS = 2000;
/** Least span of ticks a pace is taken from (one tick apart is too few: a tick may come late). */
const PACE_MIN_MS = 900;

/** open: takes volunteers; finishing: it keeps KEEP_AT_END workers to drain, the others are free; closed: paused or cancelled, its volunteers go elsewhere; over: done or failed. */
type Phase = "open" | "finishing" | "closed" | "over";

export class JobGrid {
  private readonly jobs = new Map<string, GridJob>();
  private readonly order: string[] = [];
  private readonly vols = new Map<string, Vol>();
  private nextVol = 1;
  /** Credential of a membership → its job (a page that rejoins goes back to it when it can). */
  private readonly credentials = new Map<string, string>();
  private readonly moves: MoveRecord[] = [];
  private readonly phases = new Map<string, Phase>();
  /** Per job: its clock at recent ticks (the pace that `endsInMs` extrapolates). */
  private readonly paces = new Map<string, { t: number; clock: number }[]>();
  private lastRebalance: number;
  /** Moves held back because their volunteer had only just joined its job, or a job ends soon: computed again then. */
  private recheckAt: number | null = null;
  /** Since when moves out of running jobs wait for the volunteers of a job that ends soon (at most CLOSING_SOON_MS), or null. */
  private waitingSince: number | null = null;
  private readonly now: () => number;
  readonly multi: boolean;
  readonly rebalanceMs: number;

  constructor(private readonly opts: JobGridOptions) {
    this.now = opts.now ?? Date.now;
    this.multi = opts.multi;
    this.rebalanceMs = opts.rebalanceMs ?? 10_000;
    this.lastRebalance = this.now();
  }

  private log(line: string): void {
    this.opts.log?.(line);
  }

  /** Add a job (the first one added is the default job). */
  add(entry: Pick<JobEntry, "id" | "weight" | "minWorkers" | "maxWorkers" | "priority">, run: GridRun): GridJob {
    if (this.jobs.has(entry.id)) throw new Error(`job id "${entry.id}" is taken`);
    const j: GridJob = {
      id: entry.id,
      weight: entry.weight,
      minWorkers: entry.minWorkers,
      maxWorkers: entry.maxWorkers,
      priority: entry.priority,
      run,
      dataKey: this.multi ? entry.id : run.job.name,
      added: this.now(),
      cancelled: false,
    };
    this.jobs.set(j.id, j);
    this.order.push(j.id);
    this.phases.set(j.id, this.phase(j));
    if (this.jobs.size > 1) this.rebalance(`job ${j.id} started`);
    return j;
  }

  /** `POST /api/jobs`: validate, build, add. */
  submit(raw: unknown): { ok: true; job: GridJob } | { ok: false; status: number; error: string } {
    if (!this.multi || !this.opts.submit) return { ok: false, status: 409, error: "this coordinator runs one job; start it with --jobs FILE to take more" };
    const id = typeof raw === "object" && raw !== null && "id" in raw ? raw.id : undefined;
    if (typeof id === "string" && this.jobs.has(id)) return { ok: false, status: 409, error: `job id "${id}" is taken` };
    try {
      const { entry, run } = this.opts.submit(raw);
      this.log(`job ${entry.id} (${run.job.name}) submitted: weight ${entry.weight}, workers ${entry.minWorkers}..${entry.maxWorkers}, priority ${entry.priority}`);
      const job = this.add(entry, run);
      this.opts.remember?.add(entry);
      return { ok: true, job };
    } catch (e) {
      return { ok: false, status: 400, error: e instanceof Error ? e.message : String(e) };
    }
  }

  get defaultJob(): GridJob {
    return this.jobs.get(this.order[0] as string) as GridJob;
  }

  job(id: string): GridJob | undefined {
    return this.jobs.get(id);
  }

  all(): GridJob[] {
    return this.order.map((id) => this.jobs.get(id) as GridJob);
  }

  /** The job whose data routes use `key`. */
  byDataKey(key: string): GridJob | undefined {
    return this.all().find((j) => j.dataKey === key);
  }

  /** Largest model of any job this grid may run (caps binary uploads). */
  maxParameters(): number {
    return Math.max(...this.all().map((j) => j.run.job.parameters), ...Object.values(JOBS).map((d) => d.parameters));
  }

  ownsPeerId(peerId: string, token: string): boolean {
    return this.all().some((j) => j.run.ownsPeerId(peerId, token));
  }

  private phase(j: GridJob): Phase {
    const s = j.run.state;
    if (s === "done" || s === "failed") return "over";
    if (j.run.isFinishing?.() === true) return "finishing";
    if (j.cancelled || s === "paused") return "closed";
    return "open";
  }

  // ------------------------------------------------------------ volunteers

  /** A control connection opened. */
  connect(send: Sink<ServerMessage>): string {
    const id = `v${this.nextVol++}`;
    this.vols.set(id, { id, send, name: "", available: false, job: null, worker: null, member: null, rates: new Map(), meters: new Map(), moving: null, target: null, since: 0, phaseMs: null });
    return id;
  }

  /** Is this connection a live worker of some job? */
  isLive(vid: string): boolean {
    const v = this.vols.get(vid);
    if (!v || v.job === null || v.worker === null) return false;
    return this.jobs.get(v.job)?.run.isLive(v.worker) === true;
  }

  /** The job and worker id of a connection (tests, logs). */
  membership(vid: string): { job: string; worker: string } | null {
    const v = this.vols.get(vid);
    return v?.job != null && v.worker !== null ? { job: v.job, worker: v.worker } : null;
  }

  /** A `join`: give the volunteer a job and make it a worker there. */
  join(vid: string, msg: JoinMessage): { ok: true; job: string; id: string } | { ok: false; reason: string } {
    const v = this.vols.get(vid);
    if (!v) return { ok: false, reason: "unknown connection" };
    v.name = (msg.name ?? "").slice(0, 60);
    if (!this.multi) {
      const j = this.defaultJob;
      return this.enter(v, j, msg, "");
    }
    v.available = true;
    let target: { job: string; reason: string } | null = null;
    const t = v.target;
    v.target = null;
    // A page that comes back after a move or while it waited for a job completes a plan; a new one changes it.
    const arriving = t === null;
    if (t && this.phase(this.jobs.get(t.job) as GridJob) === "open") target = t;
    const rejoin = msg.rejoin;
    // After a coordinator restart the grid's own map is empty: the job whose state log knows the credential.
    const cj = rejoin !== undefined ? (this.credentials.get(rejoin) ?? this.all().find((x) => x.run.knowsCredential?.(rejoin) === true)?.id) : undefined;
    if (!target && cj !== undefined && this.jobs.get(cj) && this.phase(this.jobs.get(cj) as GridJob) === "open") target = { job: cj, reason: `back to job ${cj}, where it worked before` };
    if (!target) {
      const plan = this.plan();
      const want = plan.assignment.get(v.id) ?? null;
      if (want !== null) target = { job: want, reason: this.joinReason(want, plan.assignment) };
    }
    if (!target) return { ok: false, reason: "no job needs volunteers now; this page waits for one" };
    const j = this.jobs.get(target.job) as GridJob;
    const { rejoin: _presented, ...fresh } = msg;
    const r = this.enter(v, j, cj === target.job && rejoin !== undefined ? msg : fresh, target.reason);
    if (r.ok && arriving) this.rebalance(`volunteer ${v.id} joined`, true);
    return r;
  }

  private enter(v: Vol, j: GridJob, msg: JoinMessage, reason: string): { ok: true; job: string; id: string } | { ok: false; reason: string } {
    const token = {};
    v.member = token;
    const send = sinkLike((m: ServerMessage): void => {
      if (v.member !== token) return;
      let out = m;
      if (m.type === "welcome") {
        this.credentials.set(m.credential, j.id);
        if (this.credentials.size > 100_000) this.credentials.delete(this.credentials.keys().next().value as string);
        if (this.multi) out = { ...m, grid: { job: j.id, reason: reason.slice(0, 300) } };
      }
      v.send(out);
      if (m.type === "dropped") {
        // Out of the view (straggler, paused, organizer): it asks again with `join` when it wants to work.
        v.job = null;
        v.worker = null;
        v.member = null;
        v.available = false;
        v.since = 0;
        if (this.multi) this.rebalance(`volunteer ${v.id} dropped from job ${j.id}`, true);
      }
    }, v.send);
    const r = j.run.join(msg, send);
    if (!r.ok) {
      v.member = null;
      return r;
    }
    if (v.member === token) {
      v.job = j.id;
      v.worker = r.id;
      v.since = this.now();
    }
    return { ok: true, job: j.id, id: r.id };
  }

  /**
   * One throughput report: smoothed over RATE_TAU_MS; it counts (in `rates`)
   * once the volunteer has reported on the job for RATE_WARMUP_MS, so the
   * first steps (pipelines compiling, data loading) do not count.
   */
  private measure(v: Vol, job: string, r: number, clock: number): void {
    const now = this.now();
    const m = v.meters.get(job);
    if (!m) {
      v.meters.set(job, { first: now, rate: r, at: now, clock });
      return;
    }
    // Only reports after steps: a page that waits (paused, loading, gated) repeats its last step time.
    if (clock <= m.clock) return;
    m.clock = clock;
    const w = 1 - Math.exp(-Math.max(0, now - m.at) / RATE_TAU_MS);
    m.rate += w * (r - m.rate);
    m.at = now;
    if (now - m.first >= RATE_WARMUP_MS) v.rates.set(job, m.rate);
  }

  /**
   * The rates the allocation sees: a measured rate within a factor NOISE_BAND
   * of the job's median counts as the median (pages sharing a machine, and
   * minibatches resized by work sizing, move a page's rate that much from one
   * report to the next; only larger differences are taken as real).
   */
  private allocRates(jobs: readonly JobDemand[]): Map<string, Map<string, number>> {
    const medians = new Map<string, number>();
    for (const j of jobs) {
      const xs = [...this.vols.values()].flatMap((v) => (v.available && v.rates.has(j.id) ? [v.rates.get(j.id) as number] : [])).sort((a, b) => a - b);
      if (xs.length > 0) medians.set(j.id, xs.length % 2 ? (xs[xs.length >> 1] as number) : ((xs[(xs.length >> 1) - 1] as number) + (xs[xs.length >> 1] as number)) / 2);
    }
    const out = new Map<string, Map<string, number>>();
    for (const v of this.vols.values()) {
      const row = new Map<string, number>();
      for (const [job, r] of v.rates) {
        const m = medians.get(job);
        row.set(job, m !== undefined && r >= m / NOISE_BAND && r <= m * NOISE_BAND ? m : r);
      }
      out.set(v.id, row);
    }
    return out;
  }

  /** A validated message of a joined volunteer, for its job. */
  onMessage(vid: string, msg: ClientMessage): void {
    const v = this.vols.get(vid);
    if (!v || v.job === null || v.worker === null) return;
    const j = this.jobs.get(v.job) as GridJob;
    if (msg.type === "clock" && msg.stepMs > 0 && msg.batch > 0) this.measure(v, j.id, (msg.batch * 1000) / msg.stepMs, msg.clock);
    if (msg.type === "clock" && msg.phaseMs !== undefined) v.phaseMs = msg.phaseMs;
    if (msg.type === "leave" && v.moving) {
      this.completeMove(v);
      return;
    }
    if (msg.type === "leave") v.available = false;
    j.run.onMessage(v.worker, msg);
  }

  onBinary(vid: string, bytes: Uint8Array): string | null {
    const v = this.vols.get(vid);
    if (!v || v.job === null || v.worker === null) return "not an active worker";
    return (this.jobs.get(v.job) as GridJob).run.onBinary(v.worker, bytes);
  }

  countRejection(vid: string, code: RejectCode): void {
    const v = this.vols.get(vid);
    if (v?.job != null && v.worker !== null) this.jobs.get(v.job)?.run.countRejection?.(v.worker, code);
  }

  /** Drop a misbehaving connection's worker. */
  drop(vid: string, detail: string): void {
    const v = this.vols.get(vid);
    if (v?.job != null && v.worker !== null) this.jobs.get(v.job)?.run.drop(v.worker, "misbehaving", detail, null);
  }

  /** The control connection closed. */
  disconnect(vid: string): void {
    const v = this.vols.get(vid);
    if (!v) return;
    this.vols.delete(vid);
    v.member = null;
    if (v.job !== null && v.worker !== null) this.jobs.get(v.job)?.run.remove(v.worker, "left", "connection closed");
    if (this.multi && v.available) this.rebalance(`volunteer ${v.id} left`, true);
  }

  // ------------------------------------------------------------ allocation and moves

  /**
   * What each job asks for now. A paused job keeps one of its volunteers
   * (idle, holding the model: a job's state lives in its replicas, and its
   * other volunteers take a snapshot from it when it resumes); the others go
   * elsewhere. Finishing, cancelled and ended jobs ask for nobody.
   */
  private demands(): JobDemand[] {
    const out: JobDemand[] = [];
    for (const j of this.all()) {
      const p = this.phase(j);
      if (p === "open") {
        // Ending within seconds: it keeps whom it has (they move once, at its end) and takes nobody new (CLOSING_SOON_MS).
        const has = this.closingSoon(j) ? [...this.vols.values()].filter((v) => v.available && this.heading(v) === j.id).length : 0;
        const cap = has > 0 ? { minWorkers: Math.min(j.maxWorkers, has), maxWorkers: Math.min(j.maxWorkers, has) } : { minWorkers: j.minWorkers, maxWorkers: j.maxWorkers };
        out.push({ id: j.id, weight: j.weight, ...cap, priority: j.priority });
      } else if (p === "closed" && !j.cancelled && [...this.vols.values()].some((v) => v.available && this.heading(v) === j.id)) {
        out.push({ id: j.id, weight: j.weight, minWorkers: 1, maxWorkers: 1, priority: j.priority });
      }
    }
    return out;
  }

  /**
   * When a job with a max clock should reach it, ms from now, at the pace its
   * clock kept over the last PACE_WINDOW_MS of ticks (from the last tick
   * before it began to move); null without a max clock, before PACE_MIN_MS
   * of pace is known, or while it does not advance.
   */
  endsInMs(j: GridJob): number | null {
    const pr = j.run.progress?.();
    const xs = this.paces.get(j.id);
    if (!pr || pr.maxClock <= 0 || !xs || xs.length < 2) return null;
    // From its last look before the clock moved (a new job loads before it steps).
    const first = xs.findIndex((x) => x.clock > (xs[0] as { clock: number }).clock);
    const a = xs[Math.max(0, first - 1)] as { t: number; clock: number };
    const b = xs[xs.length - 1] as { t: number; clock: number };
    if (first < 0 || b.t - a.t < PACE_MIN_MS || b.clock <= a.clock) return null;
    return (Math.max(0, pr.maxClock - pr.clock) * (b.t - a.t)) / (b.clock - a.clock);
  }

  /** Expected to reach its max clock within CLOSING_SOON_MS (see there). */
  private closingSoon(j: GridJob): boolean {
    const ends = this.endsInMs(j);
    return ends !== null && ends < CLOSING_SOON_MS;
  }

  /** Record each running job's clock (at every tick) for `endsInMs`. */
  private notePaces(now: number): void {
    for (const j of this.all()) {
      const pr = j.run.progress?.();
      if (!pr || pr.maxClock <= 0 || this.phase(j) !== "open") {
        this.paces.delete(j.id);
        continue;
      }
      const xs = this.paces.get(j.id) ?? [];
      xs.push({ t: now, clock: pr.clock });
      while (xs.length > 2 && now - (xs[1] as { t: number }).t >= PACE_WINDOW_MS) xs.shift();
      this.paces.set(j.id, xs);
    }
  }

  /** Where a volunteer's work goes now (a move in flight counts as done). */
  private heading(v: Vol): string | null {
    return v.moving?.to ?? v.target?.job ?? v.job;
  }

  /**
   * Of each finishing job's volunteers, the ones it keeps to drain and report
   * its end digests: the KEEP_AT_END longest in it (and still live there).
   */
  private keepers(): Set<string> {
    const out = new Set<string>();
    for (const j of this.all()) {
      if (this.phase(j) !== "finishing") continue;
      const held = [...this.vols.values()]
        .filter((v) => v.job === j.id && !v.moving && v.worker !== null && j.run.isLive(v.worker))
        .sort((a, b) => a.since - b.since || a.id.localeCompare(b.id, "en", { numeric: true }));
      for (const v of held.slice(0, KEEP_AT_END)) out.add(v.id);
    }
    return out;
  }

  /** Volunteers free to allocate: connected, asking for work, not kept by a job that is finishing. */
  private pool(): Volunteer[] {
    const rates = this.allocRates(this.demands());
    const kept = this.keepers();
    const out: Volunteer[] = [];
    for (const v of this.vols.values()) {
      if (!v.available || kept.has(v.id)) continue;
      const cur = this.heading(v);
      out.push({ id: v.id, rates: rates.get(v.id) ?? v.rates, current: cur !== null && this.jobs.has(cur) ? cur : null });
    }
    return out;
  }

  private plan(): { jobs: JobDemand[]; pool: Volunteer[]; assignment: Map<string, string | null> } {
    const jobs = this.demands();
    const pool = this.pool();
    return { jobs, pool, assignment: allocate(jobs, pool, { margin: this.opts.margin ?? 0.2 }) };
  }

  private joinReason(job: string, a: ReadonlyMap<string, string | null>): string {
    const j = this.jobs.get(job) as GridJob;
    const n = [...a.values()].filter((x) => x === job).length;
    const open = this.demands();
    const total = open.reduce((s, d) => s + d.weight, 0);
    return `weighted fair share: job ${job} (weight ${j.weight} of ${total}) gets ${n} of ${a.size} volunteers`;
  }

  /**
   * Compute the allocation and move the volunteers whose job changed.
   * `quiet`: a routine trigger (a join, a leave) that does not restart the period.
   */
  rebalance(trigger: string, quiet = false): void {
    if (!this.multi) return;
    const now = this.now();
    if (!quiet) this.lastRebalance = now;
    const { assignment } = this.plan();
    const ending = this.endingSoon();
    let waited = false;
    for (const [vid, want] of assignment) {
      const v = this.vols.get(vid) as Vol;
      const cur = this.heading(v);
      if (want === null || want === cur) continue;
      const held = v.job !== null && !v.moving ? this.jobs.get(v.job) : undefined;
      if (held && v.since > 0 && now - v.since < SETTLE_MS && this.phase(held) === "open") {
        // Just joined an open job: left there a moment; the allocation is computed again then.
        this.recheck(v.since + SETTLE_MS);
        continue;
      }
      if (held && this.phase(held) === "open" && !ending.has(held.id) && ending.size > 0 && (this.waitingSince ?? now) + CLOSING_SOON_MS > now) {
        // A job ends within seconds and frees its volunteers then: they fill this want, not a
        // volunteer taken out of a running job now (which would cost two moves, not one).
        waited = true;
        this.waitingSince ??= now;
        this.recheck(this.waitingSince + CLOSING_SOON_MS);
        continue;
      }
      this.startMove(v, want, `${trigger}; ${this.joinReason(want, assignment)}`);
    }
    if (!waited) this.waitingSince = null;
  }

  /** Run the allocation again at `at` (ms) unless a rebalance comes sooner. */
  private recheck(at: number): void {
    this.recheckAt = this.recheckAt === null ? at : Math.min(this.recheckAt, at);
  }

  /**
   * Jobs that free their volunteers within seconds: open ones expected to
   * reach their max clock within CLOSING_SOON_MS, and finishing ones (their
   * keepers are free once the end digests are in), each with a volunteer.
   */
  private endingSoon(): Set<string> {
    const out = new Set<string>();
    for (const j of this.all()) {
      const p = this.phase(j);
      if (p !== "finishing" && !(p === "open" && this.closingSoon(j))) continue;
      if ([...this.vols.values()].some((v) => v.available && v.job === j.id && !v.moving)) out.add(j.id);
    }
    return out;
  }

  private startMove(v: Vol, to: string, reason: string): void {
    const j = this.jobs.get(to) as GridJob;
    const from = v.job;
    this.moves.push({ t: this.now(), volunteer: v.id, from: v.moving?.from ?? from, to, reason });
    if (this.moves.length > MAX_MOVES_KEPT) this.moves.splice(0, this.moves.length - MAX_MOVES_KEPT);
    this.log(`move ${v.id}${v.name ? ` (${v.name})` : ""}: ${v.moving?.from ?? from ?? "no job"} → ${to}: ${reason}`);
    const old = from !== null ? this.jobs.get(from) : undefined;
    if (v.moving) {
      // Already leaving: its next join goes to the new target (one move message per leave).
      v.moving.to = to;
      v.moving.reason = reason;
      return;
    }
    if (v.target && v.member === null && v.job === null) {
      // Told to move and not joined again yet: same.
      v.target = { job: to, reason };
      return;
    }
    v.send({ type: "move", job: to, name: j.run.job.name, reason: reason.slice(0, 300) });
    if (old && v.worker !== null && old.run.state !== "done" && old.run.state !== "failed" && old.run.isLive(v.worker)) {
      v.moving = { from: old.id, to, since: this.now(), reason };
    } else {
      // Not in a running job (waiting, or its job is over): its next join goes to `to`.
      v.job = null;
      v.worker = null;
      v.member = null;
      v.since = 0;
      v.target = { job: to, reason };
    }
  }

  /** The page left its old job after a `move` (or did not in time): a clean `left`, then its next join goes to the new job. */
  private completeMove(v: Vol): void {
    const m = v.moving;
    if (!m) return;
    v.moving = null;
    if (v.job !== null && v.worker !== null) this.jobs.get(v.job)?.run.remove(v.worker, "left", `moved to job ${m.to}`);
    v.job = null;
    v.worker = null;
    v.member = null;
    v.since = 0;
    v.target = { job: m.to, reason: m.reason };
  }

  /** The jobs whose phase changed since the last look, described (the new phases are remembered). */
  private phaseChanges(): string[] {
    const changed: string[] = [];
    for (const j of this.all()) {
      const p = this.phase(j);
      if (p === this.phases.get(j.id)) continue;
      this.phases.set(j.id, p);
      changed.push(`job ${j.id} ${p === "over" ? `is ${j.run.state}` : p === "finishing" ? "is finishing" : j.cancelled ? "was cancelled" : p === "closed" ? "was paused" : "was resumed"}`);
    }
    return changed;
  }

  /**
   * A job's run recorded an event (its `onEvent`; call it outside the run's
   * own code, e.g. from setImmediate): a job that began to finish or ended
   * releases its volunteers now, not at the next tick (half a tick's wait per
   * moved volunteer otherwise).
   */
  jobEvent(): void {
    if (!this.multi) return;
    const changed = this.phaseChanges();
    if (changed.length > 0) this.rebalance(changed.join(", "));
  }

  /** Periodic: every job's tick, phase changes, move timeouts, the rebalancing period. */
  tick(intervalMs?: number): void {
    for (const j of this.all()) j.run.tick(intervalMs);
    if (!this.multi) return;
    const now = this.now();
    this.notePaces(now);
    const changed = this.phaseChanges();
    for (const v of this.vols.values()) {
      if (v.moving && now - v.moving.since > (this.opts.moveTimeoutMs ?? 10_000)) {
        this.log(`move ${v.id}: no leave from the page in time; taking it out of job ${v.moving.from}`);
        this.completeMove(v);
      }
    }
    // A cancelled job ends once its volunteers have moved away (a silent last
    // worker stays in its view, coordinator/stragglers.ts: the move timeout
    // above takes it out).
    for (const j of this.all()) {
      if (!j.cancelled || this.phase(j) === "over") continue;
      const held = [...this.vols.values()].some((v) => v.job === j.id && v.worker !== null && j.run.isLive(v.worker));
      if (!held) j.run.control("stop");
    }
    const recheck = this.recheckAt !== null && now >= this.recheckAt;
    if (recheck) this.recheckAt = null;
    if (changed.length > 0) this.rebalance(changed.join(", "));
    else if (now - this.lastRebalance >= this.rebalanceMs) this.rebalance("periodic rebalance");
    else if (recheck) this.rebalance("a held-back move is due", true);
  }

  /** Organizer: cancel a job (its volunteers move away, then it stops without a target). */
  cancel(id: string): boolean {
    const j = this.jobs.get(id);
    if (!j || this.phase(j) === "over") return false;
    j.cancelled = true;
    this.opts.remember?.forget(id);
    this.phases.set(j.id, this.phase(j));
    this.rebalance(`job ${id} cancelled`);
    return true;
  }

  /** A control changed a job's state (pause, resume, stop): rebalance now rather than at the next tick. */
  controlled(id: string, what: string): void {
    const j = this.jobs.get(id);
    if (!j) return;
    const p = this.phase(j);
    if (p === this.phases.get(id)) return;
    this.phases.set(id, p);
    this.rebalance(`job ${id} ${what}`);
  }

  // ------------------------------------------------------------ status

  /** Share of throughput per job now: target (weights of the open jobs) and actual (measured rates). */
  shares(): { targets: Map<string, number>; actual: Map<string, number>; fairness: number; counts: Map<string, number> } {
    const jobs = this.demands();
    const pool = this.pool();
    const current = new Map(pool.map((p) => [p.id, p.current]));
    const rate = rateTable(jobs, pool);
    const totals = new Map<string, number>();
    const counts = new Map<string, number>();
    let all = 0;
    for (const v of this.vols.values()) {
      if (v.job === null || v.worker === null) continue;
      counts.set(v.job, (counts.get(v.job) ?? 0) + 1);
      const r = rate.get(v.id)?.get(v.job);
      if (r === undefined) continue;
      totals.set(v.job, (totals.get(v.job) ?? 0) + r);
      all += r;
    }
    const weights = jobs.reduce((s, j) => s + j.weight, 0);
    const targets = new Map(jobs.map((j) => [j.id, weights > 0 ? j.weight / weights : 0]));
    const actual = new Map([...totals].map(([k, x]) => [k, all > 0 ? x / all : 0]));
    return { targets, actual, fairness: fairnessError(jobs, pool, current), counts };
  }

  /** One job as `GET /api/jobs/ID/status` shows it: its entry, its share, and its run's status. */
  jobStatus(id: string, shares = this.shares()): Record<string, unknown> | null {
    const j = this.jobs.get(id);
    if (!j) return null;
    const endsMs = this.phase(j) === "open" ? this.endsInMs(j) : null;
    return {
      id: j.id,
      weight: j.weight,
      minWorkers: j.minWorkers,
      maxWorkers: j.maxWorkers,
      priority: j.priority,
      cancelled: j.cancelled,
      share: { target: shares.targets.get(j.id) ?? 0, actual: shares.actual.get(j.id) ?? 0 },
      // When it should reach its max clock at its recent pace (null: no max clock or no pace yet); under CLOSING_SOON_MS it takes nobody new.
      endsInSec: endsMs === null ? null : Math.round(endsMs / 100) / 10,
      volunteers: shares.counts.get(j.id) ?? 0,
      ...j.run.status(),
    };
  }

  /** `GET /api/jobs`. */
  list(): Record<string, unknown> {
    const s = this.shares();
    const now = this.now();
    return {
      jobs: this.order.map((id) => this.jobStatus(id, s)),
      fairnessError: s.fairness,
      rebalanceMs: this.rebalanceMs,
      volunteers: [...this.vols.values()].map((v) => ({
        id: v.id,
        name: v.name,
        job: v.job,
        worker: v.worker,
        moving: v.moving ? v.moving.to : null,
        computingMs: v.job !== null && v.since > 0 ? now - v.since : 0,
        ...(v.phaseMs !== null ? { phaseMs: v.phaseMs } : {}),
        rates: Object.fromEntries([...v.rates].map(([k, r]) => [k, Math.round(r)])),
      })),
      moves: this.moves.slice(-100),
    };
  }
}
