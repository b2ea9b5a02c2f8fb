/**
 * Job `mf` as the coordinator runs it: block-parallel matrix factorization
 * over volunteers (model parallelism). The server picks this runner instead
 * of JobRun when `--job mf`.
 *
 * - Membership: pages join over /ws like for every job; each gets row blocks
 *   from the schedule (schedule.ts) and an `mf-step` per sub-epoch naming its
 *   blocks, where U_k and V_b come from (its own memory, a peer, or the
 *   checkpoint at /api/mf/blocks/…) and to whom V_b goes next.
 * - Checkpoints: a worker uploads U_k and V_b (binary, client/mf/wire.ts) and
 *   then reports `mf-done`; both are committed together, so the checkpoints
 *   always hold every block at the last barrier or one sub-epoch past it.
 * - Faults: a worker that closes its socket, leaves, is dropped or is silent
 *   for 5 s loses its row blocks to the others (schedule repair); the new owner
 *   starts from the checkpoint. Nothing else waits for it.
 * - Evaluation: at each barrier the test RMSE of the checkpointed model on the
 *   held-out ratings; the job is done at `target × noise` or after `maxEpochs`.
 * - Durability: at each barrier every block is at the new sub-epoch, so the
 *   whole model (U then V) is written to the state directory as a checkpoint
 *   (coordinator/state.ts: atomic, fsynced, the previous one kept), with the
 *   RMSE and loss in the log. A coordinator restarted on the same directory
 *   (`mfStateKey` names the problem) resumes at that barrier: every block from
 *   the checkpoint, the sub-epoch, the series and the worker numbering; pages
 *   join again and fetch their blocks from it. Work of the interrupted
 *   sub-epoch is redone; no factor is lost.
 */
import { randomBytes } from "node:crypto";
import { issuePeerIdentity, presentsIdentity } from "../peer-ids.ts";
import type { Express } from "express";
import { blockRange, colBlockFloats, generateAll, learningRate, modelFloats, rowBlockFloats, type Ratings } from "../../client/mf/problem.ts";
import { decodeBlock, encodeBlock, type FactorBlock } from "../../client/mf/wire.ts";
import {
  encodeModelUpload,
  type ClientMessage,
  type Consistency,
  type DropReason,
  type JoinMessage,
  type MfDoneMessage,
  type MfStepMessage,
  type ServerMessage,
} from "../protocol.ts";
import { compareWorkerIds } from "../ssp.ts";
import type { JobStore } from "../state.ts";
import type { ResumeState } from "../resume.ts";
import type { MfConfig } from "../../client/mf/problem.ts";
import { Checkpoints } from "./checkpoints.ts";
import type { MfRunConfig } from "./config.ts";
import { addWorker, blocksOf, colFor, createSchedule, markDone, rebalance, removeWorker, rowFor, tasks, type Schedule } from "./schedule.ts";
import { testRmse } from "./sim.ts";

export interface MfRunOptions {
  readonly config: MfRunConfig;
  readonly minWorkers: number;
  readonly store: JobStore | null;
  /** State read back from the store (openJobState with `mfStateKey`): resume at its checkpoint. */
  readonly resume?: ResumeState;
  readonly now?: () => number;
  readonly log?: (line: string) => void;
}

type WorkerState = "active" | "left" | "dropped";

interface MfWorker {
  readonly id: string;
  readonly peerId: string;
  readonly peerToken: string;
  readonly credential: string;
  readonly name: string;
  readonly backend: "webgpu" | "cpu";
  readonly kernel: string;
  readonly adapter: string;
  readonly send: (m: ServerMessage) => void;
  readonly joinedAt: number;
  state: WorkerState;
  lastSeen: number;
  blocksDone: number;
  ratings: number;
  stepMs: number;
  modelBytes: number;
  peakModelBytes: number;
  bytesIn: number;
  bytesOut: number;
  peers: number;
  vFrom: { peer: number; local: number; checkpoint: number };
  /** Uploaded blocks of unfinished tasks, committed at `mf-done`, by row block. */
  pending: Map<number, { u?: FactorBlock; v?: FactorBlock }>;
  dropReason: string | null;
}

const SILENT_MS = 5000;

/**
 * The name job mf's state is kept under: the problem itself, so a restart with
 * other sizes or another seed is refused instead of resuming the wrong factors.
 */
export function mfStateKey(p: MfConfig): string {
  return `mf ${p.users}x${p.items} r${p.rank} d${p.density} n${p.noise} K${p.blocks} l${p.lambda} s${p.seed}`.slice(0, 64);
}
const MAX_SERIES = 2000;
const MAX_EVENTS = 500;

export class MfRun {
  readonly job: { readonly name: string; readonly parameters: number };
  readonly consistency: Consistency = { mode: "bsp", staleness: 0 };
  state: "waiting" | "running" | "paused" | "done" | "failed";
  private readonly cfg: MfRunConfig;
  private readonly now: () => number;
  private readonly ck: Checkpoints;
  private readonly sched: Schedule;
  private readonly test: Ratings;
  private readonly workers = new Map<string, MfWorker>();
  private nextWorker = 1;
  private readonly session = randomBytes(4).toString("hex");
  private epoch = 0;
  /** Tasks of the current sub-epoch already sent: row block → worker and where its V goes. */
  private readonly sent = new Map<number, { worker: string; sendTo: string | null }>();
  /** Who holds U_k at its checkpoint version (the worker that committed it). */
  private readonly uHolder: (string | null)[];
  /** Column block b at its checkpoint version: committed by `from`, handed to `to`. */
  private readonly vSent: ({ from: string; to: string | null } | null)[];
  private readonly testSeries: [number, number][] = [];
  private readonly trainLoss: [number, number][] = [];
  private trainSq = { sq: 0, n: 0 };
  private readonly events: { t: number; kind: string; worker?: string; detail?: string }[] = [];
  private served = { shards: 0, bytes: 0 };
  private checkpointBytesIn = 0;
  private ratingsDone = 0;
  private startedAt: number | null = null;
  private doneAt: number | null = null;
  private readonly incarnation: number;
  private readonly resumedFrom: { clock: number; file: string } | null;
  private lastCheckpoint: { clock: number; t: number } | null = null;

  constructor(private readonly opts: MfRunOptions) {
    this.cfg = opts.config;
    const p = this.cfg.problem;
    this.job = { name: "mf", parameters: modelFloats(p) };
    this.now = opts.now ?? Date.now;
    this.ck = new Checkpoints(p);
    this.sched = createSchedule(p.blocks);
    this.uHolder = new Array<string | null>(p.blocks).fill(null);
    this.vSent = new Array<{ from: string; to: string | null } | null>(p.blocks).fill(null);
    this.state = "waiting";
    // The held-out ratings (the training ones are not kept).
    this.test = generateAll(p, false).test;
    const r = opts.resume;
    this.incarnation = r?.incarnation ?? 1;
    this.resumedFrom = r?.checkpoint ? { clock: r.checkpoint.clock, file: r.checkpoint.file } : null;
    if (r) {
      this.nextWorker = r.nextWorker;
      this.events.push(...r.events);
      if (r.checkpoint) {
        this.ck.restore(r.checkpoint.clock, r.checkpoint.params);
        this.sched.t = r.checkpoint.clock;
        this.epoch = r.checkpoint.clock;
        this.ratingsDone = r.checkpoint.examples;
        this.testSeries.push(...r.testSeries);
        this.trainLoss.push(...r.trainLoss);
      }
    }
    opts.store?.append({ k: "start", t: this.now(), incarnation: this.incarnation, job: mfStateKey(p), parameters: this.job.parameters, seed: p.seed });
    if (this.resumedFrom) this.event("resumed", undefined, `from the checkpoint at sub-epoch ${this.resumedFrom.clock} (${this.resumedFrom.file}), incarnation ${this.incarnation}`);
  }

  private log(line: string): void {
    this.opts.log?.(line);
  }

  private event(kind: string, worker?: string, detail?: string): void {
    const e = { t: this.now(), kind, ...(worker ? { worker } : {}), ...(detail ? { detail } : {}) };
    this.events.push(e);
    if (this.events.length > MAX_EVENTS) this.events.shift();
    this.opts.store?.append({ k: "event", ...e });
    this.log(`${kind}${worker ? ` ${worker}` : ""}${detail ? `: ${detail}` : ""}`);
  }

  private active(): MfWorker[] {
    return [...this.workers.values()].filter((w) => w.state === "active").sort((a, b) => compareWorkerIds(a.id, b.id));
  }

  // ---------------------------------------------------------------- membership

  join(msg: JoinMessage, send: (m: ServerMessage) => void): { ok: true; id: string } | { ok: false; reason: string } {
    if (this.state === "done" || this.state === "failed") return { ok: false, reason: "the job is over" };
    const id = `w${this.nextWorker++}`;
    const now = this.now();
    const w: MfWorker = {
      id,
      ...issuePeerIdentity(this.session, id),
      credential: randomBytes(16).toString("hex"),
      name: msg.name ?? "",
      backend: msg.backend,
      kernel: msg.kernel,
      adapter: msg.adapter,
      send,
      joinedAt: now,
      state: "active",
      lastSeen: now,
      blocksDone: 0,
      ratings: 0,
      stepMs: 0,
      modelBytes: 0,
      peakModelBytes: 0,
      bytesIn: 0,
      bytesOut: 0,
      peers: 0,
      vFrom: { peer: 0, local: 0, checkpoint: 0 },
      pending: new Map(),
      dropReason: null,
    };
    this.workers.set(id, w);
    const p = this.cfg.problem;
    send({
      type: "welcome",
      workerId: id,
      peerId: w.peerId,
      peerToken: w.peerToken,
      credential: w.credential,
      job: { name: "mf", parameters: this.job.parameters, batch: 1, learningRate: p.lr, seed: p.seed, maxClock: 0, evalEvery: 1, compression: "none" },
      iceServers: [],
      startClock: this.sched.t,
      needsSnapshot: false,
      mf: p,
    });
    const moved = addWorker(this.sched, id);
    this.event("joined", id, moved.length > 0 ? `row blocks ${moved.map((m) => m.block).join(", ")}` : "standing by");
    if (this.state === "waiting" && this.active().length >= this.opts.minWorkers) {
      rebalance(this.sched);
      this.state = "running";
      this.startedAt = now;
      this.event("started", undefined, `${this.active().length} workers, ${p.blocks} blocks`);
    }
    this.dispatch();
    return { ok: true, id };
  }

  isLive(id: string): boolean {
    return this.workers.get(id)?.state === "active";
  }

  ownsPeerId(peerId: string, token: string): boolean {
    for (const w of this.workers.values()) if (w.state === "active" && presentsIdentity(w, peerId, token)) return true;
    return false;
  }

  remove(id: string, state: "left" | "dropped", why: string): void {
    const w = this.workers.get(id);
    if (!w || w.state !== "active") return;
    w.state = state;
    w.pending.clear();
    w.dropReason = why;
    const moved = removeWorker(this.sched, id);
    for (const [k, s] of this.sent) if (s.worker === id) this.sent.delete(k);
    this.event(state, id, `${why}${moved.length > 0 ? `; row blocks ${moved.map((m) => `${m.block} → ${m.worker}`).join(", ")} from the checkpoint` : ""}`);
    this.dispatch();
  }

  drop(id: string, reason: DropReason, detail: string, rejoinAfterMs: number | null): boolean {
    const w = this.workers.get(id);
    if (!w || w.state !== "active") return false;
    w.send({ type: "dropped", reason, detail, rejoinAfterMs });
    this.remove(id, "dropped", detail);
    return true;
  }

  setConsistency(_c: Consistency): void {
    // The rotation schedule is synchronous by construction: one sub-epoch at a time.
  }

  control(action: "pause" | "resume" | "stop"): void {
    if (action === "pause" && this.state === "running") {
      this.state = "paused";
      this.event("paused");
    } else if (action === "resume" && this.state === "paused") {
      this.state = "running";
      this.event("resumed");
      this.dispatch();
    } else if (action === "stop") {
      this.finish("stopped by the organizer");
    }
  }

  tick(): void {
    const now = this.now();
    for (const w of this.active()) if (now - w.lastSeen > SILENT_MS) this.remove(w.id, "left", `silent for ${SILENT_MS / 1000} s`);
  }

  // ---------------------------------------------------------------- the schedule

  /** Send every task of the current sub-epoch that its owner has not been given yet. */
  private dispatch(): void {
    if (this.state !== "running") return;
    const s = this.sched;
    const p = this.cfg.problem;
    const byWorker = new Map<string, MfStepMessage["tasks"][number][]>();
    for (const task of tasks(s)) {
      if (s.done.has(task.row) || this.sent.get(task.row)?.worker === task.worker) continue;
      const sendTo = s.owners[rowFor(p.blocks, task.col, s.t + 1)] ?? null;
      const v = this.vSent[task.col];
      const t = {
        row: task.row,
        col: task.col,
        u: this.uHolder[task.row] === task.worker && this.ck.version("u", task.row) === s.t ? ("local" as const) : ("checkpoint" as const),
        vFrom: v && v.to === task.worker ? v.from : null,
        sendTo,
      };
      this.sent.set(task.row, { worker: task.worker, sendTo });
      const list = byWorker.get(task.worker) ?? [];
      list.push(t);
      byWorker.set(task.worker, list);
    }
    if (byWorker.size === 0) return;
    const peers = this.active().map((w) => ({ id: w.id, peerId: w.peerId }));
    const lr = learningRate(p, s.t);
    for (const [id, list] of byWorker) this.workers.get(id)?.send({ type: "mf-step", t: s.t, lr, tasks: list, rows: blocksOf(s, id), peers });
  }

  private floatsOf = (kind: "u" | "v", index: number): number | undefined =>
    index < this.cfg.problem.blocks ? (kind === "u" ? rowBlockFloats(this.cfg.problem, index) : colBlockFloats(this.cfg.problem, index)) : undefined;

  /** A checkpoint upload: U_k or V_b of a task the worker holds in the current sub-epoch. */
  onBinary(id: string, bytes: Uint8Array): string | null {
    const w = this.workers.get(id);
    if (!w || w.state !== "active") return "not an active worker";
    w.lastSeen = this.now();
    const d = decodeBlock(bytes, this.floatsOf);
    if (!d.ok) return d.reason;
    const b = d.value;
    const s = this.sched;
    const p = this.cfg.problem;
    if (b.version !== s.t + 1) return `block ${b.kind}${b.index} version ${b.version} is not sub-epoch ${s.t} + 1`;
    const row = b.kind === "u" ? b.index : rowFor(p.blocks, b.index, s.t);
    if (s.owners[row] !== id || s.done.has(row)) return `row block ${row} is not ${id}'s open task`;
    const entry = w.pending.get(row) ?? {};
    entry[b.kind] = b;
    w.pending.set(row, entry);
    this.checkpointBytesIn += bytes.byteLength;
    return null;
  }

  onMessage(id: string, msg: ClientMessage): void {
    const w = this.workers.get(id);
    if (!w || w.state !== "active") return;
    w.lastSeen = this.now();
    if (msg.type === "leave") {
      this.remove(id, "left", "left the job");
      return;
    }
    if (msg.type === "paused" && msg.paused) {
      this.drop(id, "paused", "paused by its volunteer", null);
      return;
    }
    if (msg.type === "mf-done") this.onDone(w, msg);
  }

  private onDone(w: MfWorker, msg: MfDoneMessage): void {
    const s = this.sched;
    const p = this.cfg.problem;
    w.modelBytes = msg.modelBytes;
    w.peakModelBytes = Math.max(w.peakModelBytes, msg.peakModelBytes);
    w.bytesIn = msg.bytesIn;
    w.bytesOut = msg.bytesOut;
    w.peers = msg.peers;
    if (msg.t !== s.t || s.owners[msg.row] !== w.id || s.done.has(msg.row) || msg.col !== colFor(p.blocks, msg.row, s.t)) return;
    const up = w.pending.get(msg.row);
    if (!up?.u || !up.v) {
      this.log(`${w.id} reported block (${msg.row}, ${msg.col}) done without uploading both factors`);
      return;
    }
    const eu = this.ck.put("u", msg.row, s.t + 1, up.u.data);
    const ev = eu ?? this.ck.put("v", msg.col, s.t + 1, up.v.data);
    w.pending.delete(msg.row);
    if (eu || ev) {
      this.log(`checkpoint of ${w.id}'s block (${msg.row}, ${msg.col}) refused: ${eu ?? ev}`);
      return;
    }
    this.uHolder[msg.row] = w.id;
    this.vSent[msg.col] = { from: w.id, to: this.sent.get(msg.row)?.sendTo ?? null };
    w.blocksDone++;
    w.ratings += msg.ratings;
    w.vFrom[msg.vFrom]++;
    w.stepMs = w.stepMs === 0 ? msg.ms : 0.7 * w.stepMs + 0.3 * msg.ms;
    this.ratingsDone += msg.ratings;
    this.trainSq.sq += msg.sq;
    this.trainSq.n += msg.ratings;
    const r = markDone(s, w.id, msg.row);
    if (!r.advanced) return;
    this.sent.clear();
    this.epoch++;
    this.trainLoss.push([s.t, Math.sqrt(this.trainSq.sq / Math.max(1, this.trainSq.n))]);
    this.trainSq = { sq: 0, n: 0 };
    if (this.trainLoss.length > MAX_SERIES) this.trainLoss.shift();
    const rmse = testRmse(p, this.ck, this.test);
    this.testSeries.push([s.t, rmse]);
    if (this.testSeries.length > MAX_SERIES) this.testSeries.shift();
    this.persist(s.t, rmse);
    for (const m of r.moved) this.event("rebalanced", m.worker, `row block ${m.block}`);
    if (rmse <= this.cfg.target * p.noise) {
      this.finish(`target reached: test RMSE ${rmse.toFixed(4)} ≤ ${this.cfg.target} × noise ${p.noise}`);
    } else if (s.t >= this.cfg.maxEpochs * p.blocks) {
      this.finish(`${this.cfg.maxEpochs} epochs done (test RMSE ${rmse.toFixed(4)})`);
    } else {
      this.dispatch();
    }
  }

  /** The barrier of sub-epoch `t`: the whole model to the state directory, then its log records. */
  private persist(t: number, rmse: number): void {
    const store = this.opts.store;
    if (!store) return;
    store.append({ k: "loss", c: t, v: this.trainLoss.at(-1)?.[1] ?? 0 });
    store.append({ k: "test", c: t, v: rmse });
    const u = this.ck.assembled("u");
    const v = this.ck.assembled("v");
    const all = new Float32Array(u.length + v.length);
    all.set(u);
    all.set(v, u.length);
    const now = this.now();
    const ok = store.checkpoint(t, all, { k: "ckpt", t: now, clock: t, incarnation: this.incarnation, examples: this.ratingsDone, coverage: [], epochsDone: [] });
    if (ok) this.lastCheckpoint = { clock: t, t: now };
  }

  private finish(reason: string): void {
    if (this.state === "done") return;
    this.state = "done";
    this.doneAt = this.now();
    // Nothing to drain: the checkpoints are the model.
    this.event("finishing", undefined, reason);
    this.event("done", undefined, reason);
    for (const w of this.active()) w.send({ type: "finish", reason });
  }

  // ---------------------------------------------------------------- HTTP

  /** GET /api/mf/blocks/u|v/INDEX: a checkpointed block (client/mf/wire.ts layout). */
  mount(app: Express): void {
    app.get("/api/mf/blocks/:kind/:index", (req, res) => {
      const body = this.block(req.params["kind"] ?? "", Number(req.params["index"]));
      if (!body) {
        res.status(404).json({ error: "no such block" });
        return;
      }
      res.set({ "Content-Type": "application/octet-stream", "Cache-Control": "no-store" }).send(Buffer.from(body.buffer, body.byteOffset, body.byteLength));
    });
  }

  /** The checkpoint of block `kind` `index` as bytes (client/mf/wire.ts), or null. */
  block(kind: string, index: number): Uint8Array<ArrayBuffer> | null {
    if ((kind !== "u" && kind !== "v") || !Number.isInteger(index) || index < 0 || index >= this.cfg.problem.blocks) return null;
    const b = this.ck.peek(kind, index)!;
    const body = encodeBlock({ kind, index, version: b.version, data: b.data });
    this.served.bytes += body.byteLength;
    return body;
  }

  shard(_id: number): undefined {
    return undefined;
  }

  countServed(bytes: number): void {
    this.served.bytes += bytes;
  }

  /** /api/model: U (users × rank) then V (items × rank) of the checkpoints, after the GMDL header. */
  model(): Uint8Array | null {
    const u = this.ck.assembled("u");
    const v = this.ck.assembled("v");
    const all = new Float32Array(u.length + v.length);
    all.set(u);
    all.set(v, u.length);
    return new Uint8Array(encodeModelUpload(this.sched.t, all));
  }

  status(): Record<string, unknown> {
    const now = this.now();
    const p = this.cfg.problem;
    const s = this.sched;
    const act = this.active();
    let maxRow = 0;
    let maxCol = 0;
    for (let k = 0; k < p.blocks; k++) {
      maxRow = Math.max(maxRow, rowBlockFloats(p, k));
      maxCol = Math.max(maxCol, colBlockFloats(p, k));
    }
    const whole = modelFloats(p) * 4;
    const last = this.testSeries.at(-1)?.[1] ?? null;
    return {
      job: { name: "mf", parameters: this.job.parameters, state: this.state },
      consistency: this.consistency,
      view: { epoch: this.epoch, active: act.map((w) => w.id) },
      clock: { min: s.t, max: s.t },
      examples: this.ratingsDone,
      served: this.served,
      target: { rmse: this.cfg.target * p.noise, maxEpochs: this.cfg.maxEpochs },
      mf: {
        problem: p,
        subEpoch: s.t,
        epoch: s.t / p.blocks,
        owners: s.owners,
        done: [...s.done].sort((a, b) => a - b),
        wholeModelBytes: whole,
        rowBlockBytes: maxRow * 4,
        colBlockBytes: maxCol * 4,
        /** What one worker may hold: 1/K of the whole model plus one column block. */
        boundBytes: Math.max(Math.ceil(whole / p.blocks), (maxRow + maxCol) * 4) + maxCol * 4,
        floor: p.noise,
        testRmse: last,
        rmseOverFloor: last === null ? null : last / p.noise,
        trainRatings: this.ratingsDone,
        testRatings: this.test.vals.length,
        checkpointBytesIn: this.checkpointBytesIn,
        seconds: this.startedAt === null ? 0 : ((this.doneAt ?? now) - this.startedAt) / 1000,
      },
      workers: [...this.workers.values()]
        .sort((a, b) => compareWorkerIds(a.id, b.id))
        .map((w) => ({
          id: w.id,
          state: w.state,
          clock: w.blocksDone,
          rowBlocks: w.state === "active" ? blocksOf(s, w.id) : [],
          rowRange: w.state === "active" ? blocksOf(s, w.id).map((k) => blockRange(p.users, p.blocks, k)) : [],
          modelBytes: w.modelBytes,
          peakModelBytes: w.peakModelBytes,
          stepsPerSec: 0,
          batch: 0,
          examplesPerSec: 0,
          examples: w.ratings,
          lastSeenMs: now - w.lastSeen,
          backend: w.backend,
          kernel: w.kernel,
          adapter: w.adapter,
          name: w.name,
          paused: false,
          peers: w.peers,
          bytesIn: w.bytesIn,
          bytesOut: w.bytesOut,
          vFrom: w.vFrom,
          shards: 0,
          digest: null,
          stalenessHist: [],
          waitMs: 0,
          stepMs: Math.round(w.stepMs * 10) / 10,
          startClock: 0,
          syncing: false,
          lineage: w.id,
          dropReason: w.dropReason,
        })),
      metrics: { trainLoss: this.trainLoss, test: { name: "rmse", series: this.testSeries } },
      events: this.events,
      durable: {
        incarnation: this.incarnation,
        resumedFrom: this.resumedFrom,
        checkpoint: this.lastCheckpoint,
        healthy: this.opts.store?.healthy ?? false,
      },
    };
  }
}
