/**
 * Every JSON message between a volunteer page and the coordinator (control
 * WebSocket at /ws), as TypeScript types and as runtime schemas (zod).
 *
 * Nothing that crosses the socket is used before it passed `parseClientMessage`
 * or `parseServerMessage`. Sizes are capped (strings, arrays) and numbers must be
 * finite, so a malformed or hostile message is rejected as data, never thrown.
 *
 * Tensors never travel here as JSON: the page uploads its replica for
 * evaluation as a binary WebSocket message (see `encodeModelUpload`), and
 * updates between peers travel as binary frames (client/peer/frames.ts).
 */
import { z } from "zod";
import { parseCompression } from "../client/compress.ts";
import { LR_SCALINGS } from "../client/jobs/optimizers.ts";
import { parseAggregation, parseAggregationRule, parseClip } from "../client/aggregate.ts";

/** Largest control message we accept, in bytes (JSON text). */
export const MAX_CONTROL_MESSAGE_BYTES = 64 * 1024;

/**
 * `auto` is SSP whose staleness the coordinator adjusts from the workers'
 * measured waiting; workers treat it exactly like `ssp` with the view's `s`.
 */
export const CONSISTENCY_MODES = ["ssp", "bsp", "asp", "auto"] as const;
export type ConsistencyMode = (typeof CONSISTENCY_MODES)[number];

const finite = z.number().finite();
/** Buckets of the staleness histogram in clock reports. */
export const STALENESS_BUCKETS = 16;
const nonNegInt = z.number().int().min(0).max(2 ** 31);
const shortText = z.string().max(200);
const workerId = z.string().regex(/^w[0-9]{1,9}$/);
/** A job's id on a grid of several jobs (`--jobs`, `POST /api/jobs`). */
export const gridJobId = z.string().regex(/^[a-z0-9][a-z0-9_-]{0,31}$/);
/** stun:, stuns:, turn: or turns: then a host (name, IPv4 or [IPv6]), an optional port and ?transport=udp|tcp. */
const iceUrl = z
  .string()
  .max(300)
  .regex(/^(stuns?|turns?):(\[[0-9a-fA-F:.]+\]|[A-Za-z0-9.-]+)(:[0-9]{1,5})?(\?transport=(udp|tcp))?$/);

export const consistencySchema = z.object({
  mode: z.enum(CONSISTENCY_MODES),
  staleness: z.number().int().min(0).max(1000),
});
export type Consistency = z.infer<typeof consistencySchema>;

export const digestSchema = z.object({
  sum: finite,
  l2: finite,
  proj: z.array(finite).max(64),
});
export type Digest = z.infer<typeof digestSchema>;

// ---------------------------------------------------------------- page → coordinator

export const joinSchema = z.object({
  type: z.literal("join"),
  name: shortText.optional(),
  backend: z.enum(["webgpu", "cpu"]),
  kernel: shortText,
  adapter: shortText,
  /** The credential of this page's earlier membership (rejoining after a drop or a reload). */
  rejoin: z.string().regex(/^[0-9a-f]{32}$/).optional(),
});

/**
 * What a page's trainer worker did with its time (client/worker.ts): stepping
 * (compute, apply, send; a paced page's stand-in for compute), in the
 * staleness gate waiting for peers, loading (snapshot, data, sync), paused,
 * draining (stopped, waiting for the last updates), idle (no membership).
 */
export const WORKER_PHASES = ["stepping", "gate", "loading", "paused", "draining", "idle"] as const;
export type WorkerPhase = (typeof WORKER_PHASES)[number];
const phaseTimesSchema = z.object(Object.fromEntries(WORKER_PHASES.map((p) => [p, finite.min(0)])) as Record<WorkerPhase, typeof finite>);
export type PhaseTimes = Record<WorkerPhase, number>;

export const clockReportSchema = z.object({
  type: z.literal("clock"),
  /** Iterations this worker has completed. */
  clock: nonNegInt,
  /** Smallest entry of its vector clock over the active workers. */
  minApplied: nonNegInt,
  loss: finite.min(0),
  stepMs: finite.min(0),
  /** Of `stepMs`, the time spent computing the step (the part that grows with the batch); work sizing. */
  computeMs: finite.min(0).optional(),
  batch: nonNegInt,
  examples: nonNegInt,
  bytesIn: nonNegInt.max(Number.MAX_SAFE_INTEGER),
  bytesOut: nonNegInt.max(Number.MAX_SAFE_INTEGER),
  peers: nonNegInt,
  /**
   * Staleness of the updates this replica applied since its last report:
   * entry k counts updates applied when they were k clocks behind the
   * replica's own clock (the last entry gathers k and more).
   */
  stalenessHist: z.array(nonNegInt).max(STALENESS_BUCKETS).optional(),
  /** Time spent blocked by the SSP gate since joining, ms. */
  waitMs: finite.min(0).optional(),
  /**
   * The page's trainer time by phase since it loaded, over every job it
   * worked for, ms (client/worker.ts `WorkerPhase`; utilization).
   */
  phaseMs: z
    .object({ stepping: finite.min(0), gate: finite.min(0), loading: finite.min(0), paused: finite.min(0), draining: finite.min(0), idle: finite.min(0) })
    .optional(),
  /** Shards whose every example this worker processed since its last report. */
  shardsDone: z.array(nonNegInt).max(10_000).optional(),
  /** Sequence number echoed in the `ack` (latency measurements). */
  seq: nonNegInt.optional(),
});

export const heartbeatSchema = z.object({ type: z.literal("heartbeat") });

/** The worker stopped stepping after `finish` and its last clock is `clock`. */
export const finalSchema = z.object({ type: z.literal("final"), clock: nonNegInt });

/** After `drain`: the digest of the replica once its vector clock reached the target. */
export const digestReportSchema = z.object({
  type: z.literal("digest"),
  digest: digestSchema,
  vector: z.record(workerId, nonNegInt),
});

export const leaveSchema = z.object({ type: z.literal("leave") });

/** A syncing joiner has its snapshot and data and can step. */
export const readySchema = z.object({ type: z.literal("ready") });

/**
 * The replica still lacks u(id, clock), at or below id's cut, and no peer sent
 * it: the coordinator lowers the cut below it so every replica can agree.
 */
export const missingSchema = z.object({ type: z.literal("missing"), id: workerId, clock: nonNegInt.min(1) });
/** The page missed a view epoch (a delta did not fit its view): send the whole view. */
export const viewRequestSchema = z.object({ type: z.literal("view-request") });
/** A peer link of this worker went silent or closed (client/peer/transport.ts); logged as an event. */
export const peerLostSchema = z.object({ type: z.literal("peer-lost"), peer: workerId, why: shortText });
export const pauseStateSchema = z.object({ type: z.literal("paused"), paused: z.boolean() });

/**
 * Job `mf`: row block `row` of sub-epoch `t` is trained; its U_row and V_col
 * were uploaded just before (binary, client/mf/wire.ts). The coordinator
 * commits both to its checkpoints and counts the block done.
 */
export const mfDoneSchema = z.object({
  type: z.literal("mf-done"),
  t: nonNegInt,
  row: nonNegInt.max(255),
  col: nonNegInt.max(255),
  /** Sum of squared training errors over the block's ratings, and their count. */
  sq: finite.min(0),
  ratings: nonNegInt,
  ms: finite.min(0),
  /** Factor bytes this worker holds now and at most so far (row blocks + column blocks). */
  modelBytes: nonNegInt.max(Number.MAX_SAFE_INTEGER),
  peakModelBytes: nonNegInt.max(Number.MAX_SAFE_INTEGER),
  bytesIn: nonNegInt.max(Number.MAX_SAFE_INTEGER),
  bytesOut: nonNegInt.max(Number.MAX_SAFE_INTEGER),
  peers: nonNegInt,
  /** Where V_col came from: a peer's frame, this worker's own memory, or the coordinator's checkpoint. */
  vFrom: z.enum(["peer", "local", "checkpoint"]),
});
export type MfDoneMessage = z.infer<typeof mfDoneSchema>;

/** A spot-check task's name (coordinator/spotcheck.ts). */
const spotTaskId = z.string().regex(/^s[0-9]{1,12}$/);

/** The update a spot-check task asked for (its digest), or why it could not be computed. */
export const spotResultSchema = z.object({
  type: z.literal("spot-result"),
  task: spotTaskId,
  digest: digestSchema.optional(),
  error: shortText.optional(),
});
export type SpotResultMessage = z.infer<typeof spotResultSchema>;

export const clientMessageSchema = z.discriminatedUnion("type", [
  mfDoneSchema,
  spotResultSchema,
  joinSchema,
  clockReportSchema,
  heartbeatSchema,
  finalSchema,
  digestReportSchema,
  leaveSchema,
  pauseStateSchema,
  missingSchema,
  readySchema,
  viewRequestSchema,
  peerLostSchema,
]);
export type ClientMessage = z.infer<typeof clientMessageSchema>;
export type JoinMessage = z.infer<typeof joinSchema>;
export type ClockReport = z.infer<typeof clockReportSchema>;

// ---------------------------------------------------------------- coordinator → page

export const jobSpecSchema = z.object({
  name: z.string().max(64),
  parameters: nonNegInt,
  batch: nonNegInt.min(1),
  learningRate: finite.positive(),
  /** The optimizer instead of the job's default (`--optimizer`). */
  optimizer: z.enum(["sgd", "momentum", "adam"]).optional(),
  /** The learning rate against the number of active workers (client/jobs/optimizers.ts `lrScale`); absent: "sum". */
  lrScaling: z.enum(LR_SCALINGS).optional(),
  seed: nonNegInt,
  /** Stop at this clock (0: no limit). */
  maxClock: nonNegInt,
  /** The evaluating worker uploads its replica every this many clocks. */
  evalEvery: nonNegInt.min(1),
  /** How updates are encoded (client/compress.ts), e.g. "topk:0.01+int8"; absent: "none". */
  compression: z.string().max(64).refine((s) => parseCompression(s).ok, "unknown compression").default("none"),
  /** How a clock's updates are combined (client/aggregate.ts): "mean" (absent), "trimmed:β", "median". */
  aggregation: z.string().max(32).refine((s) => parseAggregationRule(s).ok, "unknown aggregation").optional(),
  /** Norm clipping of a robust aggregation: "auto", "off" (absent), or an L2 bound. */
  clip: z.string().max(32).refine((s) => parseClip(s).ok, "bad clip").optional(),
}).refine((j) => parseAggregation(j.aggregation ?? "mean", j.clip ?? "off").ok, "clipping needs a robust aggregation");
export type JobSpec = z.infer<typeof jobSpecSchema>;

export const shardRefSchema = z.object({
  id: nonNegInt,
  /** Hex SHA-256 of the shard's bytes. */
  hash: z.string().regex(/^[0-9a-f]{64}$/),
  count: nonNegInt,
  bytes: nonNegInt,
});
export type ShardRef = z.infer<typeof shardRefSchema>;

export const viewMemberSchema = z.object({
  id: workerId,
  /** PeerJS id issued by the coordinator for this session. */
  peerId: z.string().max(100),
  /** Updates u(id, 1..startClock) are empty by definition (joined mid-job). */
  startClock: nonNegInt,
  /**
   * Joined mid-job and still loading its snapshot and data: it receives
   * updates but nobody's SSP gate waits for it. When it reports `ready` the
   * coordinator moves its startClock up to the view's minimum and clears this.
   */
  syncing: z.boolean().optional(),
});
export type ViewMember = z.infer<typeof viewMemberSchema>;

const cutSchema = z.object({ id: workerId, clock: nonNegInt });
const jobStateSchema = z.enum(["waiting", "running", "paused", "done", "failed"]);

export const viewSchema = z.object({
  type: z.literal("view"),
  epoch: nonNegInt,
  active: z.array(viewMemberSchema).max(10_000),
  /**
   * Cuts for workers that left or were dropped: every replica counts exactly
   * u(id, 1..clock) of that worker and ignores the rest.
   */
  cuts: z.array(cutSchema).max(100_000),
  consistency: consistencySchema,
  state: jobStateSchema,
  /** The worker that uploads its replica for evaluation. */
  evaluator: workerId.nullable(),
});
export type ViewMessage = z.infer<typeof viewSchema>;

/**
 * The view of `epoch` as a change to the view of `base` (coordinator/views.ts):
 * members added or changed (`upsert`), members gone (`remove`), cuts added or
 * lowered, and the job-wide fields in full. A page whose view is not `base`
 * ignores it and sends `view-request`.
 */
export const viewDeltaSchema = z.object({
  type: z.literal("view-delta"),
  epoch: nonNegInt,
  base: nonNegInt,
  upsert: z.array(viewMemberSchema).max(10_000),
  remove: z.array(workerId).max(10_000),
  cuts: z.array(cutSchema).max(100_000),
  consistency: consistencySchema,
  state: jobStateSchema,
  evaluator: workerId.nullable(),
});
export type ViewDeltaMessage = z.infer<typeof viewDeltaSchema>;
/** One STUN or TURN server as RTCPeerConnection takes it (`--ice-servers`). */
export const iceServerSchema = z.object({
  urls: z.union([iceUrl, z.array(iceUrl).min(1).max(8)]),
  username: z.string().min(1).max(200).optional(),
  credential: z.string().min(1).max(200).optional(),
});
export type IceServer = z.infer<typeof iceServerSchema>;

export const welcomeSchema = z.object({
  type: z.literal("welcome"),
  workerId,
  peerId: z.string().max(100),
  /** The secret that registers `peerId` with the signaling server (PeerJS's `token`); nobody else can claim the id. */
  peerToken: z.string().min(1).max(100),
  /** Session credential; later a resume or a second tab must present it. */
  credential: z.string().max(100),
  job: jobSpecSchema,
  iceServers: z.array(iceServerSchema).max(16),
  /** "relay": peers connect through the TURN servers only (`--ice-transport relay`). */
  iceTransportPolicy: z.enum(["all", "relay"]).optional(),
  /** Up to this many members the data plane is a full mesh, an overlay above (`--mesh-max`; client/peer/overlay.ts). */
  meshMax: nonNegInt.max(100_000).optional(),
  /** Clock this worker starts from (the view's minimum when joining mid-job). */
  startClock: nonNegInt,
  /** Whether the joiner must take a snapshot from a peer before stepping. */
  needsSnapshot: z.boolean(),
  /** Job `mf`: the problem, so the page generates its own ratings from the seed. */
  mf: z.lazy(() => mfProblemSchema).optional(),
  /**
   * The coordinator's run since its last restart (1 for a job never
   * restarted). Nothing from another incarnation is valid in this one.
   */
  incarnation: nonNegInt.optional(),
  /**
   * The job resumed after a coordinator restart and nobody has stepped since:
   * start from the checkpoint at GET /api/checkpoint, whose clock must be
   * `base.clock` (= startClock), instead of the job's initial parameters.
   */
  base: z.object({ clock: nonNegInt }).optional(),
  /**
   * On a grid of several jobs (coordinator/jobs.ts): the job this volunteer
   * was given and why. Its shards are under /data/JOB-ID/ and cached per job id.
   */
  grid: z.object({ job: gridJobId, reason: z.string().max(300) }).optional(),
});
export type WelcomeMessage = z.infer<typeof welcomeSchema>;

export const assignSchema = z.object({
  type: z.literal("assign"),
  shards: z.array(shardRefSchema).max(10_000),
});
export type AssignMessage = z.infer<typeof assignSchema>;

/**
 * The coordinator's answer to a clock report: the active clock range as it
 * stands after the report (the page shows its clock against the others').
 */
export const ackSchema = z.object({
  type: z.literal("ack"),
  seq: nonNegInt.optional(),
  min: nonNegInt,
  max: nonNegInt,
  active: nonNegInt,
  /** The stable point: every active replica reported holding u(j, 1..stable) for all j. */
  stable: nonNegInt,
  /** The minibatch this worker should use from now on (work sizing, coordinator/sizing.ts). */
  batch: nonNegInt.min(1).max(4096).optional(),
});
export type AckMessage = z.infer<typeof ackSchema>;

export const DROP_REASONS = ["straggler", "paused", "organizer", "misbehaving"] as const;
export type DropReason = (typeof DROP_REASONS)[number];

/**
 * The worker left the view (a cut at its clock). It may join again after
 * `rejoinAfterMs` (null: not automatically), presenting its credential.
 */
export const droppedSchema = z.object({
  type: z.literal("dropped"),
  reason: z.enum(DROP_REASONS),
  detail: shortText,
  rejoinAfterMs: nonNegInt.nullable(),
});
export type DroppedMessage = z.infer<typeof droppedSchema>;

/** Stop stepping and report the last clock (`final`). */
export const finishSchema = z.object({ type: z.literal("finish"), reason: shortText });

/** Wait until the vector clock reaches `target`, then report a digest. */
export const drainSchema = z.object({
  type: z.literal("drain"),
  target: z.record(workerId, nonNegInt),
});
export type DrainMessage = z.infer<typeof drainSchema>;

export const REJECT_CODES = [
  "malformed",
  "too-large",
  "unknown-type",
  "not-joined",
  "already-joined",
  "implausible-clock",
  "job-over",
  "rate-limited",
] as const;
export type RejectCode = (typeof REJECT_CODES)[number];

export const errorSchema = z.object({
  type: z.literal("error"),
  code: z.enum(REJECT_CODES),
  message: shortText,
});
export type ErrorMessage = z.infer<typeof errorSchema>;

// ---------------------------------------------------------------- job mf (model parallel)

export const mfProblemSchema = z.object({
  users: nonNegInt.min(2),
  items: nonNegInt.min(2),
  rank: nonNegInt.min(1).max(256),
  density: finite.gt(0).max(1),
  noise: finite.positive(),
  blocks: nonNegInt.min(1).max(256),
  seed: nonNegInt,
  lr: finite.positive(),
  lrDecay: finite.min(0),
  lambda: finite.min(0),
  initStd: finite.positive(),
});

const mfPeerSchema = z.object({ id: workerId, peerId: z.string().max(100) });

/**
 * Job `mf`: the blocks this worker trains in sub-epoch `t`, one after the
 * other. `u: "local"` means it holds U_row at version t; otherwise it fetches
 * it from /api/mf/blocks/u/ROW. `vFrom` names the peer that hands it V_col at
 * version t (itself: already held), or null: fetch the checkpoint. Afterwards
 * V_col goes to `sendTo` peer to peer (null: nobody needs it yet).
 */
export const mfStepSchema = z.object({
  type: z.literal("mf-step"),
  t: nonNegInt,
  lr: finite.positive(),
  tasks: z
    .array(
      z.object({
        row: nonNegInt.max(255),
        col: nonNegInt.max(255),
        u: z.enum(["local", "checkpoint"]),
        vFrom: workerId.nullable(),
        sendTo: workerId.nullable(),
      }),
    )
    .max(256),
  /** Every row block this worker owns now (it drops the others). */
  rows: z.array(nonNegInt.max(255)).max(256),
  peers: z.array(mfPeerSchema).max(10_000),
});
export type MfStepMessage = z.infer<typeof mfStepSchema>;

/**
 * Grid of several jobs: leave the current job cleanly (stop stepping, report
 * the last clock with `final`, then `leave`) and join again; the coordinator
 * gives the next membership to job `job` (kind `name`). `reason` is shown.
 */
export const moveSchema = z.object({
  type: z.literal("move"),
  job: gridJobId,
  name: z.string().max(64),
  reason: z.string().max(300),
});
export type MoveMessage = z.infer<typeof moveSchema>;

/**
 * A spot-check task: compute the job's update for examples
 * [offset, offset + count) of `shard` at the parameters of GET /api/spot/TASK
 * (a model of clock `clock`: the mean gradient, then a fresh optimizer state
 * at the job's learning rate) and answer with `spot-result` and its digest.
 */
export const spotSchema = z.object({
  type: z.literal("spot"),
  task: spotTaskId,
  clock: nonNegInt,
  shard: shardRefSchema,
  offset: nonNegInt,
  count: nonNegInt.min(1).max(4096),
});
export type SpotMessage = z.infer<typeof spotSchema>;

export const serverMessageSchema = z.discriminatedUnion("type", [
  moveSchema,
  mfStepSchema,
  spotSchema,
  welcomeSchema,
  viewSchema,
  viewDeltaSchema,
  assignSchema,
  finishSchema,
  drainSchema,
  errorSchema,
  ackSchema,
  droppedSchema,
]);
export type ServerMessage = z.infer<typeof serverMessageSchema>;

export type Parsed<T> = { ok: true; value: T } | { ok: false; code: RejectCode; message: string };

/**
 * Largest message a page accepts from the coordinator: a full view lists every
 * member (~90 bytes each) and every cut, so it outgrows the page's own limit
 * past ~700 workers.
 */
export const MAX_SERVER_MESSAGE_BYTES = 16 * 1024 * 1024;

function parseWith<T>(schema: z.ZodType<T>, text: string, maxBytes = MAX_CONTROL_MESSAGE_BYTES): Parsed<T> {
  if (text.length > maxBytes) {
    return { ok: false, code: "too-large", message: `message of ${text.length} bytes` };
  }
  let raw: unknown;
  try {
    raw = JSON.parse(text);
  } catch {
    return { ok: false, code: "malformed", message: "not JSON" };
  }
  const r = schema.safeParse(raw);
  if (!r.success) {
    const issue = r.error.issues[0];
    const where = issue ? issue.path.join(".") : "";
    const code: RejectCode =
      issue && issue.code === "invalid_union" && where === "type" ? "unknown-type" : "malformed";
    return { ok: false, code, message: `${where || "message"}: ${issue?.message ?? "invalid"}`.slice(0, 200) };
  }
  return { ok: true, value: r.data };
}

export function parseClientMessage(text: string): Parsed<ClientMessage> {
  return parseWith(clientMessageSchema, text);
}

export function parseServerMessage(text: string): Parsed<ServerMessage> {
  return parseWith(serverMessageSchema, text, MAX_SERVER_MESSAGE_BYTES);
}

// ---------------------------------------------------------------- binary model upload

/**
 * Replica upload for evaluation, page → coordinator, one binary WebSocket
 * message: `u32 magic "GMDL"`, `u32 clock`, then `parameters` little-endian f32.
 */
export const MODEL_UPLOAD_MAGIC = 0x4c444d47; // "GMDL" read as little-endian u32

export function encodeModelUpload(clock: number, params: Float32Array): ArrayBuffer {
  const buf = new ArrayBuffer(8 + params.length * 4);
  const dv = new DataView(buf);
  dv.setUint32(0, MODEL_UPLOAD_MAGIC, true);
  dv.setUint32(4, clock, true);
  new Float32Array(buf, 8).set(params);
  return buf;
}

export function decodeModelUpload(
  bytes: Uint8Array,
  parameters: number,
): Parsed<{ clock: number; params: Float32Array }> {
  if (bytes.byteLength !== 8 + parameters * 4) {
    return { ok: false, code: "malformed", message: `model upload of ${bytes.byteLength} bytes` };
  }
  const dv = new DataView(bytes.buffer, bytes.byteOffset, bytes.byteLength);
  if (dv.getUint32(0, true) !== MODEL_UPLOAD_MAGIC) {
    return { ok: false, code: "malformed", message: "model upload: bad magic" };
  }
  const clock = dv.getUint32(4, true);
  const params = new Float32Array(parameters);
  const src = new Uint8Array(bytes.buffer, bytes.byteOffset + 8, parameters * 4);
  new Uint8Array(params.buffer).set(src);
  for (let i = 0; i < params.length; i++) {
    if (!Number.isFinite(params[i])) {
      return { ok: false, code: "malformed", message: "model upload: non-finite value" };
    }
  }
  return { ok: true, value: { clock, params } };
}
