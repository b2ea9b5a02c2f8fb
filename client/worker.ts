/**
 * The volunteer's Web Worker (comlink `expose`): owns the GPU device, the
 * replica and the training loop. The page feeds it views, shard assignments
 * and peers' updates; it calls back (comlink proxies) with its own updates to
 * send, clock reports, replica uploads for evaluation, and its end digest.
 * ArrayBuffers cross the boundary as transfers.
 */
import * as Comlink from "comlink";
import { STALENESS_BUCKETS, decodeModelUpload, type AssignMessage, type Digest, type PhaseTimes, type SpotMessage, type WorkerPhase, type ViewMessage, type WelcomeMessage } from "../coordinator/protocol.ts";
import { MEAN, parseAggregation } from "./aggregate.ts";
import { ErrorFeedback, NO_COMPRESSION, encodeExact, parseCompression, type Compression } from "./compress.ts";
import { yieldToEventLoop, type SoftmaxBackend } from "./gpu/backend.ts";
import type { Encoding } from "./peer/frames.ts";
import { selectBackend } from "./gpu/select.ts";
import { wasmStartInfo } from "./gpu/wasm-backend.ts";
import { asResilient } from "./gpu/resilient.ts";
import { jobFor } from "./jobs/registry.ts";
import { idleAfterStep, NO_PACE, type Pace } from "./pace.ts";
import { EarlyUpdates } from "./early.ts";
import { lrScale, optimizerByName, type Optimizer } from "./jobs/optimizers.ts";
import type { JobDefinition } from "./jobs/job.ts";
import { AskWhenStalled } from "./chase.ts";
import { Replica, replicaDigest, type ReceiveResult } from "./replica.ts";
import { BatchSampler, loadShard, ShardPool, type ShardData } from "./store/shards.ts";

export interface WorkerReport {
  readonly clock: number;
  readonly minApplied: number;
  readonly loss: number;
  readonly stepMs: number;
  /** Of `stepMs`, the compute (the part that grows with the batch; a throttle's idle share counted in). */
  readonly computeMs: number;
  readonly batch: number;
  readonly examples: number;
  readonly epochProgress: number;
  readonly shardsLoaded: number;
  readonly waitingOn: string[];
  readonly state: "loading" | "training" | "waiting" | "paused" | "finished" | "drained";
  readonly stalenessHist: number[];
  /** Time blocked by the SSP gate in this membership, ms. */
  readonly waitMs: number;
  /** Shards fully processed since the last report. */
  readonly shardsDone: number[];
  /** Largest lead over the slowest active worker seen at a step start. */
  readonly maxLead: number;
  /** Since the page loaded, over all its jobs: the worker's time in each phase, ms (utilization). */
  readonly phaseMs: PhaseTimes;
}

/** A retained update in its wire form (client/compress.ts `encodeExact`), to re-send. */
export interface WireUpdate {
  readonly clock: number;
  readonly encoding: Encoding;
  readonly buffer: ArrayBuffer;
}

export interface WorkerCallbacks {
  /** This worker's update for `clock`, encoded (frame encoding + payload) as the job's compression says. */
  update(clock: number, encoding: Encoding, buffer: ArrayBuffer): void;
  report(r: WorkerReport): void;
  model(clock: number, buffer: ArrayBuffer): void;
  final(clock: number): void;
  digest(d: Digest, vector: Record<string, number>): void;
  /** The replica lacks these updates of `id` (after a cut or a join): ask peers. */
  missing(id: string, fromClock: number): void;
  /** A syncing joiner has its snapshot and data: tell the coordinator it can enter the gate. */
  ready(): void;
  /** No peer sent u(id, clock) (at or below id's cut) for a while: tell the coordinator. */
  unavailable(id: string, clock: number): void;
  log(line: string): void;
  /** The browser would not cache shards (quota, eviction, private mode): they are downloaded instead. */
  storageProblem(detail: string): void;
}

export interface InitResult {
  readonly backend: "webgpu" | "cpu";
  readonly kernel: string;
  readonly adapter: string;
  /** Why WebGPU is not used, when it is not. */
  readonly fallbackReason: string | null;
  /** The CPU path wanted WASM threads and runs on one: why (gpu/wasm-backend.ts). */
  readonly threadsNote: string | null;
}

const REPORT_EVERY_MS = 200;
/**
 * The phase of the worker's time while it reports a state ("training" is
 * reported after a step; the step itself enters "stepping" as it starts).
 */
const PHASE_OF: Record<WorkerReport["state"], WorkerPhase> = {
  loading: "loading",
  training: "stepping",
  waiting: "gate",
  paused: "paused",
  finished: "draining",
  drained: "idle",
};
/** In the staleness gate, awaited updates none of which came for this long are asked for again (client/chase.ts). */
const GATE_ASK_MS = 1500;
/** At a job's end, updates of the drain target still missing this long after it came are asked for again, */
const DRAIN_ASK_MS = 500;
/** and then after each such time without any of them coming. */
const DRAIN_ASK_AGAIN_MS = 2000;

/** Bytes of shards kept across moves (MNIST's whole training set is 47 MB). */
const SHARD_POOL_BYTES = 64 * 1024 * 1024;

function sleep(ms: number): Promise<void> {
  return new Promise((r) => setTimeout(r, ms));
}

class TrainingWorker {
  private backend: SoftmaxBackend | null = null;
  private job: JobDefinition | null = null;
  private optimizer: Optimizer | null = null;
  private welcome: WelcomeMessage | null = null;
  private replica: Replica | null = null;
  private cb: WorkerCallbacks | null = null;
  private sampler = new BatchSampler(1);
  private shards = new Map<number, ShardData>();
  /** Every shard loaded in this page, by content: a move to a job on the same data takes what it holds. */
  private readonly pool = new ShardPool(SHARD_POOL_BYTES);
  private wantedShards: number[] = [];
  private dataKey = "";
  private base = "";
  private viewState: ViewMessage["state"] = "waiting";
  private evaluator: string | null = null;
  /** Active workers in the current view (the learning rate's `lrScaling`). */
  private activeWorkers = 1;
  private paused = false;
  private finishing = false;
  private ready = true;
  private drainTarget: Record<string, number> | null = null;
  private wake: (() => void) | null = null;
  private examples = 0;
  private lastLoss = 0;
  private lastStepMs = 0;
  private lastComputeMs = 0;
  private computeSum = 0;
  /** The minibatch work sizing asked for (null: the job's). */
  private sizedBatch: number | null = null;
  private baseStepMs = 0;
  private pace: Pace = NO_PACE;
  private lastReport = 0;
  /** Incremented by every start() and stop(): a loop of an older generation exits. */
  private generation = 0;
  private throttle = 1;
  /** In the view as a syncing joiner: not in anyone's gate, not stepping yet. */
  private syncing = false;
  /** When this joiner asked to enter the gate (performance.now()), 0 not yet: the log says how long the coordinator took. */
  private readyAt = 0;
  private readySent = false;
  private baseSamples: number[] = [];
  /** Largest (clock + 1) − min V[j] at the start of a step: the lead over the slowest, ≤ s + 1 by the gate. */
  private maxLead = 0;
  private busyMs = 0;
  private busySteps = 0;
  private lackSince = 0;
  private lackAsked = 0;
  private lackKey = "";
  /** Time blocked by the SSP gate in this membership, ms. */
  private waitMs = 0;
  /** Peers' updates that came before the replica was ready (client/early.ts). */
  private readonly early = new EarlyUpdates();
  /** Never reset: the worker's time per phase since the page loaded (utilization, coordinator/jobs.ts). */
  private readonly phaseTotals: PhaseTimes = { stepping: 0, gate: 0, loading: 0, paused: 0, draining: 0, idle: 0 };
  private phase: WorkerPhase = "idle";
  private phaseAt = performance.now();
  /** Staleness of applied peer updates since the last report. */
  private stalenessHist: number[] = new Array<number>(STALENESS_BUCKETS).fill(0);
  private pendingAssign: AssignMessage | null = null;
  private compression: Compression = NO_COMPRESSION;
  /** This membership's error-feedback residual (what compression left out so far). */
  private feedback: ErrorFeedback | null = null;
  /** Where job.step writes its update (reused: fresh large arrays cost page faults every step). */
  private stepBuffer: Float32Array | null = null;
  /** The backend runs one session at a time: training steps and spot-check tasks take turns. */
  private backendTurn: Promise<unknown> = Promise.resolve();
  /** How many of the backend's GPU events (device lost, re-acquired, out of memory) the page's log has. */
  private gpuEventsLogged = 0;

  private exclusive<T>(f: () => Promise<T>): Promise<T> {
    const run = this.backendTurn.then(f, f);
    this.backendTurn = run.catch(() => undefined);
    return run;
  }

  /**
   * A spot-check task (coordinator/spotcheck.ts): the job's update for the
   * named examples at the named model, as a training step would compute it
   * from a fresh optimizer state; its digest goes back to the coordinator.
   */
  async spotCheck(base: string, task: SpotMessage): Promise<Digest> {
    const job = this.job;
    const backend = this.backend;
    const welcome = this.welcome;
    if (!job || !backend || !welcome) throw new Error("not training");
    const res = await fetch(`${base}/api/spot/${task.task}`, { cache: "no-store" });
    if (!res.ok) throw new Error(`model of ${task.task}: HTTP ${res.status}`);
    const model = decodeModelUpload(new Uint8Array(await res.arrayBuffer()), job.parameters);
    if (!model.ok) throw new Error(model.message);
    const shard = this.shards.get(task.shard.id) ?? (await loadShard(base, welcome.job.name, task.shard, (m) => this.cb?.log(m))).data;
    if (task.offset + task.count > shard.count || shard.pixelsPerImage !== job.inputDim) throw new Error(`examples ${task.offset}+${task.count} not in shard ${task.shard.id}`);
    const x = new Float32Array(task.count * job.inputDim);
    const labels = new Uint32Array(task.count);
    for (let b = 0; b < task.count; b++) {
      const idx = task.offset + b;
      labels[b] = shard.labels[idx] as number;
      for (let i = 0; i < job.inputDim; i++) x[b * job.inputDim + i] = (shard.pixels[idx * job.inputDim + i] as number) / 255;
    }
    const { grad } = await this.exclusive(() => job.meanGradient(backend, model.value.params, { x, labels, size: task.count }));
    const optimizer = this.optimizer ?? job.optimizer;
    return replicaDigest(optimizer.delta(grad, welcome.job.learningRate, optimizer.createState(job.parameters)));
  }

  /** Pick the compute backend for `jobName` (see gpu/select.ts). */
  async init(forceBackend: "webgpu" | "cpu" | null, jobName: string, maxBatch: number, wasmThreads: number | null = null): Promise<InitResult> {
    const job = jobFor(jobName);
    if (!job) throw new Error(`unknown job ${jobName}`);
    const { backend, fallbackReason } = await selectBackend(job, forceBackend, maxBatch, { wasmThreads });
    this.backend = backend;
    this.gpuEventsLogged = 0;
    return { backend: backend.backend, kernel: backend.kernel, adapter: backend.adapter, fallbackReason, threadsNote: wasmStartInfo()?.note ?? null };
  }

  /**
   * Begin a membership (a welcome and its first view). Any earlier membership's
   * loop stops; shards already loaded are kept.
   */
  start(base: string, welcome: WelcomeMessage, view: ViewMessage, pace: Pace, cb: WorkerCallbacks): void {
    const job = jobFor(welcome.job.name, welcome.mf);
    if (!job) throw new Error(`unknown job ${welcome.job.name}`);
    const gen = ++this.generation;
    // Another job's data (a move on a grid of several jobs): its shards come from IndexedDB or the coordinator again.
    const dataKey = welcome.grid?.job ?? welcome.job.name;
    if (dataKey !== this.dataKey) this.shards.clear();
    this.dataKey = dataKey;
    this.job = job;
    this.optimizer = welcome.job.optimizer !== undefined ? optimizerByName(welcome.job.optimizer) : job.optimizer;
    this.base = base;
    this.welcome = welcome;
    this.cb = cb;
    this.pace = pace;
    this.finishing = false;
    this.sizedBatch = null;
    this.drainTarget = null;
    this.examples = 0;
    this.waitMs = 0;
    this.stalenessHist = new Array<number>(STALENESS_BUCKETS).fill(0);
    this.sampler = new BatchSampler(welcome.job.seed * 7919 + Number(welcome.workerId.slice(1)));
    this.resample();
    const aggregation = parseAggregation(welcome.job.aggregation ?? "mean", welcome.job.clip ?? "off");
    this.replica = new Replica(welcome.workerId, job.init(welcome.job.seed), view, aggregation.ok ? aggregation.value : MEAN);
    const compression = parseCompression(welcome.job.compression);
    this.compression = compression.ok ? compression.value : NO_COMPRESSION;
    this.feedback = new ErrorFeedback(this.compression, job.parameters);
    this.ready = !welcome.needsSnapshot;
    this.readySent = false;
    this.readyAt = 0;
    this.early.take();
    if (welcome.base && !welcome.needsSnapshot) {
      // The coordinator restarted: this incarnation starts from its checkpoint.
      this.ready = false;
      void this.loadBase(gen, base, welcome.base.clock, cb);
    }
    this.setView(view);
    if (this.pendingAssign) {
      const a = this.pendingAssign;
      this.pendingAssign = null;
      this.assign(a);
    }
    void this.loop(gen).catch((e: unknown) => cb.log(`training stopped: ${e instanceof Error ? e.message : String(e)}`));
  }

  /** Load the checkpoint a restarted coordinator resumed from into the fresh replica. */
  private async loadBase(gen: number, base: string, clock: number, cb: WorkerCallbacks): Promise<void> {
    for (let attempt = 1; attempt <= 10 && this.generation === gen; attempt++) {
      let why: string;
      try {
        // Several jobs on one grid: each job's checkpoint under its id.
        const grid = this.welcome?.grid?.job;
        const res = await fetch(grid !== undefined ? `${base}/api/jobs/${encodeURIComponent(grid)}/checkpoint` : `${base}/api/checkpoint`, { cache: "no-store" });
        if (!res.ok) throw new Error(`HTTP ${res.status}`);
        const r = decodeModelUpload(new Uint8Array(await res.arrayBuffer()), this.job?.parameters ?? 0);
        if (!r.ok) throw new Error(r.message);
        if (r.value.clock !== clock) throw new Error(`checkpoint at clock ${r.value.clock}, want ${clock}`);
        if (this.generation !== gen || !this.replica) return;
        this.replica.setBase(r.value.params);
        this.ready = true;
        this.applyEarly();
        cb.log(`resumed from the coordinator's checkpoint at clock ${clock}`);
        this.poke();
        return;
      } catch (e) {
        why = e instanceof Error ? e.message : String(e);
      }
      cb.log(`cannot load the checkpoint (${why}); trying again`);
      await sleep(1000 * attempt);
    }
  }

  /**
   * For tests only (the page installs it as `window.gridTest.loseDevice()`
   * with `?test-hooks`, see client/main.ts): destroys the WebGPU device the
   * backend trains on now, as a driver reset or a GPU watchdog would take it
   * away. The backend re-acquires a device and re-runs the step from the
   * replica (client/gpu/resilient.ts). False on the CPU path (no device).
   */
  loseDevice(): boolean {
    const gpu = this.backend === null ? null : asResilient(this.backend);
    if (gpu === null) return false;
    gpu.device.destroy();
    return true;
  }

  /** Passes the backend's new GPU events (device lost, re-acquired, out of memory) to the page's log. */
  private logGpuEvents(cb: WorkerCallbacks): void {
    const gpu = this.backend === null ? null : asResilient(this.backend);
    if (gpu === null) return;
    for (; this.gpuEventsLogged < gpu.events.length; this.gpuEventsLogged++) cb.log(`GPU: ${gpu.events[this.gpuEventsLogged] ?? ""}`);
  }

  /** End the membership at once (dropped, or the volunteer stopped): the loop exits. */
  stop(): void {
    this.enter("idle");
    this.generation++;
    this.replica = null;
    this.welcome = null;
    this.poke();
  }

  /** The worker's time goes to `p` from now on. */
  private enter(p: WorkerPhase): void {
    if (p === this.phase) return;
    const now = performance.now();
    this.phaseTotals[this.phase] += now - this.phaseAt;
    this.phase = p;
    this.phaseAt = now;
  }

  private phaseTimes(): PhaseTimes {
    const out = { ...this.phaseTotals };
    out[this.phase] += performance.now() - this.phaseAt;
    for (const k of Object.keys(out) as WorkerPhase[]) out[k] = Math.round(out[k]);
    return out;
  }

  private poke(): void {
    const w = this.wake;
    this.wake = null;
    w?.();
  }

  private waitForChange(ms: number): Promise<void> {
    return new Promise((r) => {
      const t = setTimeout(() => {
        this.wake = null;
        r();
      }, ms);
      this.wake = () => {
        clearTimeout(t);
        r();
      };
    });
  }

  setView(view: ViewMessage): void {
    this.viewState = view.state;
    const self = view.active.find((m) => m.id === this.welcome?.workerId);
    if (this.syncing && self !== undefined && self.syncing !== true && this.readyAt > 0) {
      this.cb?.log(`in the staleness gate at clock ${self.startClock}, ${Math.round(performance.now() - this.readyAt)} ms after asking`);
    }
    this.syncing = self?.syncing === true;
    this.evaluator = view.evaluator;
    this.activeWorkers = view.active.length;
    if (this.replica && this.cb) {
      const { missing, unrevertable } = this.replica.setView(view);
      if (unrevertable > 0) this.cb.log(`${unrevertable} updates beyond a cut could not be reverted`);
      for (const m of missing) this.cb.missing(m.id, (m.clocks[0] ?? 1) - 1);
    }
    this.poke();
  }

  assign(msg: AssignMessage): void {
    if (!this.welcome) {
      this.pendingAssign = msg;
      return;
    }
    this.wantedShards = msg.shards.map((s) => s.id);
    void this.loadShards(msg).catch((e: unknown) => this.cb?.log(`shard loading failed: ${e instanceof Error ? e.message : String(e)}`));
  }

  private async loadShards(msg: AssignMessage): Promise<void> {
    // Several jobs on one grid: data routes and the shard cache are per job id.
    const job = this.welcome?.grid?.job ?? this.welcome?.job.name ?? "";
    // Shards held from another job first: one is enough to step.
    const refs = [...msg.shards].sort((x, y) => Number(this.pool.has(y)) - Number(this.pool.has(x)));
    for (const ref of refs) {
      if (this.shards.has(ref.id)) continue;
      const data =
        this.pool.get(ref) ??
        (
          await loadShard(this.base, job, ref, (m) => {
            this.cb?.log(m);
            this.cb?.storageProblem(m);
          })
        ).data;
      this.pool.put(ref.hash, data);
      this.shards.set(ref.id, data);
      if (!this.wantedShards.includes(ref.id)) continue;
      this.resample();
      this.poke();
    }
    for (const id of [...this.shards.keys()]) if (!this.wantedShards.includes(id)) this.shards.delete(id);
    this.resample();
  }

  private resample(): void {
    const have = this.wantedShards.map((id) => this.shards.get(id)).filter((s): s is ShardData => s !== undefined);
    this.sampler.setShards(have);
  }

  /**
   * A peer's update: applied, or (a joiner before its snapshot, or a restarted
   * worker before its base is loaded) held until the replica starts (`held`);
   * beyond the hold's bounds it is refused (`not-ready`) and asked for again
   * after the snapshot like any gap.
   */
  receive(sender: string, clock: number, buffer: ArrayBuffer): ReceiveResult | "held" | "not-ready" {
    if (this.replica && !this.ready) return this.early.hold(sender, clock, buffer) ? "held" : "not-ready";
    if (!this.replica) return "not-ready";
    const unfolded = this.replica.lateUnfolded;
    const r = this.replica.receive(sender, clock, new Float32Array(buffer));
    if (this.replica.lateUnfolded > unfolded) this.cb?.log(`u(${sender},${clock}) came after its clock was aggregated and could not re-aggregate it (no longer retained)`);
    if (r === "applied") {
      const k = Math.min(STALENESS_BUCKETS - 1, Math.max(0, this.replica.clock - clock));
      this.stalenessHist[k] = (this.stalenessHist[k] ?? 0) + 1;
      this.poke();
    }
    return r;
  }

  /**
   * The updates held while the replica was not ready, now applied: those the
   * snapshot already counts are duplicates; the rest are the ones its giver
   * had not seen, which need not be asked for again.
   */
  private applyEarly(): void {
    const held = this.early.take();
    let applied = 0;
    for (const u of held) if (this.receive(u.sender, u.clock, u.buffer) === "applied") applied++;
    if (held.length > 0) this.cb?.log(`${held.length} updates held until the replica started: ${applied} applied, ${held.length - applied} already counted`);
  }

  /** A consistent snapshot for a joining peer: parameters, vector clock, retained updates it counts. */
  snapshot(): { params: ArrayBuffer; vector: Record<string, number>; retained: (WireUpdate & { author: string })[]; frontier: number } | null {
    if (!this.replica || !this.ready) return null;
    const snap = this.replica.snapshot();
    const params = snap.params.buffer as ArrayBuffer;
    const retained = snap.retained.map((u) => ({ author: u.author, ...this.wire(u.clock, u.update) }));
    return Comlink.transfer({ params, vector: snap.vector, retained, frontier: snap.frontier }, [params, ...retained.map((u) => u.buffer)]);
  }

  /** Keep u(author, clock) that the loaded snapshot counts (see Replica.importRetained). */
  importRetained(author: string, clock: number, buffer: ArrayBuffer): boolean {
    return this.replica?.importRetained(author, clock, new Float32Array(buffer)) ?? false;
  }

  /** `frontier`: robust aggregation's finalized clocks in the snapshot (its frame's clock; 0 with mean). */
  loadSnapshot(params: ArrayBuffer, vector: Record<string, number>, frontier = 0): void {
    if (!this.replica || this.ready) return;
    const own = this.welcome?.workerId ?? "";
    const start = this.welcome?.startClock ?? 0;
    this.replica.loadSnapshot(new Float32Array(params), { ...vector, [own]: start }, frontier);
    this.ready = true;
    this.applyEarly();
    // The page then asks each author's updates after the snapshot from the peer they come through
    // (client/main.ts askForGaps); the staleness gate's anti-entropy asks everyone for what is still lacking.
    this.cb?.log(`snapshot loaded (${Object.keys(vector).length} clocks)`);
    this.poke();
  }

  /** Retained updates of `id` after `fromClock`, to re-send to a peer. */
  retained(id: string, fromClock: number, upTo: number): WireUpdate[] {
    if (!this.replica) return [];
    const out = this.replica
      .retainedAfter(id, fromClock)
      .filter((u) => u.clock <= upTo)
      .map((u) => this.wire(u.clock, u.update));
    return Comlink.transfer(out, out.map((o) => o.buffer));
  }

  /** A retained (already decoded) update re-encoded so that it decodes to exactly the same values. */
  private wire(clock: number, update: Float32Array): WireUpdate {
    const e = encodeExact(update, this.compression);
    return { clock, encoding: e.encoding, buffer: e.payload.buffer };
  }

  /** The coordinator's stable point (see Replica.setStable). */
  setStable(stable: number): void {
    this.replica?.setStable(stable);
  }

  /**
   * Updates of cut workers this replica lacks: ask peers again every 1.5 s;
   * after 5 s without them, report them unavailable so the cut is lowered.
   */
  private chaseLacking(r: Replica, cb: WorkerCallbacks): void {
    const lack = r.lacking();
    const now = performance.now();
    if (lack.length === 0) {
      this.lackSince = 0;
      return;
    }
    const key = lack.map(([id, c]) => `${id}:${c}`).join(",");
    if (this.lackSince === 0 || key !== this.lackKey) {
      this.lackSince = now;
      this.lackAsked = now;
      this.lackKey = key;
      for (const [id, c] of lack) cb.missing(id, c - 1);
    } else if (now - this.lackSince > 5000) {
      for (const [id, c] of lack) cb.unavailable(id, c);
      this.lackSince = now;
    } else if (now - this.lackAsked > 1500) {
      this.lackAsked = now;
      for (const [id, c] of lack) cb.missing(id, c - 1);
    }
  }

  /** V[id] of this replica (0 before it is ready). */
  vectorOf(id: string): number {
    return this.ready && this.replica ? this.replica.vector(id) : 0;
  }

  /**
   * Use at most `share` (0 < share <= 1) of the time: after each step the
   * worker idles `stepMs * (1/share - 1)`.
   */
  setThrottle(share: number): void {
    this.throttle = Math.min(1, Math.max(0.05, Number.isFinite(share) ? share : 1));
  }

  /** Work sizing (coordinator/sizing.ts): use `batch` rows per step from the next step on. */
  setBatch(batch: number): void {
    if (Number.isInteger(batch) && batch >= 1 && batch <= 4096) this.sizedBatch = batch;
  }

  setPaused(p: boolean): void {
    this.paused = p;
    this.poke();
  }

  finish(): void {
    this.finishing = true;
    this.poke();
  }

  drain(target: Record<string, number>): void {
    this.drainTarget = target;
    this.poke();
  }

  /** Report (at most every REPORT_EVERY_MS unless `force`d); the worker's time goes to `state`'s phase from now on either way. */
  private report(state: WorkerReport["state"], waitingOn: string[] = [], force = false): void {
    this.enter(PHASE_OF[state]);
    const now = performance.now();
    if (!force && now - this.lastReport < REPORT_EVERY_MS) return;
    this.lastReport = now;
    if (this.busySteps > 0) {
      this.lastStepMs = this.busyMs / this.busySteps;
      this.lastComputeMs = this.computeSum / this.busySteps;
      this.computeSum = 0;
      this.busyMs = 0;
      this.busySteps = 0;
    }
    const r = this.replica;
    this.cb?.report({
      clock: r?.clock ?? 0,
      minApplied: r?.minActive() ?? 0,
      loss: this.lastLoss,
      stepMs: this.lastStepMs,
      computeMs: this.lastComputeMs,
      batch: this.sizedBatch ?? this.welcome?.job.batch ?? 0,
      examples: this.examples,
      epochProgress: this.sampler.progress,
      shardsLoaded: this.shards.size,
      waitingOn,
      state,
      stalenessHist: this.stalenessHist,
      waitMs: this.waitMs,
      phaseMs: this.phaseTimes(),
      shardsDone: this.sampler.takeCompleted(),
      maxLead: this.maxLead,
    });
    this.stalenessHist = new Array<number>(STALENESS_BUCKETS).fill(0);
  }

  private async loop(gen: number): Promise<void> {
    const job = this.job;
    const welcome = this.welcome;
    const backend = this.backend;
    const cb = this.cb;
    if (!job || !welcome || !backend || !cb) return;
    const live = (): boolean => this.generation === gen;
    const maxClock = welcome.job.maxClock;
    // Anti-entropy in the staleness gate: an update lost on the way (or sent before a link was open)
    // is asked for again, from every peer that may retain it, after 1.5 s in which none came.
    const gateAsks = new AskWhenStalled(GATE_ASK_MS, GATE_ASK_MS);
    while (live()) {
      const r = this.replica;
      if (!r) return;
      if (this.ready) this.chaseLacking(r, cb);
      if (this.finishing || (maxClock > 0 && r.clock >= maxClock) || this.viewState === "done") break;
      if (!this.ready) {
        this.report("loading");
        await this.waitForChange(250);
        continue;
      }
      if (this.syncing) {
        // Snapshot in, data in: ask to enter the gate; the view that clears
        // `syncing` also moves this worker's start clock up to the others'.
        if (!this.readySent && this.sampler.examples > 0) {
          this.readySent = true;
          this.readyAt = performance.now();
          cb.ready();
        }
        this.report("loading");
        await this.waitForChange(250);
        continue;
      }
      if (this.paused || this.viewState === "paused" || this.viewState === "waiting") {
        this.report("paused");
        await this.waitForChange(500);
        continue;
      }
      if (!r.canStep()) {
        const t0 = performance.now();
        const waitingOn = r.blockers();
        this.report("waiting", waitingOn);
        if (gateAsks.due(waitingOn.reduce((x, id) => x + r.vector(id), 0), t0)) for (const id of waitingOn) cb.missing(id, r.vector(id));
        await this.waitForChange(200);
        this.waitMs += performance.now() - t0;
        continue;
      }
      gateAsks.reset();
      const rows = this.sizedBatch ?? welcome.job.batch;
      const batch = this.sampler.nextBatch(rows, job.inputDim);
      if (!batch) {
        this.report("loading");
        await this.waitForChange(250);
        continue;
      }
      this.maxLead = Math.max(this.maxLead, r.clock + 1 - r.gateMin());
      // A sized batch scales the learning rate by its share of the job's batch:
      // a clock's updates add up to about what equal batches would give.
      // A job with a decay steps smaller in each later pass over this worker's shards.
      // With `lrScaling`, the rate also follows the number of workers whose updates a clock adds up.
      const lr =
        (welcome.job.learningRate * (batch.size / welcome.job.batch) * lrScale(welcome.job.lrScaling ?? "sum", this.activeWorkers)) /
        (1 + (job.lrDecay ?? 0) * this.sampler.passes);
      this.enter("stepping");
      const t0 = performance.now();
      // One update buffer per job, written by every step (the update is
      // copied by the error feedback below, never kept).
      if (this.stepBuffer?.length !== job.parameters) this.stepBuffer = new Float32Array(job.parameters);
      const stepBuffer = this.stepBuffer;
      const { update, loss } = await this.exclusive(() => job.step(backend, r.params, batch, lr, this.optimizer ?? job.optimizer, stepBuffer));
      const computeMs = performance.now() - t0;
      this.logGpuEvents(cb);
      if (!live()) return;
      if (!Number.isFinite(loss) || !update.every(Number.isFinite)) {
        cb.log("the step produced non-finite numbers; skipping it");
        continue;
      }
      // The unslowed step time "as measured at join": the fastest of the first
      // three steps (the very first one also compiles pipelines and warms up).
      if (this.baseSamples.length < 3) {
        this.baseSamples.push(computeMs);
        this.baseStepMs = Math.min(...this.baseSamples);
      }
      // Error feedback: what is applied here and sent is the decoded update
      // (every replica applies the same values); the rest stays in the residual.
      const { encoded, decoded } = (this.feedback ?? new ErrorFeedback(this.compression, update.length)).encode(update);
      const clock = r.applyOwn(decoded);
      this.examples += batch.size;
      this.lastLoss = loss;
      const wire = encoded.payload.buffer;
      cb.update(clock, encoded.encoding, Comlink.transfer(wire, [wire]));
      if (this.evaluator === welcome.workerId && clock % welcome.job.evalEvery === 0) {
        const p = r.model().slice().buffer;
        cb.model(clock, Comlink.transfer(p, [p]));
      }
      // ?steptime=MS (at least MS × slowdown per step), ?slowdown=F, the throttle: client/pace.ts.
      const idle = idleAfterStep(this.pace, performance.now() - t0, computeMs, this.baseStepMs, this.throttle);
      // Always yield a macrotask: comlink calls (pause, views, peers' updates)
      // and fetches are handled between steps even when a step never awaited
      // anything (CPU backends settle in microtasks only).
      if (idle > 0) await sleep(idle);
      else await yieldToEventLoop();
      // The step time the coordinator compares across workers: what this
      // worker needs per step, gate waiting excluded, averaged over the steps
      // since the last report.
      this.busyMs += performance.now() - t0;
      this.computeSum += computeMs / this.throttle;
      this.busySteps++;
      this.report("training", [], maxClock > 0 && clock >= maxClock);
    }
    if (!live()) return;
    const r = this.replica;
    if (!r) return;
    this.report("finished", [], true);
    cb.final(r.clock);
    // Drain: wait until every worker's final updates are applied here. What
    // lacks is asked for again DRAIN_ASK_MS after the target came if nothing
    // came meanwhile, then after every 2 s in which nothing came (the
    // volunteers of an ended job wait for this to move on).
    const drainAsks = new AskWhenStalled(DRAIN_ASK_MS, DRAIN_ASK_AGAIN_MS);
    for (;;) {
      if (!live()) return;
      const target = this.drainTarget;
      if (target && r.reached(target)) {
        // Robust aggregation: the clocks not finalized yet (workers stopped at
        // different clocks) are aggregated from what is held, the same everywhere now.
        r.finalizeAll();
        break;
      }
      this.chaseLacking(r, cb);
      // Throttled like every report: the page's phase counters keep flowing while it drains.
      this.report("finished");
      if (target && drainAsks.due(Object.keys(target).reduce((x, id) => x + r.vector(id), 0), performance.now())) {
        for (const [id, c] of Object.entries(target)) if (r.vector(id) < c) cb.missing(id, r.vector(id));
      }
      await this.waitForChange(200);
    }
    if (this.evaluator === welcome.workerId) {
      const p = r.model().slice().buffer;
      cb.model(r.clock, Comlink.transfer(p, [p]));
    }
    cb.digest(r.digest(), r.vectorClock());
    this.report("drained", [], true);
  }
}

const api = new TrainingWorker();
export type TrainingWorkerApi = TrainingWorker;
Comlink.expose(api);
