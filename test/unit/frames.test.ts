import { describe, expect, it } from "vitest";
import { rng } from "../support/random.ts";
import {
  DEFAULT_MAX_CHUNK_BYTES,
  Encoding,
  FRAME_MAGIC_0,
  FRAME_MAGIC_1,
  FRAME_VERSION,
  FrameType,
  HEADER_BYTES,
  MAX_FRAME_BYTES,
  MessageIdSource,
  PAYLOAD_REJECT_REASONS,
  REJECT_REASONS,
  Reassembler,
  decodeFrame,
  decodeResendRequestPayload,
  decodeSnapshotPayload,
  decodeUpdatePayload,
  encodeMessage,
  encodeResendRequestPayload,
  encodeSnapshotPayload,
  encodeUpdatePayload,
  type Frame,
  type OutgoingMessage,
  type PayloadRejectReason,
  type PushResult,
  type ReassemblerOptions,
  type ReceivedMessage,
  type RejectReason,
} from "../../client/peer/frames.ts";

// ---------------------------------------------------------------------------
// Helpers
// ---------------------------------------------------------------------------


function randInt(rand: () => number, n: number): number {
  return Math.floor(rand() * n);
}

function shuffle<T>(items: T[], rand: () => number): T[] {
  const out = [...items];
  for (let i = out.length - 1; i > 0; i--) {
    const j = randInt(rand, i + 1);
    const a = out[i] as T;
    out[i] = out[j] as T;
    out[j] = a;
  }
  return out;
}

function randomBytes(rand: () => number, n: number): Uint8Array<ArrayBuffer> {
  const out = new Uint8Array(n);
  for (let i = 0; i < n; i++) out[i] = randInt(rand, 256);
  return out;
}

function randomFloats(rand: () => number, n: number): Float32Array<ArrayBuffer> {
  const out = new Float32Array(n);
  for (let i = 0; i < n; i++) out[i] = (rand() - 0.5) * 1e3;
  return out;
}

function decodeOk(buf: ArrayBuffer): Frame {
  const result = decodeFrame(buf);
  if (!result.ok) throw new Error(`decode rejected: ${result.reason}`);
  return result.frame;
}

function decodeReason(buf: ArrayBuffer): RejectReason | "ok" {
  const result = decodeFrame(buf);
  return result.ok ? "ok" : result.reason;
}

/** Index of the first differing byte, or -1 when equal (fast for MB-sized inputs). */
function firstDifference(a: ArrayBufferView, b: ArrayBufferView): number {
  const x = new Uint8Array(a.buffer, a.byteOffset, a.byteLength);
  const y = new Uint8Array(b.buffer, b.byteOffset, b.byteLength);
  if (x.length !== y.length) return Math.min(x.length, y.length);
  for (let i = 0; i < x.length; i++) if (x[i] !== y[i]) return i;
  return -1;
}

function pushReason(result: PushResult): string {
  return result.status === "rejected" ? result.reason : result.status;
}

const roomy: ReassemblerOptions = {
  maxMessageBytes: 8 * 1024 * 1024,
  maxPendingMessages: 8,
  timeoutMs: 10_000,
};

/** Frames in `order`, pushed one by one; expects exactly the last to complete. */
function reassemble(
  frames: readonly ArrayBuffer[],
  reassembler = new Reassembler(roomy),
): ReceivedMessage {
  let message: ReceivedMessage | undefined;
  frames.forEach((buf, i) => {
    const result = reassembler.push(decodeOk(buf));
    if (i < frames.length - 1) expect(result.status).toBe("pending");
    else if (result.status === "complete") message = result.message;
  });
  if (message === undefined) throw new Error("message did not complete");
  expect(reassembler.pendingBytes()).toBe(0);
  return message;
}

function baseMessage(
  type: OutgoingMessage["type"],
  payload: Uint8Array,
  over: Partial<OutgoingMessage> = {},
): OutgoingMessage {
  return {
    type,
    encoding: Encoding.F32,
    job: 7,
    sender: 3,
    clock: 42,
    messageId: 1000,
    payload,
    ...over,
  };
}

function expectSameMessage(got: ReceivedMessage, sent: OutgoingMessage): void {
  expect(got.type).toBe(sent.type);
  expect(got.encoding).toBe(sent.encoding);
  expect(got.job).toBe(sent.job);
  expect(got.sender).toBe(sent.sender);
  expect(got.clock).toBe(sent.clock);
  expect(got.messageId).toBe(sent.messageId);
  expect(got.payload.byteOffset).toBe(0);
  expect(got.payload.byteLength).toBe(sent.payload.byteLength);
  expect(firstDifference(got.payload, sent.payload)).toBe(-1);
}

/** A valid one-frame message to corrupt, as a mutable copy. */
function validFrameBytes(payloadLength = 8): Uint8Array<ArrayBuffer> {
  const [buf] = encodeMessage(baseMessage(FrameType.UPDATE, new Uint8Array(payloadLength)));
  if (buf === undefined) throw new Error("no frame");
  return new Uint8Array(buf.slice(0));
}

function setU16(bytes: Uint8Array, offset: number, v: number): void {
  new DataView(bytes.buffer, bytes.byteOffset).setUint16(offset, v, true);
}

function setU32(bytes: Uint8Array, offset: number, v: number): void {
  new DataView(bytes.buffer, bytes.byteOffset).setUint32(offset, v, true);
}

/** A hand-made frame header + payload (bypassing encodeMessage's geometry). */
function rawFrame(fields: {
  messageId?: number;
  chunkIndex: number;
  chunkCount: number;
  totalLength: number;
  chunkLength: number;
  clock?: number;
}): ArrayBuffer {
  const bytes = new Uint8Array(HEADER_BYTES + fields.chunkLength);
  bytes.set([FRAME_MAGIC_0, FRAME_MAGIC_1, FRAME_VERSION, FrameType.UPDATE, Encoding.F32, 0]);
  setU16(bytes, 6, 7);
  setU32(bytes, 8, 3);
  setU32(bytes, 12, fields.clock ?? 42);
  setU32(bytes, 16, fields.messageId ?? 1);
  setU16(bytes, 20, fields.chunkIndex);
  setU16(bytes, 22, fields.chunkCount);
  setU32(bytes, 24, fields.totalLength);
  setU32(bytes, 28, fields.chunkLength);
  return bytes.buffer;
}

// ---------------------------------------------------------------------------
// Header layout
// ---------------------------------------------------------------------------

describe("header layout", () => {
  it("writes every field at its documented little-endian offset", () => {
    const payload = Uint8Array.from([9, 8, 7, 6, 5]);
    const [buf] = encodeMessage({
      type: FrameType.SNAPSHOT,
      encoding: Encoding.F32,
      job: 0xbeef,
      sender: 0xdeadbeef,
      clock: 0x01020304,
      messageId: 0xfffffffe,
      payload,
    });
    if (buf === undefined) throw new Error("no frame");
    expect(buf.byteLength).toBe(HEADER_BYTES + 5);
    const b = new Uint8Array(buf);
    expect([...b.subarray(0, 6)]).toEqual([0x47, 0x44, 1, FrameType.SNAPSHOT, Encoding.F32, 0]);
    expect([...b.subarray(6, 8)]).toEqual([0xef, 0xbe]);
    expect([...b.subarray(8, 12)]).toEqual([0xef, 0xbe, 0xad, 0xde]);
    expect([...b.subarray(12, 16)]).toEqual([4, 3, 2, 1]);
    expect([...b.subarray(16, 20)]).toEqual([0xfe, 0xff, 0xff, 0xff]);
    expect([...b.subarray(20, 24)]).toEqual([0, 0, 1, 0]); // index 0, count 1
    expect([...b.subarray(24, 28)]).toEqual([5, 0, 0, 0]);
    expect([...b.subarray(28, 32)]).toEqual([5, 0, 0, 0]);
    expect([...b.subarray(32)]).toEqual([9, 8, 7, 6, 5]);
    const frame = decodeOk(buf);
    expect(frame).toMatchObject({
      type: FrameType.SNAPSHOT,
      job: 0xbeef,
      sender: 0xdeadbeef,
      clock: 0x01020304,
      messageId: 0xfffffffe,
      chunkIndex: 0,
      chunkCount: 1,
      totalLength: 5,
    });
  });

  it("rejects caller bugs in encodeMessage with RangeError", () => {
    const ok = baseMessage(FrameType.UPDATE, new Uint8Array(4));
    expect(() => encodeMessage({ ...ok, job: 0x10000 })).toThrow(RangeError);
    expect(() => encodeMessage({ ...ok, sender: -1 })).toThrow(RangeError);
    expect(() => encodeMessage({ ...ok, clock: 1.5 })).toThrow(RangeError);
    expect(() => encodeMessage({ ...ok, messageId: 2 ** 32 })).toThrow(RangeError);
    expect(() => encodeMessage({ ...ok, type: 99 as FrameType })).toThrow(RangeError);
    expect(() => encodeMessage({ ...ok, encoding: 0 as Encoding })).toThrow(RangeError);
    expect(() => encodeMessage(ok, HEADER_BYTES)).toThrow(RangeError);
    expect(() => encodeMessage(ok, MAX_FRAME_BYTES + 1)).toThrow(RangeError);
    // 70,000 chunks of one byte exceed the u16 chunk count.
    expect(() => encodeMessage({ ...ok, payload: new Uint8Array(70_000) }, HEADER_BYTES + 1)).toThrow(
      RangeError,
    );
  });
});

// ---------------------------------------------------------------------------
// Round trips
// ---------------------------------------------------------------------------

describe("round trips", () => {
  const rand = rng(0x5eed);

  it("UPDATE of ~1 MB: many chunks, each below 64 KiB, delivered out of order", () => {
    const values = randomFloats(rand, 262_144); // 1 MiB of f32
    const sent = baseMessage(FrameType.UPDATE, encodeUpdatePayload(values));
    const frames = encodeMessage(sent);
    expect(frames.length).toBe(Math.ceil((4 * 262_144) / (DEFAULT_MAX_CHUNK_BYTES - HEADER_BYTES)));
    for (const f of frames) {
      expect(f.byteLength).toBeLessThan(64 * 1024);
      expect(f.byteLength).toBeLessThanOrEqual(DEFAULT_MAX_CHUNK_BYTES);
    }
    const got = reassemble(shuffle(frames, rand));
    expectSameMessage(got, sent);
    const decoded = decodeUpdatePayload(got.payload, values.length);
    if (!decoded.ok) throw new Error(decoded.reason);
    expect(decoded.value.length).toBe(values.length);
    expect(firstDifference(decoded.value, values)).toBe(-1);
  });

  it("SNAPSHOT of ~1 MB with a vector clock, reversed order", () => {
    const params = randomFloats(rand, 250_000);
    const vectorClock = new Map([
      [9, 17],
      [0, 20],
      [0xffffffff, 0],
      [4, 0xffffffff],
    ]);
    const sent = baseMessage(FrameType.SNAPSHOT, encodeSnapshotPayload({ vectorClock, params }));
    const frames = encodeMessage(sent);
    expect(frames.length).toBeGreaterThan(10);
    for (const f of frames) expect(f.byteLength).toBeLessThan(64 * 1024);
    const got = reassemble([...frames].reverse());
    expectSameMessage(got, sent);
    const decoded = decodeSnapshotPayload(got.payload, params.length);
    if (!decoded.ok) throw new Error(decoded.reason);
    expect(decoded.value.params.length).toBe(params.length);
    expect(firstDifference(decoded.value.params, params)).toBe(-1);
    expect([...decoded.value.vectorClock]).toEqual([
      [0, 20],
      [4, 0xffffffff],
      [9, 17],
      [0xffffffff, 0],
    ]);
  });

  it("SNAPSHOT_REQUEST and HEARTBEAT: a 0-byte payload is one header-only frame", () => {
    for (const type of [FrameType.SNAPSHOT_REQUEST, FrameType.HEARTBEAT]) {
      const sent = baseMessage(type, new Uint8Array(0));
      const frames = encodeMessage(sent);
      expect(frames.length).toBe(1);
      expect(frames[0]?.byteLength).toBe(HEADER_BYTES);
      expectSameMessage(reassemble(frames), sent);
    }
  });

  it("RESEND_REQUEST", () => {
    const payload = encodeResendRequestPayload({ target: 0xfffffff0, fromClock: 123_456 });
    expect(payload.byteLength).toBe(8);
    const sent = baseMessage(FrameType.RESEND_REQUEST, payload);
    const got = reassemble(encodeMessage(sent));
    expectSameMessage(got, sent);
    expect(decodeResendRequestPayload(got.payload)).toEqual({
      ok: true,
      value: { target: 0xfffffff0, fromClock: 123_456 },
    });
  });

  it("chunk boundaries: stride 1, exact multiples, one past a multiple, max frame size", () => {
    const cases: Array<[payloadBytes: number, maxChunkBytes: number]> = [
      [100, HEADER_BYTES + 1],
      [3 * 1000, HEADER_BYTES + 1000],
      [3 * 1000 + 1, HEADER_BYTES + 1000],
      [1, HEADER_BYTES + 1000],
      [300_000, MAX_FRAME_BYTES],
    ];
    let id = 1;
    for (const [n, max] of cases) {
      const sent = baseMessage(FrameType.UPDATE, randomBytes(rand, n), { messageId: id++ });
      const frames = encodeMessage(sent, max);
      expect(frames.length).toBe(Math.max(1, Math.ceil(n / (max - HEADER_BYTES))));
      for (const f of frames) expect(f.byteLength).toBeLessThanOrEqual(max);
      expectSameMessage(reassemble(shuffle(frames, rand)), sent);
    }
  });

  it("interleaved messages from several senders reassemble independently", () => {
    const r = new Reassembler(roomy);
    const sent = [1, 2, 3].map((sender) =>
      baseMessage(FrameType.UPDATE, randomBytes(rand, 5_000), { sender, messageId: 5 }),
    );
    const frames = shuffle(
      sent.flatMap((m) => encodeMessage(m, HEADER_BYTES + 512)),
      rand,
    );
    const done: ReceivedMessage[] = [];
    for (const f of frames) {
      const result = r.push(decodeOk(f));
      if (result.status === "complete") done.push(result.message);
      else expect(result.status).toBe("pending");
    }
    expect(done.map((m) => m.sender).sort()).toEqual([1, 2, 3]);
    for (const m of done) expectSameMessage(m, sent[m.sender - 1] as OutgoingMessage);
    expect(r.pendingBytes()).toBe(0);
  });

  it("decoded payloads are fresh, aligned and independent of the frame", () => {
    const values = Float32Array.from([1.5, -2, 3e-30]);
    const [buf] = encodeMessage(baseMessage(FrameType.UPDATE, encodeUpdatePayload(values)));
    if (buf === undefined) throw new Error("no frame");
    // Put the payload at an odd offset, as a slice of a larger buffer would be.
    const odd = new Uint8Array(buf.byteLength + 1);
    odd.set(new Uint8Array(buf), 1);
    const payload = odd.subarray(1 + HEADER_BYTES);
    const decoded = decodeUpdatePayload(payload, 3);
    if (!decoded.ok) throw new Error(decoded.reason);
    expect(decoded.value).toEqual(values);
    odd.fill(0);
    expect(decoded.value).toEqual(values);
    const r = new Reassembler(roomy);
    const result = r.push(decodeOk(buf));
    if (result.status !== "complete") throw new Error(result.status);
    new Uint8Array(buf).fill(0);
    expect(result.message.payload.buffer).not.toBe(buf);
    expect(decodeUpdatePayload(result.message.payload, 3)).toEqual({ ok: true, value: values });
  });

  it("MessageIdSource counts up modulo 2^32 from a given or random start", () => {
    const ids = new MessageIdSource(0xfffffffe);
    expect([ids.next(), ids.next(), ids.next()]).toEqual([0xfffffffe, 0xffffffff, 0]);
    const random = new MessageIdSource().next();
    expect(Number.isInteger(random) && random >= 0 && random <= 0xffffffff).toBe(true);
  });
});

// ---------------------------------------------------------------------------
// Rejections
// ---------------------------------------------------------------------------

describe("every rejection reason is reachable", () => {
  /** Two chunks (stride 4) of an 8-byte message, as decoded frames. */
  function twoChunks(messageId = 1, total = 8): [Frame, Frame] {
    const frames = encodeMessage(
      baseMessage(FrameType.UPDATE, new Uint8Array(total), { messageId }),
      HEADER_BYTES + total / 2,
    ).map(decodeOk);
    const [a, b] = frames;
    if (a === undefined || b === undefined || frames.length !== 2) throw new Error("expected 2");
    return [a, b];
  }

  const producers: Record<RejectReason, () => string> = {
    "not-binary": () => decodeReason(new Uint8Array(40) as unknown as ArrayBuffer),
    "too-short": () => decodeReason(validFrameBytes().buffer.slice(0, HEADER_BYTES - 1)),
    "too-large": () => {
      expect(decodeReason(new ArrayBuffer(MAX_FRAME_BYTES + 1))).toBe("too-large");
      const r = new Reassembler({ ...roomy, maxMessageBytes: 7 });
      return pushReason(r.push(twoChunks()[0]));
    },
    "bad-magic": () => {
      const b = validFrameBytes();
      b[1] = 0x45;
      return decodeReason(b.buffer);
    },
    "bad-version": () => {
      const b = validFrameBytes();
      b[2] = 2;
      return decodeReason(b.buffer);
    },
    "bad-type": () => {
      const b = validFrameBytes();
      b[3] = 0;
      expect(decodeReason(b.buffer)).toBe("bad-type");
      b[3] = 99;
      return decodeReason(b.buffer);
    },
    "bad-encoding": () => {
      const b = validFrameBytes();
      b[4] = 7; // past the last defined encoding
      return decodeReason(b.buffer);
    },
    "bad-flags": () => {
      const b = validFrameBytes();
      b[5] = 0x80;
      return decodeReason(b.buffer);
    },
    "bad-chunk-index": () => {
      expect(
        decodeReason(rawFrame({ chunkIndex: 0, chunkCount: 0, totalLength: 0, chunkLength: 0 })),
      ).toBe("bad-chunk-index");
      return decodeReason(rawFrame({ chunkIndex: 2, chunkCount: 2, totalLength: 8, chunkLength: 4 }));
    },
    "length-mismatch": () => {
      // chunkLength field disagrees with the frame size.
      const b = validFrameBytes(8);
      setU32(b, 28, 7);
      expect(decodeReason(b.buffer)).toBe("length-mismatch");
      // Single chunk shorter than the total.
      expect(
        decodeReason(rawFrame({ chunkIndex: 0, chunkCount: 1, totalLength: 9, chunkLength: 8 })),
      ).toBe("length-mismatch");
      // Chunk longer than the total.
      expect(
        decodeReason(rawFrame({ chunkIndex: 0, chunkCount: 2, totalLength: 3, chunkLength: 4 })),
      ).toBe("length-mismatch");
      // Empty chunk of a multi-chunk message.
      expect(
        decodeReason(rawFrame({ chunkIndex: 0, chunkCount: 2, totalLength: 0, chunkLength: 0 })),
      ).toBe("length-mismatch");
      // Full chunk too short for count (3 chunks of 2 cannot make 10 bytes).
      expect(
        decodeReason(rawFrame({ chunkIndex: 0, chunkCount: 3, totalLength: 10, chunkLength: 2 })),
      ).toBe("length-mismatch");
      // Last chunk longer than the stride it implies: (10 - 6) / 2 = 2 < 6.
      expect(
        decodeReason(rawFrame({ chunkIndex: 2, chunkCount: 3, totalLength: 10, chunkLength: 6 })),
      ).toBe("length-mismatch");
      // Last chunk implying a fractional stride: (10 - 3) / 2.
      return decodeReason(rawFrame({ chunkIndex: 2, chunkCount: 3, totalLength: 10, chunkLength: 3 }));
    },
    "chunk-mismatch": () => {
      const r = new Reassembler(roomy);
      const [a] = twoChunks(1, 8);
      const [, otherTotal] = twoChunks(1, 10); // same key, total 10
      expect(r.push(a).status).toBe("pending");
      const result = pushReason(r.push(otherTotal));
      expect(r.pendingBytes()).toBe(0); // the set is discarded
      // Stride disagreement.
      const s = new Reassembler(roomy);
      // 9 bytes as 4+4+1 (stride 4) or 3+3+3 (stride 3): each frame valid alone.
      const first = decodeOk(rawFrame({ chunkIndex: 0, chunkCount: 3, totalLength: 9, chunkLength: 4 }));
      const last = decodeOk(rawFrame({ chunkIndex: 2, chunkCount: 3, totalLength: 9, chunkLength: 3 }));
      expect(s.push(first).status).toBe("pending");
      expect(pushReason(s.push(last))).toBe("chunk-mismatch");
      // Clock disagreement.
      const c = new Reassembler(roomy);
      expect(c.push(a).status).toBe("pending");
      const [, b] = twoChunks(1, 8);
      expect(pushReason(c.push({ ...b, clock: 43 }))).toBe("chunk-mismatch");
      return result;
    },
    "too-many-pending": () => {
      const r = new Reassembler({ ...roomy, maxPendingMessages: 2 });
      expect(r.push(twoChunks(1)[0]).status).toBe("pending");
      expect(r.push(twoChunks(2)[0]).status).toBe("pending");
      const result = pushReason(r.push(twoChunks(3)[0]));
      expect(r.pendingMessages()).toBe(2);
      return result;
    },
    "over-budget": () => {
      const r = new Reassembler({ ...roomy, maxPendingBytes: 12 });
      expect(r.push(twoChunks(1)[0]).status).toBe("pending");
      const result = pushReason(r.push(twoChunks(2)[0]));
      expect(r.pendingBytes()).toBe(8);
      return result;
    },
  };

  it("the table covers the closed union", () => {
    expect(Object.keys(producers).sort()).toEqual([...REJECT_REASONS].sort());
  });

  for (const reason of REJECT_REASONS) {
    it(reason, () => {
      expect(producers[reason]()).toBe(reason);
    });
  }

  const payloadProducers: Record<PayloadRejectReason, () => string> = {
    "wrong-length": () => {
      const bytes = encodeUpdatePayload(new Float32Array(4));
      expect(decodeUpdatePayload(bytes, 5)).toEqual({ ok: false, reason: "wrong-length" });
      expect(decodeUpdatePayload(bytes.subarray(1), 4)).toEqual({ ok: false, reason: "wrong-length" });
      expect(decodeUpdatePayload(bytes, -1)).toEqual({ ok: false, reason: "wrong-length" });
      const snap = encodeSnapshotPayload({ vectorClock: new Map([[1, 2]]), params: new Float32Array(3) });
      expect(decodeSnapshotPayload(snap, 3).ok).toBe(true);
      expect(decodeSnapshotPayload(snap, 2)).toEqual({ ok: false, reason: "wrong-length" });
      expect(decodeSnapshotPayload(snap.subarray(0, 3), 0)).toEqual({ ok: false, reason: "wrong-length" });
      const huge = snap.slice();
      setU32(huge, 0, 0xffffffff); // claims 4 billion entries
      expect(decodeSnapshotPayload(huge, 3)).toEqual({ ok: false, reason: "wrong-length" });
      expect(decodeResendRequestPayload(new Uint8Array(9))).toEqual({ ok: false, reason: "wrong-length" });
      const r = decodeResendRequestPayload(new Uint8Array(7));
      return r.ok ? "ok" : r.reason;
    },
    "non-finite": () => {
      for (const bad of [Number.NaN, Infinity, -Infinity]) {
        const values = Float32Array.from([0, 1, bad]);
        expect(decodeUpdatePayload(encodeUpdatePayload(values), 3)).toEqual({
          ok: false,
          reason: "non-finite",
        });
      }
      const snap = encodeSnapshotPayload({
        vectorClock: new Map(),
        params: Float32Array.from([1, Number.NaN]),
      });
      const r = decodeSnapshotPayload(snap, 2);
      return r.ok ? "ok" : r.reason;
    },
    "bad-vector-clock": () => {
      const snap = encodeSnapshotPayload({
        vectorClock: new Map([
          [1, 10],
          [2, 20],
        ]),
        params: new Float32Array(1),
      });
      setU32(snap, 12, 1); // second worker number equals the first
      const r = decodeSnapshotPayload(snap, 1);
      return r.ok ? "ok" : r.reason;
    },
  };

  it("payload rejections cover their closed union", () => {
    expect(Object.keys(payloadProducers).sort()).toEqual([...PAYLOAD_REJECT_REASONS].sort());
    for (const reason of PAYLOAD_REJECT_REASONS) expect(payloadProducers[reason]()).toBe(reason);
  });

  it("payload encoders refuse non-u32 worker numbers and clocks", () => {
    expect(() =>
      encodeSnapshotPayload({ vectorClock: new Map([[-1, 0]]), params: new Float32Array(0) }),
    ).toThrow(RangeError);
    expect(() => encodeResendRequestPayload({ target: 1, fromClock: 2 ** 32 })).toThrow(RangeError);
  });
});

// ---------------------------------------------------------------------------
// Reassembler behaviour
// ---------------------------------------------------------------------------

describe("Reassembler", () => {
  function fakeClock(): { now: () => number; advance: (ms: number) => void } {
    let t = 0;
    return { now: () => t, advance: (ms) => (t += ms) };
  }

  const threeChunks = (messageId: number, sender = 3): Frame[] =>
    encodeMessage(
      baseMessage(FrameType.UPDATE, Uint8Array.from([1, 2, 3, 4, 5, 6, 7, 8, 9, 10]), {
        messageId,
        sender,
      }),
      HEADER_BYTES + 4,
    ).map(decodeOk);

  it("ignores duplicate chunks, before and after completion", () => {
    const r = new Reassembler(roomy);
    const [a, b, c] = threeChunks(1);
    if (a === undefined || b === undefined || c === undefined) throw new Error("3 chunks");
    expect(r.push(b).status).toBe("pending");
    expect(r.pendingBytes()).toBe(10);
    expect(r.push(b).status).toBe("duplicate");
    expect(r.push(a).status).toBe("pending");
    expect(r.push(a).status).toBe("duplicate");
    expect(r.pendingBytes()).toBe(10);
    const result = r.push(c);
    if (result.status !== "complete") throw new Error(result.status);
    expect([...result.message.payload]).toEqual([1, 2, 3, 4, 5, 6, 7, 8, 9, 10]);
    // A late copy does not start a new set.
    expect(r.push(a).status).toBe("duplicate");
    expect(r.pendingMessages()).toBe(0);
    // Single-chunk messages are remembered too.
    const [hb] = encodeMessage(baseMessage(FrameType.HEARTBEAT, new Uint8Array(0), { messageId: 9 }));
    if (hb === undefined) throw new Error("no frame");
    expect(r.push(decodeOk(hb)).status).toBe("complete");
    expect(r.push(decodeOk(hb)).status).toBe("duplicate");
  });

  it("without completed-key memory a late chunk starts a set that later expires", () => {
    const clock = fakeClock();
    const r = new Reassembler({ ...roomy, rememberCompleted: 0, now: clock.now });
    const frames = threeChunks(1);
    for (const f of frames) r.push(f);
    expect(r.push(frames[0] as Frame).status).toBe("pending");
    clock.advance(roomy.timeoutMs + 1);
    expect(r.expire()).toBe(1);
  });

  it("completed keys are forgotten after timeoutMs", () => {
    const clock = fakeClock();
    const r = new Reassembler({ ...roomy, now: clock.now });
    const frames = threeChunks(1);
    for (const f of frames) r.push(f);
    clock.advance(roomy.timeoutMs + 1);
    r.expire();
    expect(r.push(frames[0] as Frame).status).toBe("pending");
  });

  it("expire() drops sets idle for more than timeoutMs and returns how many", () => {
    const clock = fakeClock();
    const r = new Reassembler({ ...roomy, timeoutMs: 1000, now: clock.now });
    const m1 = threeChunks(1);
    const m2 = threeChunks(2);
    r.push(m1[0] as Frame);
    clock.advance(600);
    r.push(m2[0] as Frame);
    clock.advance(400);
    expect(r.expire()).toBe(0); // m1 is exactly 1000 ms idle: not older
    clock.advance(1);
    r.push(m2[1] as Frame); // progress keeps m2 alive
    expect(r.expire()).toBe(1);
    expect(r.pendingMessages()).toBe(1);
    expect(r.pendingBytes()).toBe(10);
    clock.advance(1001);
    expect(r.expire()).toBe(1);
    expect(r.pendingBytes()).toBe(0);
    expect(r.expire()).toBe(0);
  });

  it("a new message at the cap expires stale sets first", () => {
    const clock = fakeClock();
    const r = new Reassembler({ ...roomy, maxPendingMessages: 1, timeoutMs: 100, now: clock.now });
    expect(r.push(threeChunks(1)[0] as Frame).status).toBe("pending");
    expect(pushReason(r.push(threeChunks(2)[0] as Frame))).toBe("too-many-pending");
    clock.advance(101);
    expect(r.push(threeChunks(2)[0] as Frame).status).toBe("pending");
    expect(r.pendingMessages()).toBe(1);
  });

  it("discardSender() and clear() release memory", () => {
    const r = new Reassembler(roomy);
    r.push(threeChunks(1, 1)[0] as Frame);
    r.push(threeChunks(1, 2)[0] as Frame);
    r.push(threeChunks(2, 2)[0] as Frame);
    expect(r.discardSender(2)).toBe(2);
    expect(r.pendingBytes()).toBe(10);
    r.clear();
    expect(r.pendingBytes()).toBe(0);
    expect(r.pendingMessages()).toBe(0);
  });

  it("a rejected chunk of a pending set discards the set", () => {
    const r = new Reassembler(roomy);
    const [a, b] = threeChunks(1);
    r.push(a as Frame);
    expect(pushReason(r.push({ ...(b as Frame), chunkIndex: 7 }))).toBe("bad-chunk-index");
    expect(r.pendingMessages()).toBe(0);
    expect(r.pendingBytes()).toBe(0);
  });

  it("push() never throws on hand-built frames with out-of-range fields", () => {
    const r = new Reassembler(roomy);
    const base = threeChunks(1)[0] as Frame;
    const weird: Array<Partial<Frame>> = [
      { chunkIndex: -1 },
      { chunkIndex: 0.5 },
      { chunkCount: 1e9 },
      { totalLength: -5 },
      { totalLength: 2 ** 40 },
      { totalLength: Number.NaN },
    ];
    for (const w of weird) expect(r.push({ ...base, ...w }).status).toBe("rejected");
    expect(r.pendingBytes()).toBe(0);
  });

  it("rejects nonsensical options", () => {
    expect(() => new Reassembler({ ...roomy, maxMessageBytes: -1 })).toThrow(RangeError);
    expect(() => new Reassembler({ ...roomy, maxPendingMessages: 1.5 })).toThrow(RangeError);
    expect(() => new Reassembler({ ...roomy, timeoutMs: Number.NaN })).toThrow(RangeError);
  });
});

// ---------------------------------------------------------------------------
// Fuzz
// ---------------------------------------------------------------------------

describe("fuzz", () => {
  it("5,000 random and mutated buffers: no exception escapes, memory stays capped", () => {
    const started = performance.now();
    const rand = rng(20240611);
    const options = {
      maxMessageBytes: 200_000,
      maxPendingMessages: 4,
      maxPendingBytes: 500_000,
      timeoutMs: 50,
    };
    let t = 0;
    const r = new Reassembler({ ...options, now: () => t });

    // A pool of valid frames to mutate: several multi-chunk messages.
    const pool: ArrayBuffer[] = [];
    for (let id = 0; id < 6; id++) {
      const n = randInt(rand, 150_000);
      pool.push(
        ...encodeMessage(
          baseMessage(FrameType.UPDATE, randomBytes(rand, n), { messageId: id, sender: id % 3 }),
          HEADER_BYTES + 1 + randInt(rand, 20_000),
        ),
      );
    }

    let cursor = 0;
    const counts = { ok: 0, rejected: 0, complete: 0 };
    const reasons = new Set<string>();
    for (let i = 0; i < 5_000; i++) {
      let buf: ArrayBuffer;
      const kind = randInt(rand, 4);
      if (kind === 0) {
        // Pure noise, sometimes with a valid magic/version prefix.
        const bytes = randomBytes(rand, randInt(rand, 200));
        if (bytes.length >= 3 && rand() < 0.5) bytes.set([FRAME_MAGIC_0, FRAME_MAGIC_1, FRAME_VERSION]);
        buf = bytes.buffer;
      } else if (kind === 1) {
        // The next valid frame of the pool, in order, so that messages complete.
        buf = pool[cursor++ % pool.length] as ArrayBuffer;
      } else if (kind === 2) {
        // A valid frame with a few header bytes mutated.
        const bytes = new Uint8Array((pool[randInt(rand, pool.length)] as ArrayBuffer).slice(0));
        const flips = 1 + randInt(rand, 3);
        for (let f = 0; f < flips; f++) {
          // Bias towards the fields that drive reassembly (offsets 16..31).
          const at = rand() < 0.7 ? 16 + randInt(rand, 16) : randInt(rand, HEADER_BYTES);
          bytes[at] = randInt(rand, 256);
        }
        buf = bytes.buffer;
      } else {
        // Truncated or extended valid frame.
        const src = pool[randInt(rand, pool.length)] as ArrayBuffer;
        const len = Math.max(0, src.byteLength + randInt(rand, 64) - 32);
        const bytes = new Uint8Array(len);
        bytes.set(new Uint8Array(src).subarray(0, Math.min(len, src.byteLength)));
        buf = bytes.buffer;
      }

      // Any exception escaping decodeFrame or push fails the test.
      const decoded = decodeFrame(buf);
      if (decoded.ok) {
        counts.ok++;
        const pushed = r.push(decoded.frame);
        if (pushed.status === "complete") {
          counts.complete++;
          expect(pushed.message.payload.byteLength).toBeLessThanOrEqual(options.maxMessageBytes);
        }
        if (pushed.status === "rejected") reasons.add(pushed.reason);
        // The payload decoders never throw on whatever arrives.
        const payload = decoded.frame.payload;
        decodeUpdatePayload(payload, payload.byteLength >>> 2);
        decodeSnapshotPayload(payload, randInt(rand, 100));
        decodeResendRequestPayload(payload);
      } else {
        counts.rejected++;
        reasons.add(decoded.reason);
      }
      expect(r.pendingBytes()).toBeLessThanOrEqual(options.maxPendingBytes);
      expect(r.pendingBytes()).toBeLessThanOrEqual(options.maxPendingMessages * options.maxMessageBytes);
      expect(r.pendingMessages()).toBeLessThanOrEqual(options.maxPendingMessages);
      t += rand() * 5;
      if (i % 97 === 0) r.expire();
    }
    const elapsed = performance.now() - started;
    // The mix exercised every path, not just the first check.
    expect(counts.ok).toBeGreaterThan(500);
    expect(counts.rejected).toBeGreaterThan(500);
    expect(counts.complete).toBeGreaterThan(0);
    expect(reasons.size).toBeGreaterThan(6);
    expect(elapsed).toBeLessThan(5_000);
  });
});
