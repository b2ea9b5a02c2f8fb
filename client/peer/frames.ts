/**
 * Binary frame codec for peer messages: header, chunking, reassembly, payloads.
 *
 * Pure TypeScript (no DOM or Node imports): runs in the volunteer page and in
 * Node tests. Tensors travel as raw bytes, never JSON or number arrays.
 *
 * A message (one update, one snapshot, ...) is split into frames of at most
 * {@link MAX_FRAME_BYTES} bytes each (below 64 KiB, header included), so each
 * frame is one DataChannel message. Every frame starts with this fixed header,
 * all multi-byte fields little-endian:
 *
 * | offset | size | field         | contract                                              |
 * |-------:|-----:|---------------|-------------------------------------------------------|
 * |      0 |    1 | magic[0]      | 0x47 ('G')                                            |
 * |      1 |    1 | magic[1]      | 0x44 ('D')                                            |
 * |      2 |    1 | version       | {@link FRAME_VERSION} (1)                             |
 * |      3 |    1 | type          | {@link FrameType}; 0 and unknown values rejected      |
 * |      4 |    1 | encoding      | {@link Encoding}; 0 and unknown values rejected       |
 * |      5 |    1 | flags         | reserved, must be 0                                   |
 * |      6 |    2 | job           | u16 job id                                            |
 * |      8 |    4 | sender        | u32 sender worker number                              |
 * |     12 |    4 | clock         | u32 sender clock c of u(sender, c) (0 if meaningless) |
 * |     16 |    4 | messageId     | u32, unique per sender; groups the chunks of a message|
 * |     20 |    2 | chunkIndex    | u16, 0 <= chunkIndex < chunkCount                     |
 * |     22 |    2 | chunkCount    | u16, >= 1                                             |
 * |     24 |    4 | totalLength   | u32 payload bytes of the whole message                |
 * |     28 |    4 | chunkLength   | u32 payload bytes in this frame = frame size - 32     |
 * |     32 |    n | payload       | chunkLength bytes                                     |
 *
 * Chunk geometry (enforced on decode): all chunks but the last carry exactly
 * `stride` payload bytes and the last carries the remainder, `1..stride`
 * bytes, so chunk `i` starts at payload offset `i * stride`. Every chunk of a
 * multi-chunk message carries at least one byte. An empty message is one
 * frame with `chunkCount = 1`, `totalLength = chunkLength = 0`.
 *
 * The header has no per-message checksum: DataChannels run over SCTP/DTLS,
 * which already detect corruption. The checks here catch bugs and hostile or
 * confused peers, not line noise.
 */

// ---------------------------------------------------------------------------
// Constants and enums
// ---------------------------------------------------------------------------

export const FRAME_MAGIC_0 = 0x47;
export const FRAME_MAGIC_1 = 0x44;
export const FRAME_VERSION = 1;
/** Size of the fixed header in bytes. */
export const HEADER_BYTES = 32;
/** Largest frame accepted or produced, header included (strictly below 64 KiB). */
export const MAX_FRAME_BYTES = 0xffff;
/** Largest payload one frame can carry. */
export const MAX_CHUNK_PAYLOAD = MAX_FRAME_BYTES - HEADER_BYTES;
/** Default frame size used by {@link encodeMessage}, header included. */
export const DEFAULT_MAX_CHUNK_BYTES = 60 * 1024;
/** Largest number of chunks one message can have (u16). */
export const MAX_CHUNK_COUNT = 0xffff;
const U32_MAX = 0xffffffff;

/** What a message carries. Value 0 is never valid, so zeroed buffers are rejected. */
export const FrameType = {
  /** A parameter update u(sender, clock); payload: {@link encodeUpdatePayload}. */
  UPDATE: 1,
  /** Ask a peer for a snapshot; empty payload. */
  SNAPSHOT_REQUEST: 2,
  /**
   * Full parameters plus a vector clock; payload: {@link encodeSnapshotPayload}.
   * The header's clock is the snapshot's robust-aggregation frontier (0 with mean).
   */
  SNAPSHOT: 3,
  /** Ask a peer to re-send retained updates; payload: {@link encodeResendRequestPayload}. */
  RESEND_REQUEST: 4,
  /** Liveness; empty payload. Peer loss is detected by missing heartbeats. */
  HEARTBEAT: 5,
  /**
   * After a SNAPSHOT: an update u(sender, clock) the snapshot already counts,
   * for the joiner to retain (re-send, revert) but not apply; payload as UPDATE.
   */
  RETAINED: 6,
  /**
   * Job mf: a column block V_b handed to the worker that trains it next;
   * payload: client/mf/wire.ts `encodeBlock` (kind, block, version, floats).
   */
  MF_BLOCK: 7,
} as const;
export type FrameType = (typeof FrameType)[keyof typeof FrameType];

/**
 * How the tensor bytes of a payload are encoded. One byte in the header.
 * Control frames (requests, heartbeats) and snapshots carry F32; it is
 * ignored there. UPDATE and RETAINED payloads in the compressed encodings
 * are written and checked by client/compress.ts, which documents the layouts.
 */
export const Encoding = {
  /** Raw little-endian IEEE-754 float32. */
  F32: 1,
  /** Dense IEEE-754 half precision. */
  F16: 2,
  /** Dense int8 with one f32 scale per block of 1024 values. */
  INT8: 3,
  /** Top-k sparse: delta-coded indices, f32 values. */
  SPARSE_F32: 4,
  /** Top-k sparse: delta-coded indices, f16 values. */
  SPARSE_F16: 5,
  /** Top-k sparse: delta-coded indices, int8 values with one f32 scale. */
  SPARSE_INT8: 6,
} as const;
export type Encoding = (typeof Encoding)[keyof typeof Encoding];

const FRAME_TYPES: ReadonlySet<number> = new Set<number>(Object.values(FrameType));
const ENCODINGS: ReadonlySet<number> = new Set<number>(Object.values(Encoding));

/**
 * Every reason a frame or chunk can be refused. Closed: callers may switch on
 * it exhaustively, count it per peer, and ban a peer that keeps producing them.
 */
export const REJECT_REASONS = [
  /** decodeFrame: the input is not an ArrayBuffer. */
  "not-binary",
  /** decodeFrame: fewer than HEADER_BYTES bytes. */
  "too-short",
  /** decodeFrame: frame above MAX_FRAME_BYTES; push: totalLength above maxMessageBytes. */
  "too-large",
  "bad-magic",
  "bad-version",
  "bad-type",
  "bad-encoding",
  /** Reserved flag bits set. */
  "bad-flags",
  /** chunkCount is 0 or chunkIndex >= chunkCount. */
  "bad-chunk-index",
  /** chunkLength disagrees with the frame size, totalLength, or the chunk geometry. */
  "length-mismatch",
  /** push: chunk disagrees with the first chunk seen of its message (count, total, stride, type, encoding, clock). */
  "chunk-mismatch",
  /** push: a new message would exceed maxPendingMessages. */
  "too-many-pending",
  /** push: a new message would exceed maxPendingBytes. */
  "over-budget",
] as const;
export type RejectReason = (typeof REJECT_REASONS)[number];

// ---------------------------------------------------------------------------
// Messages and frames
// ---------------------------------------------------------------------------

/** The header fields shared by a message and each of its frames. */
export interface MessageHeader {
  readonly type: FrameType;
  readonly encoding: Encoding;
  /** u16. */
  readonly job: number;
  /** u32 worker number of the sender. */
  readonly sender: number;
  /** u32. */
  readonly clock: number;
  /**
   * u32, unique per sender for as long as receivers may hold its chunks
   * (start from a random value, see {@link MessageIdSource}). A re-send is a
   * new message with a new id.
   */
  readonly messageId: number;
}

/** A message to send. */
export interface OutgoingMessage extends MessageHeader {
  readonly payload: Uint8Array;
}

/** A reassembled message. */
export interface ReceivedMessage extends MessageHeader {
  /** A fresh buffer owned by the receiver: byteOffset 0, aliases no frame. */
  readonly payload: Uint8Array<ArrayBuffer>;
}

/** One decoded frame. */
export interface Frame extends MessageHeader {
  readonly chunkIndex: number;
  readonly chunkCount: number;
  readonly totalLength: number;
  /** This chunk's bytes: a view into the decoded buffer (no copy). */
  readonly payload: Uint8Array<ArrayBuffer>;
}

export type DecodeResult =
  | { readonly ok: true; readonly frame: Frame }
  | { readonly ok: false; readonly reason: RejectReason };

function isU16(n: number): boolean {
  return Number.isInteger(n) && n >= 0 && n <= 0xffff;
}

function isU32(n: number): boolean {
  return Number.isInteger(n) && n >= 0 && n <= U32_MAX;
}

/**
 * Checks that one chunk of `chunkLength` bytes at `chunkIndex` fits the chunk
 * geometry described at the top of this file. Returns null when it does.
 */
function checkGeometry(
  chunkIndex: number,
  chunkCount: number,
  totalLength: number,
  chunkLength: number,
): RejectReason | null {
  if (!isU16(chunkIndex) || !isU16(chunkCount) || chunkCount < 1 || chunkIndex >= chunkCount) {
    return "bad-chunk-index";
  }
  if (!isU32(totalLength)) return "length-mismatch";
  if (chunkLength > totalLength || chunkLength > MAX_CHUNK_PAYLOAD) return "length-mismatch";
  if (chunkCount === 1) return chunkLength === totalLength ? null : "length-mismatch";
  if (chunkLength < 1) return "length-mismatch";
  return impliedStride(chunkIndex, chunkCount, totalLength, chunkLength) === null
    ? "length-mismatch"
    : null;
}

/**
 * The stride (payload bytes of every chunk but the last) implied by one chunk
 * of a multi-chunk message, or null when no valid stride fits it.
 */
function impliedStride(
  chunkIndex: number,
  chunkCount: number,
  totalLength: number,
  chunkLength: number,
): number | null {
  if (chunkIndex < chunkCount - 1) {
    // A full chunk: the last one gets totalLength - (count-1)*stride, in 1..stride.
    const rest = totalLength - (chunkCount - 1) * chunkLength;
    return rest >= 1 && rest <= chunkLength ? chunkLength : null;
  }
  const full = totalLength - chunkLength;
  if (full % (chunkCount - 1) !== 0) return null;
  const stride = full / (chunkCount - 1);
  return stride >= chunkLength && stride <= MAX_CHUNK_PAYLOAD ? stride : null;
}

/**
 * Splits a message into frames of at most `maxChunkBytes` bytes each, header
 * included. `maxChunkBytes` must be in `(HEADER_BYTES, MAX_FRAME_BYTES]`, so
 * every frame is below 64 KiB. An empty payload yields exactly one frame.
 * Each frame is a fresh ArrayBuffer; the payload is copied, not retained.
 *
 * Throws RangeError on a caller bug: an unknown type or encoding, a field out
 * of its integer range, a bad `maxChunkBytes`, or a payload that needs more
 * than MAX_CHUNK_COUNT chunks.
 */
export function encodeMessage(
  msg: OutgoingMessage,
  maxChunkBytes: number = DEFAULT_MAX_CHUNK_BYTES,
): ArrayBuffer[] {
  if (!FRAME_TYPES.has(msg.type)) throw new RangeError(`unknown frame type ${msg.type}`);
  if (!ENCODINGS.has(msg.encoding)) throw new RangeError(`unknown encoding ${msg.encoding}`);
  if (!isU16(msg.job)) throw new RangeError(`job ${msg.job} is not a u16`);
  if (!isU32(msg.sender)) throw new RangeError(`sender ${msg.sender} is not a u32`);
  if (!isU32(msg.clock)) throw new RangeError(`clock ${msg.clock} is not a u32`);
  if (!isU32(msg.messageId)) throw new RangeError(`messageId ${msg.messageId} is not a u32`);
  if (
    !Number.isInteger(maxChunkBytes) ||
    maxChunkBytes <= HEADER_BYTES ||
    maxChunkBytes > MAX_FRAME_BYTES
  ) {
    throw new RangeError(
      `maxChunkBytes ${maxChunkBytes} not in (${HEADER_BYTES}, ${MAX_FRAME_BYTES}]`,
    );
  }
  const total = msg.payload.byteLength;
  const stride = maxChunkBytes - HEADER_BYTES;
  const count = Math.max(1, Math.ceil(total / stride));
  if (total > U32_MAX || count > MAX_CHUNK_COUNT) {
    throw new RangeError(`payload of ${total} bytes needs ${count} chunks of ${stride} bytes`);
  }

  const frames: ArrayBuffer[] = [];
  for (let index = 0; index < count; index++) {
    const start = index * stride;
    const length = Math.min(stride, total - start);
    const buf = new ArrayBuffer(HEADER_BYTES + length);
    const view = new DataView(buf);
    view.setUint8(0, FRAME_MAGIC_0);
    view.setUint8(1, FRAME_MAGIC_1);
    view.setUint8(2, FRAME_VERSION);
    view.setUint8(3, msg.type);
    view.setUint8(4, msg.encoding);
    view.setUint8(5, 0);
    view.setUint16(6, msg.job, true);
    view.setUint32(8, msg.sender, true);
    view.setUint32(12, msg.clock, true);
    view.setUint32(16, msg.messageId, true);
    view.setUint16(20, index, true);
    view.setUint16(22, count, true);
    view.setUint32(24, total, true);
    view.setUint32(28, length, true);
    new Uint8Array(buf, HEADER_BYTES, length).set(msg.payload.subarray(start, start + length));
    frames.push(buf);
  }
  return frames;
}

function isArrayBuffer(value: unknown): value is ArrayBuffer {
  // instanceof fails across realms (iframes, test environments); the tag does not.
  return Object.prototype.toString.call(value) === "[object ArrayBuffer]";
}

/**
 * Parses and validates one frame. Never throws: every malformed input maps to
 * a {@link RejectReason}. The returned frame's payload is a view into `buf`.
 */
export function decodeFrame(buf: ArrayBuffer): DecodeResult {
  if (!isArrayBuffer(buf)) return { ok: false, reason: "not-binary" };
  if (buf.byteLength < HEADER_BYTES) return { ok: false, reason: "too-short" };
  if (buf.byteLength > MAX_FRAME_BYTES) return { ok: false, reason: "too-large" };
  const view = new DataView(buf);
  if (view.getUint8(0) !== FRAME_MAGIC_0 || view.getUint8(1) !== FRAME_MAGIC_1) {
    return { ok: false, reason: "bad-magic" };
  }
  if (view.getUint8(2) !== FRAME_VERSION) return { ok: false, reason: "bad-version" };
  const type = view.getUint8(3);
  if (!FRAME_TYPES.has(type)) return { ok: false, reason: "bad-type" };
  const encoding = view.getUint8(4);
  if (!ENCODINGS.has(encoding)) return { ok: false, reason: "bad-encoding" };
  if (view.getUint8(5) !== 0) return { ok: false, reason: "bad-flags" };
  const chunkIndex = view.getUint16(20, true);
  const chunkCount = view.getUint16(22, true);
  const totalLength = view.getUint32(24, true);
  const chunkLength = view.getUint32(28, true);
  if (chunkCount < 1 || chunkIndex >= chunkCount) return { ok: false, reason: "bad-chunk-index" };
  if (chunkLength !== buf.byteLength - HEADER_BYTES) return { ok: false, reason: "length-mismatch" };
  const geometry = checkGeometry(chunkIndex, chunkCount, totalLength, chunkLength);
  if (geometry !== null) return { ok: false, reason: geometry };
  return {
    ok: true,
    frame: {
      // Membership in FRAME_TYPES / ENCODINGS was checked above.
      type: type as FrameType,
      encoding: encoding as Encoding,
      job: view.getUint16(6, true),
      sender: view.getUint32(8, true),
      clock: view.getUint32(12, true),
      messageId: view.getUint32(16, true),
      chunkIndex,
      chunkCount,
      totalLength,
      payload: new Uint8Array(buf, HEADER_BYTES, chunkLength),
    },
  };
}

/**
 * Hands out message ids for one sender: starts at a random u32 (so a sender
 * that reloads does not reuse the ids receivers still remember) and counts up
 * modulo 2^32.
 */
export class MessageIdSource {
  #next: number;

  constructor(start?: number) {
    if (start !== undefined && !isU32(start)) throw new RangeError(`start ${start} is not a u32`);
    this.#next = start ?? globalThis.crypto.getRandomValues(new Uint32Array(1))[0] ?? 0;
  }

  next(): number {
    const id = this.#next;
    this.#next = (this.#next + 1) >>> 0;
    return id;
  }
}

// ---------------------------------------------------------------------------
// Reassembly
// ---------------------------------------------------------------------------

export interface ReassemblerOptions {
  /** Largest message (payload bytes) accepted; larger ones are rejected "too-large". */
  readonly maxMessageBytes: number;
  /** Most incomplete messages held at once; more are rejected "too-many-pending". */
  readonly maxPendingMessages: number;
  /** An incomplete message with no new chunk for longer than this is dropped by expire(). */
  readonly timeoutMs: number;
  /**
   * Cap on pendingBytes(); defaults to maxPendingMessages * maxMessageBytes.
   * A new message that would exceed it is rejected "over-budget".
   */
  readonly maxPendingBytes?: number;
  /**
   * How many completed message keys to remember (each for timeoutMs) so that
   * late duplicates of a completed message are reported "duplicate" instead
   * of starting a new set. Default 1024; 0 disables.
   */
  readonly rememberCompleted?: number;
  /** Monotonic milliseconds; defaults to performance.now(). */
  readonly now?: () => number;
}

export type PushResult =
  | { readonly status: "complete"; readonly message: ReceivedMessage }
  | { readonly status: "pending" }
  | { readonly status: "duplicate" }
  | { readonly status: "rejected"; readonly reason: RejectReason };

interface PendingSet {
  readonly header: MessageHeader;
  readonly chunkCount: number;
  readonly totalLength: number;
  readonly stride: number;
  /** Preallocated message payload; chunk i lands at i * stride. */
  readonly bytes: Uint8Array<ArrayBuffer>;
  /** Bit i set once chunk i has arrived. */
  readonly seen: Uint8Array;
  received: number;
  lastSeenMs: number;
}

const PENDING: PushResult = { status: "pending" };
const DUPLICATE: PushResult = { status: "duplicate" };

function rejected(reason: RejectReason): PushResult {
  return { status: "rejected", reason };
}

/**
 * Reassembles messages from decoded frames, in any chunk order.
 *
 * Contracts:
 * - push() never throws. A message completes once each of its chunks has
 *   arrived; repeated chunks are reported "duplicate" and change nothing.
 * - Memory: each incomplete message reserves its totalLength bytes on its
 *   first chunk (plus one bit per chunk), counted by pendingBytes(), which
 *   never exceeds maxPendingBytes (<= maxPendingMessages * maxMessageBytes by
 *   default). Completed payloads are handed over and no longer counted.
 * - A rejected chunk that belongs to an incomplete message discards that
 *   message (it can no longer complete correctly); a rejection for a new
 *   message changes nothing.
 * - When a new message hits a cap, expire() runs first; callers should still
 *   call expire() periodically (e.g. on the heartbeat timer).
 * - Use one Reassembler per connection, so a faulty peer can exhaust only its
 *   own budget. Messages are keyed by (job, sender, messageId).
 */
export class Reassembler {
  readonly #maxMessageBytes: number;
  readonly #maxPendingMessages: number;
  readonly #maxPendingBytes: number;
  readonly #timeoutMs: number;
  readonly #rememberCompleted: number;
  readonly #now: () => number;
  readonly #pending = new Map<string, PendingSet>();
  /** Completed keys -> completion time, oldest first (Map keeps insertion order). */
  readonly #completed = new Map<string, number>();
  #pendingBytes = 0;

  /** Throws RangeError on nonsensical options (a caller bug). */
  constructor(options: ReassemblerOptions) {
    const { maxMessageBytes, maxPendingMessages, timeoutMs } = options;
    if (!isU32(maxMessageBytes)) throw new RangeError(`maxMessageBytes ${maxMessageBytes}`);
    if (!Number.isInteger(maxPendingMessages) || maxPendingMessages < 0) {
      throw new RangeError(`maxPendingMessages ${maxPendingMessages}`);
    }
    if (!(timeoutMs >= 0)) throw new RangeError(`timeoutMs ${timeoutMs}`);
    const maxPendingBytes = options.maxPendingBytes ?? maxPendingMessages * maxMessageBytes;
    if (!(maxPendingBytes >= 0)) throw new RangeError(`maxPendingBytes ${maxPendingBytes}`);
    const rememberCompleted = options.rememberCompleted ?? 1024;
    if (!Number.isInteger(rememberCompleted) || rememberCompleted < 0) {
      throw new RangeError(`rememberCompleted ${rememberCompleted}`);
    }
    this.#maxMessageBytes = maxMessageBytes;
    this.#maxPendingMessages = maxPendingMessages;
    this.#maxPendingBytes = maxPendingBytes;
    this.#timeoutMs = timeoutMs;
    this.#rememberCompleted = rememberCompleted;
    this.#now = options.now ?? (() => globalThis.performance.now());
  }

  /** Payload bytes reserved by incomplete messages. */
  pendingBytes(): number {
    return this.#pendingBytes;
  }

  /** Number of incomplete messages held. */
  pendingMessages(): number {
    return this.#pending.size;
  }

  /** Feeds one decoded frame. See the class comment for the contracts. */
  push(frame: Frame): PushResult {
    const now = this.#now();
    const length = frame.payload.byteLength;
    // Frames from decodeFrame already satisfy this; hand-built ones may not.
    const geometry = checkGeometry(frame.chunkIndex, frame.chunkCount, frame.totalLength, length);
    const key = `${frame.job}:${frame.sender}:${frame.messageId}`;
    const set = this.#pending.get(key);
    if (geometry !== null) {
      if (set !== undefined) this.#discard(key, set);
      return rejected(geometry);
    }

    if (set === undefined) return this.#start(key, frame, now);

    const stride =
      frame.chunkCount === 1
        ? null
        : impliedStride(frame.chunkIndex, frame.chunkCount, frame.totalLength, length);
    if (
      frame.chunkCount !== set.chunkCount ||
      frame.totalLength !== set.totalLength ||
      stride !== set.stride ||
      frame.type !== set.header.type ||
      frame.encoding !== set.header.encoding ||
      frame.clock !== set.header.clock
    ) {
      this.#discard(key, set);
      return rejected("chunk-mismatch");
    }
    const byte = frame.chunkIndex >>> 3;
    const bit = 1 << (frame.chunkIndex & 7);
    if (((set.seen[byte] ?? 0) & bit) !== 0) return DUPLICATE;
    set.seen[byte] = (set.seen[byte] ?? 0) | bit;
    set.bytes.set(frame.payload, frame.chunkIndex * set.stride);
    set.received++;
    set.lastSeenMs = now;
    if (set.received < set.chunkCount) return PENDING;
    this.#pending.delete(key);
    this.#pendingBytes -= set.totalLength;
    this.#remember(key, now);
    return { status: "complete", message: { ...set.header, payload: set.bytes } };
  }

  /**
   * Drops incomplete messages whose last chunk arrived more than timeoutMs
   * ago (and forgets completed keys older than that). Returns how many
   * incomplete messages were dropped.
   */
  expire(): number {
    const now = this.#now();
    let dropped = 0;
    for (const [key, set] of this.#pending) {
      if (now - set.lastSeenMs > this.#timeoutMs) {
        this.#discard(key, set);
        dropped++;
      }
    }
    for (const [key, at] of this.#completed) {
      if (now - at <= this.#timeoutMs) break; // oldest first
      this.#completed.delete(key);
    }
    return dropped;
  }

  /** Drops every incomplete message from `sender` (e.g. on peer loss); returns how many. */
  discardSender(sender: number): number {
    let dropped = 0;
    for (const [key, set] of this.#pending) {
      if (set.header.sender === sender) {
        this.#discard(key, set);
        dropped++;
      }
    }
    return dropped;
  }

  /** Drops all state. */
  clear(): void {
    this.#pending.clear();
    this.#completed.clear();
    this.#pendingBytes = 0;
  }

  #start(key: string, frame: Frame, now: number): PushResult {
    const completedAt = this.#completed.get(key);
    if (completedAt !== undefined && now - completedAt <= this.#timeoutMs) return DUPLICATE;
    if (frame.totalLength > this.#maxMessageBytes) return rejected("too-large");
    const header: MessageHeader = {
      type: frame.type,
      encoding: frame.encoding,
      job: frame.job,
      sender: frame.sender,
      clock: frame.clock,
      messageId: frame.messageId,
    };
    if (frame.chunkCount === 1) {
      this.#remember(key, now);
      return { status: "complete", message: { ...header, payload: frame.payload.slice() } };
    }
    const overCap = (): RejectReason | null =>
      this.#pending.size >= this.#maxPendingMessages
        ? "too-many-pending"
        : this.#pendingBytes + frame.totalLength > this.#maxPendingBytes
          ? "over-budget"
          : null;
    if (overCap() !== null) this.expire();
    const cap = overCap();
    if (cap !== null) return rejected(cap);

    // checkGeometry passed, so a stride exists.
    const stride =
      impliedStride(frame.chunkIndex, frame.chunkCount, frame.totalLength, frame.payload.byteLength) ?? 0;
    const set: PendingSet = {
      header,
      chunkCount: frame.chunkCount,
      totalLength: frame.totalLength,
      stride,
      bytes: new Uint8Array(frame.totalLength),
      seen: new Uint8Array(Math.ceil(frame.chunkCount / 8)),
      received: 1,
      lastSeenMs: now,
    };
    set.seen[frame.chunkIndex >>> 3] = 1 << (frame.chunkIndex & 7);
    set.bytes.set(frame.payload, frame.chunkIndex * stride);
    this.#pending.set(key, set);
    this.#pendingBytes += frame.totalLength;
    return PENDING;
  }

  #discard(key: string, set: PendingSet): void {
    this.#pending.delete(key);
    this.#pendingBytes -= set.totalLength;
  }

  #remember(key: string, now: number): void {
    if (this.#rememberCompleted === 0) return;
    this.#completed.delete(key);
    this.#completed.set(key, now);
    if (this.#completed.size > this.#rememberCompleted) {
      const oldest = this.#completed.keys().next();
      if (oldest.done !== true) this.#completed.delete(oldest.value);
    }
  }
}

// ---------------------------------------------------------------------------
// Payloads
// ---------------------------------------------------------------------------

/** Why a payload helper refused its input. Closed. */
export const PAYLOAD_REJECT_REASONS = [
  /** The byte length does not match the expected shape. */
  "wrong-length",
  /** A float is NaN or infinite. */
  "non-finite",
  /** Vector-clock entries are not in strictly ascending worker order. */
  "bad-vector-clock",
] as const;
export type PayloadRejectReason = (typeof PAYLOAD_REJECT_REASONS)[number];

export type PayloadResult<T> =
  | { readonly ok: true; readonly value: T }
  | { readonly ok: false; readonly reason: PayloadRejectReason };

/** A usable element count: a non-negative safe integer. */
function isCount(n: number): boolean {
  return Number.isSafeInteger(n) && n >= 0;
}

const HOST_LITTLE_ENDIAN = new Uint8Array(new Uint32Array([1]).buffer)[0] === 1;

/** Writes `values` as little-endian f32 into `out` at byte `offset`. */
function writeF32(out: Uint8Array<ArrayBuffer>, offset: number, values: Float32Array): void {
  if (HOST_LITTLE_ENDIAN) {
    out.set(new Uint8Array(values.buffer, values.byteOffset, values.byteLength), offset);
    return;
  }
  const view = new DataView(out.buffer, out.byteOffset);
  for (let i = 0; i < values.length; i++) view.setFloat32(offset + 4 * i, values[i] ?? 0, true);
}

/**
 * Reads `count` little-endian f32 from `bytes` at byte `offset` into a fresh,
 * aligned Float32Array (never aliasing `bytes`); null if any is non-finite.
 */
function readF32(bytes: Uint8Array, offset: number, count: number): Float32Array<ArrayBuffer> | null {
  const out = new Float32Array(count);
  if (HOST_LITTLE_ENDIAN) {
    new Uint8Array(out.buffer).set(bytes.subarray(offset, offset + 4 * count));
  } else {
    const view = new DataView(bytes.buffer, bytes.byteOffset);
    for (let i = 0; i < count; i++) out[i] = view.getFloat32(offset + 4 * i, true);
  }
  for (let i = 0; i < count; i++) {
    const v = out[i] ?? 0;
    // v - v is 0 for finite v and NaN for NaN and ±Infinity.
    if (v - v !== 0) return null;
  }
  return out;
}

/** UPDATE payload: the update's floats as raw little-endian f32 (4 bytes each). */
export function encodeUpdatePayload(values: Float32Array): Uint8Array<ArrayBuffer> {
  const out = new Uint8Array(values.byteLength);
  writeF32(out, 0, values);
  return out;
}

/**
 * Decodes an UPDATE payload of exactly `expectedLength` floats into a fresh
 * Float32Array. Rejects "wrong-length" or "non-finite".
 */
export function decodeUpdatePayload(
  bytes: Uint8Array,
  expectedLength: number,
): PayloadResult<Float32Array<ArrayBuffer>> {
  if (!isCount(expectedLength) || bytes.byteLength !== 4 * expectedLength) {
    return { ok: false, reason: "wrong-length" };
  }
  const values = readF32(bytes, 0, expectedLength);
  return values === null ? { ok: false, reason: "non-finite" } : { ok: true, value: values };
}

/** A snapshot: full parameters and the vector clock they reflect (worker -> clock). */
export interface Snapshot {
  readonly vectorClock: ReadonlyMap<number, number>;
  readonly params: Float32Array;
}

/**
 * SNAPSHOT payload, little-endian:
 *   u32 n, then n × (u32 worker, u32 clock) in strictly ascending worker
 *   order, then the parameters as f32.
 * Entries are sorted here, so any Map order encodes the same bytes.
 * Throws RangeError if a worker number or clock is not a u32.
 */
export function encodeSnapshotPayload(snapshot: Snapshot): Uint8Array<ArrayBuffer> {
  const entries = [...snapshot.vectorClock].sort((a, b) => a[0] - b[0]);
  for (const [worker, clock] of entries) {
    if (!isU32(worker) || !isU32(clock)) {
      throw new RangeError(`vector clock entry ${worker} -> ${clock} is not a u32 pair`);
    }
  }
  const paramsOffset = 4 + 8 * entries.length;
  const out = new Uint8Array(paramsOffset + snapshot.params.byteLength);
  const view = new DataView(out.buffer);
  view.setUint32(0, entries.length, true);
  entries.forEach(([worker, clock], i) => {
    view.setUint32(4 + 8 * i, worker, true);
    view.setUint32(8 + 8 * i, clock, true);
  });
  writeF32(out, paramsOffset, snapshot.params);
  return out;
}

/**
 * Decodes a SNAPSHOT payload whose parameters must be exactly
 * `expectedParams` floats. Rejects "wrong-length" (truncated or sized for
 * another model), "bad-vector-clock" (entries not strictly ascending by
 * worker) or "non-finite". The result aliases nothing in `bytes`.
 */
export function decodeSnapshotPayload(
  bytes: Uint8Array,
  expectedParams: number,
): PayloadResult<{ vectorClock: Map<number, number>; params: Float32Array<ArrayBuffer> }> {
  if (!isCount(expectedParams) || bytes.byteLength < 4) return { ok: false, reason: "wrong-length" };
  const view = new DataView(bytes.buffer, bytes.byteOffset, bytes.byteLength);
  const n = view.getUint32(0, true);
  const paramsOffset = 4 + 8 * n;
  if (paramsOffset + 4 * expectedParams !== bytes.byteLength) {
    return { ok: false, reason: "wrong-length" };
  }
  const vectorClock = new Map<number, number>();
  let previous = -1;
  for (let i = 0; i < n; i++) {
    const worker = view.getUint32(4 + 8 * i, true);
    if (worker <= previous) return { ok: false, reason: "bad-vector-clock" };
    previous = worker;
    vectorClock.set(worker, view.getUint32(8 + 8 * i, true));
  }
  const params = readF32(bytes, paramsOffset, expectedParams);
  if (params === null) return { ok: false, reason: "non-finite" };
  return { ok: true, value: { vectorClock, params } };
}

/** A request to re-send `target`'s retained updates u(target, c) for c >= fromClock. */
export interface ResendRequest {
  /** u32 worker number whose updates are wanted. */
  readonly target: number;
  /** u32 first clock wanted. */
  readonly fromClock: number;
}

/** RESEND_REQUEST payload: u32 target, u32 fromClock, little-endian (8 bytes). */
export function encodeResendRequestPayload(request: ResendRequest): Uint8Array<ArrayBuffer> {
  if (!isU32(request.target) || !isU32(request.fromClock)) {
    throw new RangeError(`resend request ${request.target}@${request.fromClock} is not u32`);
  }
  const out = new Uint8Array(8);
  const view = new DataView(out.buffer);
  view.setUint32(0, request.target, true);
  view.setUint32(4, request.fromClock, true);
  return out;
}

/** Decodes a RESEND_REQUEST payload; rejects "wrong-length" unless exactly 8 bytes. */
export function decodeResendRequestPayload(bytes: Uint8Array): PayloadResult<ResendRequest> {
  if (bytes.byteLength !== 8) return { ok: false, reason: "wrong-length" };
  const view = new DataView(bytes.buffer, bytes.byteOffset, 8);
  return { ok: true, value: { target: view.getUint32(0, true), fromClock: view.getUint32(4, true) } };
}
