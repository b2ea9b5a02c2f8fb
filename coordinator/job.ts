/**
 * One training job as the coordinator runs it: membership and views, worker
 * clocks and health, shard assignment, evaluation of uploaded replicas on the
 * test set, the end of the job (finish → final clocks → drain → digests), and
 * the status served at /api/status. Transport-agnostic: each worker is reached
 * through the `send` function given at join.
 */
import { createHash, randomBytes } from "node:crypto";
import { issuePeerIdentity, presentsIdentity } from "./peer-ids.ts";
import { formatCompression, NO_COMPRESSION, type Compression } from "../client/compress.ts";
import { formatAggregationRule, formatClip, isRobust, MEAN, type Aggregation } from "../client/aggregate.ts";
import type { JobDefinition } from "../client/jobs/job.ts";
import type { LrScaling, OptimizerName } from "../client/jobs/optimizers.ts";
import type { Dataset } from "./data.ts";
import {
  encodeModelUpload,
  decodeModelUpload,
  type ClientMessage,
  type Consistency,
  type DropReason,
  type Digest,
  type JoinMessage,
  type RejectCode,
  type ServerMessage,
  type ViewMember,
} from "./protocol.ts";
import { clockRange, compareWorkerIds, lowerCut, stalenessBound } from "./ssp.ts";
import { assess, chooseDrops, DEFAULT_DROP, DEFAULT_POLICY, rejoinDelayMs, type DropPolicy, type StragglerPolicy } from "./stragglers.ts";
import { DEFAULT_AUTO, initialAutoState, stepAuto, type AutoPolicy, type AutoState } from "./auto.ts";
import type { JobStore } from "./state.ts";
import { ViewBook } from "./views.ts";
import { Outbox, type Sink } from "./outbox.ts";
import { sizeBatches } from "./sizing.ts";
import { inlineEvaluator, type Evaluator } from "./evaluator.ts";
import type { IceServer } from "./protocol.ts";
import type { LineageRecord, ResumeState } from "./resume.ts";
import { SpotChecker, type SpotPolicy } from "./spotcheck.ts";
import type { Express } from "express";
import type { MfConfig } from "../client/mf/problem.ts";

export type WorkerState = "active" | "straggler" | "dropped" | "left";
export type JobState = "waiting" | "running" | "paused" | "done" | "failed";

export interface JobOptions {
  readonly job: JobDefinition;
  readonly data: Dataset;
  readonly consistency: Consistency;
  readonly seed: number;
  readonly maxClock: number;
  /**
   * Stop once the coverage count shows this many epochs, every training
   * example processed this many times (0: no limit); `--epochs`. Counted from
   * whole shards, not from examples: work a closed page did on a shard it
   * never finished is redone by the shard's next holder and does not count.
   */
  readonly maxEpochs: number;
  readonly targetAccuracy: number;
  readonly minWorkers: number;
  readonly evalEvery: number;
  /** Least time between two test evaluations, ms (default 1000). */
  readonly minEvalIntervalMs?: number;
  readonly batch: number;
  readonly learningRate: number;
  /** The optimizer workers use instead of the job's default. */
  readonly optimizer?: OptimizerName;
  /** Each worker's learning rate against the number of active workers (default "sum": unscaled). */
  readonly lrScaling?: LrScaling;
  /** How workers encode their updates (default: none, dense f32). */
  readonly compression?: Compression;
  /** How each clock's updates are combined (default mean: added as they come; client/aggregate.ts). */
  readonly aggregation?: Aggregation;
  /** Spot-checks of workers' computation (coordinator/spotcheck.ts); absent: none. */
  readonly spotChecks?: SpotPolicy;
  /** Size each worker's minibatch to its measured speed (default on; coordinator/sizing.ts). */
  readonly workSizing?: boolean;
  readonly store: JobStore | null;
  /** State read back from the store: the job resumes from its checkpoint (coordinator/resume.ts). */
  readonly resume?: ResumeState;
  /** Least ms between two model checkpoints (default 2000; 0: every upload). */
  readonly checkpointIntervalMs?: number;
  readonly policy?: StragglerPolicy;
  /** Straggler drops (default on; `dropStragglers: false` only marks them). */
  readonly dropStragglers?: boolean;
  readonly dropPolicy?: DropPolicy;
  readonly autoPolicy?: AutoPolicy;
  readonly now?: () => number;
  readonly log?: (line: string) => void;
  /** Told of each event after it is recorded (the grid of several jobs acts on finishing and done at once). */
  readonly onEvent?: (kind: string) => void;
  /**
   * Membership changes within this many ms are published as one view epoch
   * (and one shard reassignment); 0 publishes every change at once.
   */
  readonly viewBatchMs?: number;
  /** Send every view in full to every worker (the behaviour before delta views; for comparisons). */
  readonly fullViews?: boolean;
  /** Where test evaluations run (default: inline; the coordinator process uses a worker thread). */
  readonly evaluator?: Evaluator;
  /** Handed to the pages in `welcome` (`--ice-servers`, `--ice-transport`, `--mesh-max`). */
  readonly dataPlane?: { readonly iceServers: IceServer[]; readonly iceTransportPolicy: "all" | "relay"; readonly meshMax: number };
  /** Job mf-dp: the matrix-factorization problem, handed to the pages in `welcome` (they build the job from it). */
  readonly mfProblem?: MfConfig;
}

interface WorkerRecord {
  readonly id: string;
  readonly peerId: string;
  /** The secret that lets a signaling socket register `peerId` (coordinator/peer-ids.ts). */
  readonly peerToken: string;
  readonly credential: string;
  readonly name: string;
  readonly backend: "webgpu" | "cpu";
  readonly kernel: string;
  readonly adapter: string;
  startClock: number;
  /** Joined mid-job, loading its snapshot: outside everyone's gate until `ready`. */
  syncing: boolean;
  readonly joinedAt: number;
  /** Send to this worker (after any view delivery still queued for it in the outbox). */
  readonly send: (msg: ServerMessage) => void;
  /** The socket's own send: the worker's key in the outbox. */
  readonly sink: Sink<ServerMessage>;
  state: WorkerState;
  clock: number;
  lastSeen: number;
  /** The coordinator's summed stall time when `lastSeen` was set. */
  stalledAtSeen: number;
  lastReportAt: number;
  rateMark: { t: number; clock: number };
  stepMs: number;
  /** Smoothed compute part of a step at the batch `batch` (reset when it changes; 0 until reported). */
  computeMs: number;
  /** The minibatch work sizing gave it (sent in acks). */
  sizedBatch: number;
  stepsPerSec: number;
  examplesPerSec: number;
  batch: number;
  examples: number;
  bytesIn: number;
  bytesOut: number;
  peers: number;
  loss: number;
  paused: boolean;
  slowSince: number | null;
  /** Silent, but kept in the view: every replica holder was silent at once (coordinator/stragglers.ts). */
  suspect: boolean;
  shards: number[];
  finalClock: number | null;
  digest: Digest | null;
  stalenessHist: number[];
  waitMs: number;
  /** Smallest V[j] its replica reported (see Replica.minActive). */
  minApplied: number;
  /** This volunteer across its memberships (same credential chain). */
  readonly lineage: Lineage;
  dropReason: string | null;
  /** Messages of this worker the coordinator rejected, by reason code. */
  rejected: Partial<Record<RejectCode, number>>;
}

/** What the coordinator remembers of a volunteer across memberships. */
interface Lineage {
  readonly first: string;
  drops: number;
  /** Its membership in the view now, if any. */
  live: string | null;
}

export interface JobEvent {
  readonly t: number;
  readonly kind: string;
  readonly worker?: string;
  readonly detail?: string;
}

const MAX_SERIES = 2000;
const MAX_EVENTS = 500;
/** Give up waiting for digests after this long and finish anyway. */
const DRAIN_TIMEOUT_MS = 30_000;

function pushBounded<T>(arr: T[], item: T, max: number): void {
  arr.push(item);
  if (arr.length > max) {
    // Thin the older half so the series keeps its whole span.
    const half = arr.length >> 1;
    const thinned = arr.slice(0, half).filter((_, i) => i % 2 === 0);
    arr.splice(0, half, ...thinned);
  }
}

/** What the state log keeps of a credential: its SHA-256, never the credential itself. */
function credentialHash(credential: string): string {
  return createHash("sha256").update(credential).digest("hex");
}

export class JobRun {
  readonly job: JobDefinition;
  private readonly opts: JobOptions;
  private readonly now: () => number;
  private readonly workers = new Map<string, WorkerRecord>();
  private nextWorker = 1;
  private readonly lineages = new Map<string, Lineage>();
  /** Volunteers of earlier incarnations (from the state log), by credential hash: a page that rejoins with one continues its lineage. */
  private readonly restoredLineages = new Map<string, LineageRecord>();
  private auto: AutoState | null = null;
  /** Epoch coverage: shards whose every example was processed, per epoch. */
  private readonly coverage: Set<number>[] = [new Set()];
  private readonly epochsDone: { epoch: number; t: number }[] = [];
  private readonly session = randomBytes(4).toString("hex");
  private readonly views: ViewBook = new ViewBook();
  /** Workers that get the whole view at the next publication (joiners, `view-request`). */
  private readonly wantsFullView = new Set<string>();
  /** Every message to a worker goes through here; a view epoch to many is spread over event-loop turns. */
  private readonly outbox = new Outbox<ServerMessage>();
  private viewTimer: ReturnType<typeof setTimeout> | null = null;
  /** Active and straggling workers sorted by id; null when membership changed since. */
  private activeCache: WorkerRecord[] | null = null;
  private examplesTotal = 0;
  /** Time the coordinator's own loop was stalled (late ticks), summed; see `tick`. */
  private stalledMs = 0;
  private lastTickAt: number | null = null;
  private cuts: { id: string; clock: number }[] = [];
  consistency: Consistency;
  state: JobState;
  private finishing: { since: number; reason: string; drainSent: boolean } | null = null;
  private readonly trainLoss: [number, number][] = [];
  private readonly testSeries: [number, number][] = [];
  private readonly events: JobEvent[] = [];
  private lastEvalAt = 0;
  private lastEvalMs = 0;
  /** The test metric's name, as the evaluator last reported it. */
  private metricName = "accuracy";
  /** The newest uploaded replica, evaluated or not (for /api/model). */
  private latest: { clock: number; params: Float32Array } | null = null;
  private bestModel: { clock: number; params: Float32Array } | null = null;
  private lossClock = -1;
  private readonly evalRunner: Evaluator;
  /** An evaluation is running (at most one); `evalNext` is the upload to evaluate after it, if it must be. */
  private evalBusy = false;
  private evalNext: { clock: number; params: Float32Array } | null = null;
  /** Last time each (reporter>peer) loss was logged. */
  private readonly peerLossReported = new Map<string, number>();
  /** Durable state: this run's incarnation, the checkpoint it resumed from, the last one written. */
  private readonly incarnation: number;
  /**
   * Where workers start while none is stepping beyond it: the checkpoint a
   * restart resumed from, or the newest uploaded model once every worker had
   * left (`rebaseIfEmpty`).
   */
  private base: { clock: number; params: Float32Array; file: string } | null;
  /** The checkpoint this run resumed from after a restart (status `durable.resumedFrom`). */
  private readonly resumedFrom: { clock: number; file: string } | null;
  private lastCheckpoint: { clock: number; t: number } | null = null;
  private readonly spot: SpotChecker | null;

  constructor(opts: JobOptions) {
    this.opts = opts;
    this.job = opts.job;
    this.now = opts.now ?? Date.now;
    this.consistency = opts.consistency;
    this.evalRunner = opts.evaluator ?? inlineEvaluator(opts.job, opts.data.test);
    this.state = opts.minWorkers > 1 ? "waiting" : "running";
    if (opts.consistency.mode === "auto") this.auto = initialAutoState(opts.consistency.staleness, this.now());
    const r = opts.resume;
    this.incarnation = r?.incarnation ?? 1;
    this.base = r?.checkpoint ?? null;
    this.resumedFrom = this.base ? { clock: this.base.clock, file: this.base.file } : null;
    if (r) {
      this.views = new ViewBook(r.epoch);
      this.examplesTotal = r.checkpoint?.examples ?? 0;
      this.nextWorker = r.nextWorker;
      this.events.push(...r.events);
      for (const [h, l] of r.lineages) this.restoredLineages.set(h, l);
      this.trainLoss.push(...r.trainLoss);
      this.testSeries.push(...r.testSeries);
      this.lossClock = this.base?.clock ?? -1;
      if (r.checkpoint) {
        this.coverage.splice(0, this.coverage.length, ...r.checkpoint.coverage.map((c) => new Set(c)));
        if (this.coverage.length === 0) this.coverage.push(new Set());
        this.epochsDone.push(...r.checkpoint.epochsDone);
        this.latest = { clock: r.checkpoint.clock, params: r.checkpoint.params };
        this.lastCheckpoint = { clock: r.checkpoint.clock, t: this.now() };
      }
    }
    this.spot = opts.spotChecks && opts.spotChecks.everyMs > 0 ? this.spotChecker(opts.spotChecks) : null;
    opts.store?.append({ k: "start", t: this.now(), incarnation: this.incarnation, job: this.job.name, parameters: this.job.parameters, seed: opts.seed });
    if (this.base) this.event("resumed", undefined, `incarnation ${this.incarnation} from the checkpoint at clock ${this.base.clock}`);
    else if (r && r.incarnation > 1) this.event("resumed", undefined, `incarnation ${this.incarnation} without a checkpoint: from the initial parameters`);
    if (r?.paused) {
      // The organizer paused it before the restart: it stays paused until resumed.
      this.state = "paused";
      this.event("paused", undefined, "paused before the restart; resume from the console");
    }
  }

  private spotChecker(policy: SpotPolicy): SpotChecker {
    const shards = this.opts.data.shards;
    return new SpotChecker(
      {
        candidates: () => this.active().filter((w) => w.state === "active" && !w.syncing && !w.paused).map((w) => w.id),
        model: () => this.newestModel(),
        shards: () => shards.length,
        shardCount: (i) => {
          const b = shards[i]?.bytes;
          return b ? new DataView(b.buffer, b.byteOffset, b.byteLength).getUint32(8, true) : 0;
        },
        shardRef: (i) => (shards[i] as (typeof shards)[number]).ref,
        batch: () => this.opts.batch,
        send: (id, msg) => this.workers.get(id)?.send(msg),
        event: (kind, worker, detail) => this.event(kind, worker, detail),
        drop: (id, detail) => void this.drop(id, "misbehaving", detail, null),
      },
      policy,
    );
  }

  /** Routes of this run under /api: GET /api/spot/TASK, a spot-check task's reference model (/api/model layout). */
  mount(app: Express): void {
    app.get("/api/spot/:task", (req, res) => {
      const m = this.spot?.model(String(req.params["task"]));
      if (!m) {
        res.status(404).json({ error: "no such spot-check task" });
        return;
      }
      res.type("application/octet-stream").send(Buffer.from(encodeModelUpload(m.clock, m.params)));
    });
  }

  private log(line: string): void {
    this.opts.log?.(line);
  }

  private event(kind: string, worker?: string, detail?: string): void {
    const e: JobEvent = { t: this.now(), kind, ...(worker ? { worker } : {}), ...(detail ? { detail } : {}) };
    pushBounded(this.events, e, MAX_EVENTS);
    this.opts.store?.append({ k: "event", ...e });
    this.log(`${kind}${worker ? ` ${worker}` : ""}${detail ? `: ${detail}` : ""}`);
    this.opts.onEvent?.(kind);
  }

  /** Active and straggling workers, sorted by id (cached until membership changes; do not mutate). */
  private active(): WorkerRecord[] {
    this.activeCache ??= [...this.workers.values()]
      .filter((w) => w.state === "active" || w.state === "straggler")
      .sort((a, b) => compareWorkerIds(a.id, b.id));
    return this.activeCache;
  }

  private viewMembers(): ViewMember[] {
    return this.active().map((w) => ({ id: w.id, peerId: w.peerId, startClock: w.startClock, ...(w.syncing ? { syncing: true } : {}) }));
  }

  private evaluator(): string | null {
    return this.active()[0]?.id ?? null;
  }

  /** The view changed: publish it now, or at the end of the batch window. */
  private broadcastView(): void {
    const ms = this.opts.fullViews ? 0 : (this.opts.viewBatchMs ?? 0);
    if (ms <= 0) {
      this.publishView();
      return;
    }
    if (this.viewTimer !== null) return;
    this.viewTimer = setTimeout(() => {
      this.viewTimer = null;
      this.publishView();
    }, ms);
  }

  /** Publish what is pending at once (before messages that must follow the view, e.g. finish). */
  private flushView(): void {
    if (this.viewTimer === null) return;
    clearTimeout(this.viewTimer);
    this.viewTimer = null;
    this.publishView();
  }

  /**
   * One view epoch: shards reassigned, then the delta to every worker that
   * holds the previous epoch and the whole view to joiners and to those that
   * asked for it.
   */
  private publishView(): void {
    this.reassignShards();
    const { full, delta } = this.views.publish(
      { active: this.viewMembers(), cuts: this.cuts, consistency: this.consistency, state: this.state, evaluator: this.evaluator() },
      this.opts.fullViews === true,
    );
    // Joiners first (they wait for their first view to start), then everyone else.
    const deliveries: [(m: ServerMessage) => void, ServerMessage][] = [];
    for (const w of this.active()) if (this.opts.fullViews || this.wantsFullView.has(w.id)) deliveries.push([w.sink, full]);
    if (!this.opts.fullViews && delta !== null) for (const w of this.active()) if (!this.wantsFullView.has(w.id)) deliveries.push([w.sink, delta]);
    this.outbox.fanout(deliveries);
    this.wantsFullView.clear();
    if (delta !== null) this.opts.store?.append({ k: "view", e: full.epoch });
  }

  /** Give each active worker a contiguous block of shards; tell those whose block changed. */
  private reassignShards(): void {
    const act = this.active();
    const n = act.length;
    const shards = this.opts.data.shards;
    if (n === 0) return;
    const blocks: number[][] = act.map(() => []);
    shards.forEach((_, i) => blocks[Math.floor((i * n) / shards.length)]?.push(i));
    act.forEach((w, k) => {
      const next = blocks[k] ?? [];
      if (next.join(",") === w.shards.join(",")) return;
      w.shards = next;
      w.send({ type: "assign", shards: next.map((i) => (shards[i] as (typeof shards)[number]).ref) });
    });
  }

  knowsCredential(credential: string): boolean {
    return this.lineages.has(credential) || this.restoredLineages.has(credentialHash(credential));
  }

  /** Remember a credential (its hash) in the state log, so a restarted coordinator knows the volunteer. */
  private logLineage(w: WorkerRecord, gone?: string): void {
    this.opts.store?.append({ k: "lineage", h: credentialHash(w.credential), first: w.lineage.first, drops: w.lineage.drops, ...(gone !== undefined ? { gone } : {}) });
  }

  /** A page joined: issue its ids and credential, tell everyone the new view. */
  join(msg: JoinMessage, send: Sink<ServerMessage>): { ok: true; id: string } | { ok: false; reason: string } {
    if (this.state === "done" || this.state === "failed" || this.finishing) {
      return { ok: false, reason: `job is ${this.finishing ? "finishing" : this.state}` };
    }
    let lineage: Lineage | undefined;
    let gone: string | undefined;
    if (msg.rejoin !== undefined) {
      gone = credentialHash(msg.rejoin);
      lineage = this.lineages.get(msg.rejoin);
      const earlier = lineage ? undefined : this.restoredLineages.get(gone);
      if (earlier) {
        // Issued by an earlier incarnation of this coordinator (a restart): the same volunteer.
        lineage = { first: earlier.first, drops: earlier.drops, live: null };
        this.restoredLineages.delete(gone);
      }
      if (!lineage) return { ok: false, reason: "unknown credential" };
      if (lineage.live !== null) return { ok: false, reason: `credential in use by ${lineage.live}` };
      this.lineages.delete(msg.rejoin);
    }
    const act = this.active();
    // After a restart every worker starts at the checkpoint's clock from its
    // parameters (GET /api/checkpoint) until one has stepped beyond it.
    const baseClock = this.base?.clock ?? 0;
    const running = act.some((w) => w.clock > baseClock);
    const startClock = running ? clockRange(act.map((w) => w.clock)).min : baseClock;
    const id = `w${this.nextWorker++}`;
    const rejoined = lineage !== undefined;
    lineage ??= { first: id, drops: 0, live: null };
    const now = this.now();
    const w: WorkerRecord = {
      id,
      ...issuePeerIdentity(this.session, id),
      credential: randomBytes(16).toString("hex"),
      name: (msg.name ?? "").slice(0, 60),
      backend: msg.backend,
      kernel: msg.kernel,
      adapter: msg.adapter,
      startClock,
      syncing: running,
      joinedAt: now,
      send: (m) => this.outbox.send(send, m),
      sink: send,
      state: "active",
      clock: startClock,
      lastSeen: now,
      stalledAtSeen: this.stalledMs,
      lastReportAt: now,
      rateMark: { t: now, clock: startClock },
      stepMs: 0,
      computeMs: 0,
      sizedBatch: this.opts.batch,
      stepsPerSec: 0,
      examplesPerSec: 0,
      batch: this.opts.batch,
      examples: 0,
      bytesIn: 0,
      bytesOut: 0,
      peers: 0,
      loss: 0,
      paused: false,
      slowSince: null,
      suspect: false,
      shards: [],
      finalClock: null,
      digest: null,
      stalenessHist: [],
      waitMs: 0,
      minApplied: 0,
      lineage,
      dropReason: null,
      rejected: {},
    };
    lineage.live = id;
    this.workers.set(id, w);
    this.activeCache = null;
    this.wantsFullView.add(id);
    this.lineages.set(w.credential, lineage);
    this.logLineage(w, gone);
    send({
      type: "welcome",
      workerId: id,
      peerId: w.peerId,
      peerToken: w.peerToken,
      credential: w.credential,
      job: {
        name: this.job.name,
        parameters: this.job.parameters,
        batch: this.opts.batch,
        learningRate: this.opts.learningRate,
        ...(this.opts.optimizer !== undefined ? { optimizer: this.opts.optimizer } : {}),
        ...(this.opts.lrScaling !== undefined && this.opts.lrScaling !== "sum" ? { lrScaling: this.opts.lrScaling } : {}),
        seed: this.opts.seed,
        maxClock: this.opts.maxClock,
        evalEvery: this.opts.evalEvery,
        compression: formatCompression(this.opts.compression ?? NO_COMPRESSION),
        ...this.aggregationSpec(),
      },
      iceServers: this.opts.dataPlane?.iceServers ?? [],
      ...(this.opts.dataPlane ? { iceTransportPolicy: this.opts.dataPlane.iceTransportPolicy, meshMax: this.opts.dataPlane.meshMax } : {}),
      startClock,
      needsSnapshot: running,
      incarnation: this.incarnation,
      ...(this.base && !running ? { base: { clock: this.base.clock } } : {}),
      ...(this.opts.mfProblem ? { mf: this.opts.mfProblem } : {}),
    });
    if (rejoined) this.event("rejoined", id, `again (first joined as ${lineage.first})`);
    else this.event("joined", id, w.name || undefined);
    if (this.state === "waiting" && this.active().length >= this.opts.minWorkers) {
      this.state = "running";
      this.event("started");
    }
    this.broadcastView();
    return { ok: true, id };
  }

  /** Is this worker in the view (active or straggler)? */
  isLive(id: string): boolean {
    const w = this.workers.get(id);
    return w !== undefined && (w.state === "active" || w.state === "straggler");
  }

  /** A training shard by index. */
  shard(id: number): Dataset["shards"][number] | undefined {
    return this.opts.data.shards[id];
  }

  /** Shards served over HTTP (downloads that the IndexedDB cache did not spare). */
  private served = { shards: 0, bytes: 0 };

  countServed(bytes: number): void {
    this.served.shards++;
    this.served.bytes += bytes;
  }

  /** May a signaling socket register `peerId` with `token`: issued to a worker that has not left, with that secret? */
  ownsPeerId(peerId: string, token: string): boolean {
    for (const w of this.workers.values()) if (w.state !== "left" && presentsIdentity(w, peerId, token)) return true;
    return false;
  }

  /** A validated message from a joined worker. */
  onMessage(id: string, msg: ClientMessage): void {
    const w = this.workers.get(id);
    if (!w || w.state === "left" || w.state === "dropped") return;
    const now = this.now();
    w.lastSeen = now;
    w.stalledAtSeen = this.stalledMs;
    switch (msg.type) {
      case "heartbeat":
      case "join":
        return;
      case "view-request":
        this.wantsFullView.add(id);
        this.broadcastView();
        return;
      case "paused":
        // Nobody waits for a paused page: it leaves the view and joins again on resume.
        if (msg.paused) this.drop(id, "paused", "paused by its volunteer", null);
        return;
      case "clock": {
        if (msg.clock < w.clock || msg.clock > w.clock + 10_000) return;
        // Rates over windows of at least a second (reports come every ~200 ms).
        const dt = (now - w.rateMark.t) / 1000;
        if (dt >= 1) {
          const rate = (msg.clock - w.rateMark.clock) / dt;
          w.stepsPerSec = w.stepsPerSec === 0 ? rate : 0.6 * w.stepsPerSec + 0.4 * rate;
          w.examplesPerSec = w.stepsPerSec * msg.batch;
          w.rateMark = { t: now, clock: msg.clock };
        }
        w.lastReportAt = now;
        w.clock = msg.clock;
        // Smoothed: one noisy step must not make a worker look slow.
        if (msg.stepMs > 0) w.stepMs = w.stepMs === 0 ? msg.stepMs : 0.7 * w.stepMs + 0.3 * msg.stepMs;
        if (msg.computeMs !== undefined && msg.computeMs > 0) {
          w.computeMs = w.computeMs === 0 || msg.batch !== w.batch ? msg.computeMs : 0.7 * w.computeMs + 0.3 * msg.computeMs;
        }
        w.batch = msg.batch;
        this.examplesTotal += msg.examples - w.examples;
        w.examples = msg.examples;
        w.bytesIn = msg.bytesIn;
        w.bytesOut = msg.bytesOut;
        w.peers = msg.peers;
        w.loss = msg.loss;
        if (msg.waitMs !== undefined) w.waitMs = msg.waitMs;
        if (msg.shardsDone) for (const sh of msg.shardsDone) this.cover(sh);
        if (msg.stalenessHist) {
          msg.stalenessHist.forEach((n, k) => (w.stalenessHist[k] = (w.stalenessHist[k] ?? 0) + n));
        }
        if (w.clock > this.lossClock && w.clock > w.startClock) this.recordLoss();
        const range = this.clockRangeCached();
        w.minApplied = msg.minApplied;
        const sized = this.opts.workSizing === false ? null : this.sizedBatch(w);
        w.send({
          type: "ack",
          ...(msg.seq !== undefined ? { seq: msg.seq } : {}),
          min: range.min,
          max: range.max,
          active: range.active,
          stable: range.stable,
          ...(sized !== null ? { batch: sized } : {}),
        });
        if (this.opts.maxClock > 0 && w.clock >= this.opts.maxClock && !this.finishing) {
          this.finish(`max clock ${this.opts.maxClock} reached`);
        }
        const epochs = this.opts.maxEpochs;
        if (epochs > 0 && this.epochsDone.length >= epochs && !this.finishing) {
          this.finish(`${epochs} epoch${epochs === 1 ? "" : "s"} covered: every training example processed ${epochs === 1 ? "once" : `${epochs} times`}`);
        }
        return;
      }
      case "spot-result":
        this.spot?.onResult(id, msg, now);
        return;
      case "final":
        w.finalClock = Math.max(msg.clock, w.clock);
        w.clock = w.finalClock;
        this.maybeDrain();
        return;
      case "digest":
        w.digest = msg.digest;
        this.maybeDone();
        return;
      case "leave":
        this.remove(id, "left", "left the job");
        return;
      case "ready": {
        if (!w.syncing) return;
        // Enter the gate at the clock the others are at, so nobody waits for
        // the joiner to replay the clocks it missed.
        const others = this.active().filter((x) => !x.syncing);
        const start = Math.max(w.startClock, others.length > 0 ? clockRange(others.map((x) => x.clock)).min : w.startClock);
        w.syncing = false;
        w.startClock = start;
        w.clock = Math.max(w.clock, start);
        w.rateMark = { t: now, clock: w.clock };
        this.event("synced", id, `in the gate from clock ${start}`);
        this.broadcastView();
        return;
      }
      case "peer-lost": {
        // At most one event per reporter and peer a second (a link is redialled after 1 s); only about workers in the view.
        const peer = this.workers.get(msg.peer);
        const key = `${id}>${msg.peer}`;
        if (!peer || msg.peer === id || !(peer.state === "active" || peer.state === "straggler")) return;
        if (now - (this.peerLossReported.get(key) ?? -Infinity) < 1000) return;
        if (this.peerLossReported.size > 10_000) this.peerLossReported.clear();
        this.peerLossReported.set(key, now);
        this.event("peer-lost", id, `lost its link to ${msg.peer}: ${msg.why}`);
        return;
      }
      case "missing": {
        const cut = this.cuts.find((c) => c.id === msg.id);
        if (!cut || msg.clock > cut.clock) return;
        this.cuts = lowerCut(this.cuts, msg.id, msg.clock - 1);
        this.event("cut-lowered", msg.id, `u(${msg.id},${msg.clock}) is held by no replica ${id} could reach; cut now ${msg.clock - 1}`);
        this.broadcastView();
        return;
      }
    }
  }

  /** Examples processed by every worker, past and present. */
  examplesProcessed(): number {
    return this.examplesTotal;
  }

  private sizingAt = -Infinity;

  /**
   * The minibatch for `w` (coordinator/sizing.ts), re-planned for every
   * active worker at most once a second from their smoothed compute times;
   * the batch a worker runs (`w.batch`) is what it reported.
   */
  private sizedBatch(w: WorkerRecord): number {
    const now = this.now();
    if (now - this.sizingAt >= 1000) {
      this.sizingAt = now;
      const act = this.active().filter((x) => !x.syncing);
      const plan = sizeBatches(
        // A worker that has not switched to its last planned batch yet counts as unmeasured.
        act.map((x) => ({ id: x.id, batch: x.sizedBatch, computeMs: x.batch === x.sizedBatch ? x.computeMs : 0 })),
        this.opts.batch,
      );
      for (const x of act) x.sizedBatch = plan.get(x.id) ?? x.sizedBatch;
    }
    return w.sizedBatch;
  }

  private rangeCache: { at: number; min: number; max: number; active: number; stable: number } | null = null;

  /** Active clock range and stable point, recomputed at most every 50 ms (cheap with thousands of workers). */
  private clockRangeCached(): { min: number; max: number; active: number; stable: number } {
    const now = this.now();
    if (this.rangeCache && now - this.rangeCache.at < 50) return this.rangeCache;
    const act = this.active();
    let min = Infinity;
    let max = 0;
    let stable = Infinity;
    for (const w of act) {
      if (w.clock < min) min = w.clock;
      if (w.clock > max) max = w.clock;
      if (w.minApplied < stable) stable = w.minApplied;
    }
    const r = act.length === 0 ? { min: 0, max: 0 } : { min, max };
    if (act.length === 0) stable = 0;
    this.rangeCache = { at: now, min: r.min, max: r.max, active: act.length, stable };
    return this.rangeCache;
  }

  /** A report raised the highest clock: one point of the training-loss series (O(active) per new clock). */
  private recordLoss(): void {
    const act = this.active().filter((w) => w.clock > w.startClock);
    if (act.length === 0) return;
    const max = clockRange(act.map((w) => w.clock)).max;
    if (max <= this.lossClock) return;
    this.lossClock = max;
    const mean = act.reduce((s, w) => s + w.loss, 0) / act.length;
    pushBounded(this.trainLoss, [max, mean], MAX_SERIES);
    this.opts.store?.append({ k: "loss", c: max, v: mean });
  }

  /** A binary message: the evaluator's replica. Returns an error text when rejected. */
  onBinary(id: string, bytes: Uint8Array): string | null {
    const w = this.workers.get(id);
    if (!w || w.state === "left" || w.state === "dropped") return "not an active worker";
    const r = decodeModelUpload(bytes, this.job.parameters);
    if (!r.ok) return r.message;
    w.lastSeen = this.now();
    w.stalledAtSeen = this.stalledMs;
    const upload = { clock: r.value.clock, params: r.value.params };
    this.maybeCheckpoint(upload.clock, upload.params);
    // Evaluation runs off the event loop (a worker thread) but shares the
    // machine's cores: keep it under ~10% of the time (at most once a second,
    // and ten times its own duration apart). While one runs, only the newest
    // upload waits, and only when it must be evaluated (the job is finishing).
    const since = this.now() - this.lastEvalAt;
    const force = this.finishing !== null;
    const interval = this.opts.minEvalIntervalMs ?? 1000;
    if (this.evalBusy || (!force && interval > 0 && since < Math.max(interval, 10 * this.lastEvalMs))) {
      this.latest = upload;
      if (this.evalBusy && force) this.evalNext = upload;
      return null;
    }
    this.evaluate(upload.clock, upload.params);
    return null;
  }

  private evaluate(clock: number, params: Float32Array): void {
    this.evalBusy = true;
    this.lastEvalAt = this.now();
    this.evalRunner.evaluate(clock, params).then(
      (m) => {
        // The spacing keeps evaluation to about a tenth of a core: by its CPU time where known (on a
        // machine busy with other work its wall time is several times that, and evaluations would
        // then come so far apart that a job runs on for many seconds past its target).
        this.lastEvalMs = m.cpuMs ?? m.ms;
        this.lastEvalAt = this.now();
        pushBounded(this.testSeries, [clock, m.value], MAX_SERIES);
        this.opts.store?.append({ k: "test", c: clock, v: m.value });
        if (!this.bestModel || clock >= this.bestModel.clock) this.bestModel = { clock, params };
        this.metricName = m.name;
        this.log(`clock ${clock}: test ${m.name} ${m.value.toFixed(4)}`);
        if (m.value >= this.opts.targetAccuracy && !this.finishing) {
          this.finish(`target ${m.name} ${this.opts.targetAccuracy} reached (${m.value.toFixed(4)})`);
        }
        this.evalDone();
      },
      (e: unknown) => {
        this.log(`evaluation at clock ${clock} failed: ${e instanceof Error ? e.message : String(e)}`);
        this.evalDone();
      },
    );
  }

  private evalDone(): void {
    this.evalBusy = false;
    const next = this.evalNext;
    this.evalNext = null;
    if (next) this.evaluate(next.clock, next.params);
  }

  /** How far the job is: its most advanced active worker's clock, and its --max-clock (0: none). */
  progress(): { clock: number; maxClock: number } {
    return { clock: this.clockRangeCached().max, maxClock: this.opts.maxClock };
  }

  /** The job is ending: its workers stop, drain and report digests (coordinator/jobs.ts keeps them). */
  isFinishing(): boolean {
    return this.finishing !== null && this.state !== "done";
  }

  /** End the job: every worker stops stepping and reports its last clock. */
  finish(reason: string): void {
    if (this.finishing || this.state === "done") return;
    this.flushView();
    this.finishing = { since: this.now(), reason, drainSent: false };
    this.event("finishing", undefined, reason);
    for (const w of this.active()) w.send({ type: "finish", reason });
    // A joiner still syncing has no update of its own yet; draining it would mean catching up
    // with the whole job first (a joiner 436 clocks behind a job's first worker drained for 10 s
    // in a harness run): it leaves at its start clock instead, and its volunteer moves on.
    for (const w of [...this.active()]) if (w.syncing) this.remove(w.id, "left", "the job ended before it had synced");
    this.maybeDrain();
  }

  private maybeDrain(): void {
    const f = this.finishing;
    if (!f || f.drainSent) return;
    const act = this.active();
    if (act.some((w) => w.finalClock === null)) return;
    f.drainSent = true;
    const target: Record<string, number> = {};
    for (const c of this.cuts) target[c.id] = c.clock;
    for (const w of act) target[w.id] = w.finalClock ?? w.clock;
    for (const w of act) w.send({ type: "drain", target });
    this.maybeDone();
  }

  private maybeDone(): void {
    const f = this.finishing;
    if (!f || !f.drainSent || this.state === "done") return;
    if (this.active().some((w) => w.digest === null)) return;
    this.complete();
  }

  private complete(): void {
    this.state = "done";
    this.event("done", undefined, this.finishing?.reason);
    this.saveCheckpoint();
    this.broadcastView();
  }

  private saveCheckpoint(): void {
    const m = this.newestModel();
    if (m) this.maybeCheckpoint(m.clock, m.params, true);
  }

  /**
   * Write an uploaded replica as the job's checkpoint (at most every
   * `checkpointIntervalMs`, or when `force`d at the end of the job).
   */
  private maybeCheckpoint(clock: number, params: Float32Array, force = false): void {
    const store = this.opts.store;
    if (!store) return;
    const now = this.now();
    const last = this.lastCheckpoint;
    if (last && clock <= last.clock && !force) return;
    if (!force && last && now - last.t < (this.opts.checkpointIntervalMs ?? 2000)) return;
    const ok = store.checkpoint(clock, params, {
      k: "ckpt",
      t: now,
      clock,
      incarnation: this.incarnation,
      examples: this.examplesProcessed(),
      coverage: this.coverage.map((c) => [...c]),
      epochsDone: this.epochsDone,
    });
    if (ok) this.lastCheckpoint = { clock, t: now };
  }

  private newestModel(): { clock: number; params: Float32Array } | null {
    return this.latest && (!this.bestModel || this.latest.clock > this.bestModel.clock) ? this.latest : this.bestModel;
  }

  /** The latest uploaded model, in the /api/model layout. */
  model(): Uint8Array | null {
    const m = this.newestModel();
    if (m) return new Uint8Array(encodeModelUpload(m.clock, m.params));
    return this.opts.store?.readCheckpoint(this.job.parameters) ?? null;
  }

  /** The checkpoint this run resumed from (every worker's starting point), in the /api/model layout. */
  baseModel(): Uint8Array | null {
    return this.base ? new Uint8Array(encodeModelUpload(this.base.clock, this.base.params)) : null;
  }

  /** The socket closed or the worker went silent: drop it from the view with a cut. */
  remove(id: string, state: "left" | "dropped", why: string): void {
    const w = this.workers.get(id);
    if (!w || w.state === "left" || w.state === "dropped") return;
    this.outbox.release(w.sink);
    w.state = state;
    this.activeCache = null;
    this.wantsFullView.delete(id);
    if (w.lineage.live === id) w.lineage.live = null;
    this.cuts = [...this.cuts.filter((c) => c.id !== id), { id, clock: w.clock }];
    this.spot?.forget(id);
    this.event(state, id, why);
    this.rebaseIfEmpty();
    this.broadcastView();
    this.maybeDrain();
    this.maybeDone();
  }

  /**
   * Every worker has left a running job (pages closed, volunteers moved to
   * other jobs): the model lived in their replicas, so keep the newest one the
   * coordinator holds (the last upload) as the base the next workers start
   * from, as after a restart: at its clock, from its parameters
   * (`/api/checkpoint`), no snapshot. The cuts of the departed workers go with
   * them: the base holds what of their updates it holds, and no replica that
   * could disagree is left. What they computed after that upload is lost.
   */
  private rebaseIfEmpty(): void {
    if ((this.state !== "running" && this.state !== "paused") || this.finishing || this.active().length > 0) return;
    const m = this.newestModel();
    if (!m || m.clock <= (this.base?.clock ?? 0)) return;
    this.base = { clock: m.clock, params: m.params, file: "the coordinator's newest model" };
    this.cuts = [];
    this.event("resumed", undefined, `every worker left: the next ones start from the newest model at clock ${m.clock}`);
  }

  /**
   * Periodic: liveness, stragglers, the drain timeout. `intervalMs` is how
   * often the caller means to tick: a tick that comes later than that shows
   * the coordinator itself was stalled (its loop busy, or no CPU for it), and
   * that time does not count as any worker's silence (their messages may be
   * waiting unread in the sockets). At most a tenth of the workers (or 10)
   * are declared gone per tick; the rest are judged again at the next.
   */
  tick(intervalMs?: number): void {
    // A finished job's records are final: who ended active, with which digest.
    // (Its volunteers may go quiet for it, e.g. moved to another job.)
    if (this.state === "done" || this.state === "failed") return;
    const now = this.now();
    if (intervalMs !== undefined && this.lastTickAt !== null) this.stalledMs += Math.max(0, now - this.lastTickAt - intervalMs);
    this.lastTickAt = now;
    const act = [...this.active()];
    const verdicts = assess(
      act.map((w) => ({
        id: w.id,
        clock: w.clock,
        stepMs: w.stepMs,
        lastSeen: Math.min(now, w.lastSeen + (this.stalledMs - w.stalledAtSeen)),
        slowSince: w.slowSince,
        paused: w.paused,
        syncing: w.syncing,
      })),
      stalenessBound(this.consistency),
      now,
      this.opts.policy ?? DEFAULT_POLICY,
    );
    let goneBudget = Math.max(10, Math.ceil(act.length / 10));
    for (const v of verdicts) {
      const w = this.workers.get(v.id);
      if (!w) continue;
      if (v.verdict === "gone") {
        if (goneBudget-- > 0) this.remove(v.id, "left", v.reason);
        continue;
      }
      if (v.verdict === "suspect") {
        // Kept in the view with its state: the view must not lose its last replicas to silence alone.
        if (!w.suspect) this.event("suspect", w.id, `${v.reason}: kept in the view`);
        w.suspect = true;
        continue;
      }
      if (w.suspect) this.event("heard", w.id, "heard again after a silence");
      w.suspect = false;
      w.slowSince = v.slowSince;
      const next: WorkerState = v.verdict === "straggler" ? "straggler" : "active";
      if (next !== w.state) {
        w.state = next;
        this.event(next === "straggler" ? "straggler" : "recovered", w.id, v.reason || undefined);
      }
    }
    if (this.state === "running" && !this.finishing) {
      this.spot?.tick(now);
      if (this.opts.dropStragglers !== false) {
        const stepMs = new Map(act.map((w) => [w.id, w.stepMs]));
        const live = this.active();
        for (const id of chooseDrops(verdicts, stepMs, live.length, this.consistency.mode === "asp", this.opts.dropPolicy)) {
          const dropped = this.workers.get(id) as WorkerRecord;
          const drops = ++dropped.lineage.drops;
          this.logLineage(dropped);
          const v = verdicts.find((x) => x.id === id);
          this.drop(id, "straggler", v?.reason ?? "too slow", rejoinDelayMs(drops, this.opts.dropPolicy ?? DEFAULT_DROP));
        }
      }
      if (this.auto && this.consistency.mode === "auto") {
        const next = stepAuto(
          this.auto,
          this.active().map((w) => ({ id: w.id, waitMs: w.waitMs, stepsPerSec: w.stepsPerSec })),
          now,
          this.opts.autoPolicy ?? DEFAULT_AUTO,
        );
        const changed = next.staleness !== this.auto.staleness;
        this.auto = next;
        if (changed) {
          this.consistency = { mode: "auto", staleness: next.staleness };
          this.event("consistency", undefined, `auto: s=${next.staleness} (fast workers waited ${Math.round((next.lastWaitShare ?? 0) * 100)}% of the time)`);
          this.broadcastView();
        }
      }
    }
    const f = this.finishing;
    // (The state may have become done during this tick: a removal can complete the drain.)
    if (f && (this.state as JobState) !== "done" && now - f.since > DRAIN_TIMEOUT_MS) {
      this.event("drain-timeout", undefined, "some workers did not report a digest in time");
      this.complete();
    }
  }

  /** Organizer controls (already authorized). */
  control(action: "pause" | "resume" | "stop"): void {
    if (action === "stop") {
      this.finish("stopped by the organizer");
      return;
    }
    if (this.state === "done" || this.state === "failed") return;
    if (action === "pause" && this.state === "running") this.state = "paused";
    else if (action === "resume" && this.state === "paused") this.state = "running";
    else return;
    this.event(action === "pause" ? "paused" : "resumed");
    this.opts.store?.append({ k: "control", paused: action === "pause" });
    this.broadcastView();
  }

  /**
   * Take a worker out of the view with a cut at its clock and tell it why and
   * when it may join again (null: only on its own initiative, e.g. resume).
   */
  drop(id: string, reason: DropReason, detail: string, rejoinAfterMs: number | null): boolean {
    const w = this.workers.get(id);
    if (!w || (w.state !== "active" && w.state !== "straggler")) return false;
    w.dropReason = `${reason}: ${detail}`;
    w.send({ type: "dropped", reason, detail: detail.slice(0, 200), rejoinAfterMs });
    this.remove(id, "dropped", `${reason}: ${detail}`);
    return true;
  }

  /** A message of this worker was rejected (the server drops it past a threshold). */
  countRejection(id: string, code: RejectCode): void {
    const w = this.workers.get(id);
    if (w) w.rejected[code] = (w.rejected[code] ?? 0) + 1;
  }

  /** Record that every example of `shard` was processed once more. */
  private cover(shard: number): void {
    if (!this.opts.data.shards[shard]) return;
    let e = this.coverage.findIndex((set) => !set.has(shard));
    if (e < 0) {
      this.coverage.push(new Set());
      e = this.coverage.length - 1;
    }
    (this.coverage[e] as Set<number>).add(shard);
    const total = this.opts.data.shards.length;
    while (this.coverage.length > 0 && (this.coverage[0] as Set<number>).size >= total) {
      this.coverage.shift();
      const epoch = this.epochsDone.length + 1;
      this.epochsDone.push({ epoch, t: this.now() });
      this.event("epoch", undefined, `epoch ${epoch}: every training example processed`);
      if (this.coverage.length === 0) this.coverage.push(new Set());
    }
  }

  /** The welcome's aggregation fields (absent for mean, as before). */
  private aggregationSpec(): { aggregation?: string; clip?: string } {
    const a = this.opts.aggregation ?? MEAN;
    return isRobust(a) ? { aggregation: formatAggregationRule(a.rule), clip: formatClip(a.clip) } : {};
  }

  /** Throws RangeError for a mode the job's aggregation cannot run under (asp with a robust rule). */
  setConsistency(c: Consistency): void {
    if (c.mode === "asp" && isRobust(this.opts.aggregation ?? MEAN)) throw new RangeError("a robust aggregation needs a staleness gate; asp has none");
    this.consistency = c;
    this.auto = c.mode === "auto" ? initialAutoState(c.staleness, this.now()) : null;
    this.event("consistency", undefined, `${c.mode}${c.mode === "ssp" ? ` s=${c.staleness}` : ""}`);
    this.broadcastView();
  }

  status(): Record<string, unknown> {
    const now = this.now();
    const act = this.active();
    const range = clockRange(act.map((w) => w.clock));
    return {
      job: { name: this.job.name, parameters: this.job.parameters, state: this.state },
      consistency: {
        mode: this.consistency.mode,
        staleness: this.consistency.staleness,
        ...(this.auto ? { auto: { waitShare: this.auto.lastWaitShare, target: (this.opts.autoPolicy ?? DEFAULT_AUTO).targetWaitShare } } : {}),
      },
      aggregation: { rule: formatAggregationRule((this.opts.aggregation ?? MEAN).rule), clip: formatClip((this.opts.aggregation ?? MEAN).clip) },
      coverage: {
        epoch: this.epochsDone.length + 1,
        shards: this.opts.data.shards.length,
        covered: this.coverage[0]?.size ?? 0,
        epochsDone: this.epochsDone,
      },
      view: { epoch: this.views.epoch, active: act.map((w) => w.id) },
      clock: range,
      examples: this.examplesProcessed(),
      served: this.served,
      target: { accuracy: this.opts.targetAccuracy, maxClock: this.opts.maxClock },
      compression: formatCompression(this.opts.compression ?? NO_COMPRESSION),
      bytesOutPerClock: bytesOutPerClock(this.workers.values()),
      workers: [...this.workers.values()]
        .sort((a, b) => compareWorkerIds(a.id, b.id))
        .map((w) => ({
          id: w.id,
          state: w.state,
          clock: w.clock,
          stepsPerSec: Math.round(w.stepsPerSec * 100) / 100,
          batch: w.batch,
          examplesPerSec: Math.round(w.examplesPerSec),
          examples: w.examples,
          lastSeenMs: now - w.lastSeen,
          backend: w.backend,
          kernel: w.kernel,
          adapter: w.adapter,
          name: w.name,
          paused: w.paused,
          peers: w.peers,
          bytesIn: w.bytesIn,
          bytesOut: w.bytesOut,
          shards: w.shards.length,
          digest: w.digest,
          stalenessHist: w.stalenessHist,
          waitMs: Math.round(w.waitMs),
          stepMs: Math.round(w.stepMs * 10) / 10,
          startClock: w.startClock,
          syncing: w.syncing,
          lineage: w.lineage.first,
          dropReason: w.dropReason,
          rejected: w.rejected,
          trust: this.spot?.workerStatus(w.id) ?? null,
        })),
      spotChecks: this.spot?.status() ?? null,
      metrics: {
        trainLoss: this.trainLoss,
        test: { name: this.metricName, series: this.testSeries },
      },
      events: this.events,
      lastEvalMsAgo: this.lastEvalAt ? now - this.lastEvalAt : null,
      durable: {
        incarnation: this.incarnation,
        resumedFrom: this.resumedFrom,
        checkpoint: this.lastCheckpoint,
        healthy: this.opts.store?.healthy ?? false,
      },
    };
  }
}

/**
 * Bytes a worker sends per clock, over all workers of the job: the sum of
 * their reported bytes out over the sum of the clocks they advanced (null
 * before any clock). Shows what `--compression` saves.
 */
function bytesOutPerClock(workers: Iterable<WorkerRecord>): number | null {
  let bytes = 0;
  let clocks = 0;
  for (const w of workers) {
    bytes += w.bytesOut;
    clocks += Math.max(0, w.clock - w.startClock);
  }
  return clocks > 0 ? Math.round(bytes / clocks) : null;
}
