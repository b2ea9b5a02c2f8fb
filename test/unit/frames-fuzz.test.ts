/**
 * Fuzzing the receive path of compressed updates, end to end in Node:
 * frames (client/peer/frames.ts) → per-peer reassembly → update decoding
 * (client/compress.ts), as the page runs it. frames.test.ts already fuzzes
 * decodeFrame and the Reassembler with random and mutated F32 frames; here
 * the messages are compressed updates in every encoding, several peers
 * share the pipeline, and the faults are targeted: lying chunk counts, huge
 * totals, chunk sets that never complete, truncated headers, and payloads
 * that reassemble fine but lie inside (counts, indices, scales, codes).
 */
import { describe, expect, it } from "vitest";
import { rng } from "../support/random.ts";
import { ErrorFeedback, decodeUpdate, encodeUpdate, parseCompression, type Compression } from "../../client/compress.ts";
import { Encoding, FrameType, HEADER_BYTES, Reassembler, decodeFrame, encodeMessage } from "../../client/peer/frames.ts";

const pick = <T>(rand: () => number, xs: readonly T[]): T => xs[Math.floor(rand() * xs.length)] as T;

const SETTINGS = ["none", "fp16", "int8", "topk:0.05", "topk:0.05+fp16", "topk:0.05+int8"].map((t) => {
  const p = parseCompression(t);
  if (!p.ok) throw new Error(p.message);
  return p.value;
});

const N = 3000;
const CAPS = { maxMessageBytes: 4 * N + 1024, maxPendingMessages: 8, timeoutMs: 100 };

/** One peer's link as the page holds it: a reassembler and a count of refusals by reason. */
class Link {
  readonly reassembler: Reassembler;
  readonly refusals = new Map<string, number>();
  readonly applied: Float32Array[] = [];

  constructor(now: () => number) {
    this.reassembler = new Reassembler({ ...CAPS, now });
  }

  get refused(): number {
    let s = 0;
    for (const v of this.refusals.values()) s += v;
    return s;
  }

  receive(buf: ArrayBuffer): void {
    const d = decodeFrame(buf);
    if (!d.ok) return this.refuse(d.reason);
    const r = this.reassembler.push(d.frame);
    if (r.status === "rejected") return this.refuse(r.reason);
    if (r.status !== "complete") return;
    const u = decodeUpdate(r.message.encoding, r.message.payload, N);
    if (!u.ok) return this.refuse(u.reason);
    // What a replica would apply: the right length, every value finite.
    if (u.value.length !== N || !u.value.every(Number.isFinite)) throw new Error("a decoded update is malformed");
    this.applied.push(u.value);
  }

  private refuse(reason: string): void {
    this.refusals.set(reason, (this.refusals.get(reason) ?? 0) + 1);
  }
}

function update(rand: () => number, n = N): Float32Array {
  const u = new Float32Array(n);
  for (let i = 0; i < n; i++) u[i] = (rand() - 0.5) * 10 ** (rand() * 4 - 4);
  return u;
}

/** Frames of one compressed update, split into small chunks so that messages span many frames. */
function framesOf(c: Compression, u: Float32Array, sender: number, messageId: number, chunk: number): { frames: ArrayBuffer[]; decoded: Float32Array } {
  const ef = new ErrorFeedback(c, N);
  const { encoded, decoded } = ef.encode(u);
  const frames = encodeMessage({ type: FrameType.UPDATE, encoding: encoded.encoding, job: 0, sender, clock: messageId, messageId, payload: encoded.payload }, chunk);
  return { frames, decoded };
}

function setU16(buf: ArrayBuffer, at: number, v: number): ArrayBuffer {
  const b = buf.slice(0);
  new DataView(b).setUint16(at, v, true);
  return b;
}
function setU32(buf: ArrayBuffer, at: number, v: number): ArrayBuffer {
  const b = buf.slice(0);
  new DataView(b).setUint32(at, v >>> 0, true);
  return b;
}

/** A message whose frames are valid but whose compressed payload lies. */
function lyingPayload(rand: () => number, sender: number, id: number): ArrayBuffer[] {
  const c = pick(rand, SETTINGS);
  const p = encodeUpdate(update(rand), c);
  const bytes = p.payload.slice();
  const view = new DataView(bytes.buffer);
  const sparse = p.encoding >= Encoding.SPARSE_F32;
  const kind = Math.floor(rand() * 5);
  if (kind === 0 && sparse) view.setUint32(0, N + 1 + Math.floor(rand() * 1e9), true); // count beyond n
  else if (kind === 1 && sparse) view.setUint32(4, view.getUint32(4, true) + 1 + Math.floor(rand() * 100), true); // index bytes lie
  else if (kind === 2 && bytes.length > 12) view.setFloat32(sparse ? 8 : 0, pick(rand, [Number.NaN, -1, Infinity, 3e38]), true); // value or scale
  else if (kind === 3 && bytes.length > 0) bytes[bytes.length - 1] = 0xff; // an index varint that never ends, or a -1 code / NaN half
  else return [new ArrayBuffer(HEADER_BYTES - 1 - Math.floor(rand() * 8))]; // truncated header
  return encodeMessage({ type: FrameType.UPDATE, encoding: p.encoding, job: 0, sender, clock: id, messageId: id, payload: bytes }, 64 + Math.floor(rand() * 2000));
}

describe("fuzzing compressed updates through frames and reassembly", () => {
  it("4 peers, 3 honest and 1 faulty, 6,000 frames: nothing throws, memory stays capped, only the faulty peer is refused", () => {
    const rand = rng(0xc0ffee);
    let t = 0;
    const now = (): number => t;
    const links = [new Link(now), new Link(now), new Link(now), new Link(now)];
    const bad = 3;
    const expected: Float32Array[][] = [[], [], []];
    let sent = 0;
    let id = 1;
    let maxPendingBytes = 0;
    let maxPendingMessages = 0;
    while (sent < 6_000) {
      const from = Math.floor(rand() * 4);
      let frames: ArrayBuffer[];
      if (from !== bad) {
        const { frames: f, decoded } = framesOf(pick(rand, SETTINGS), update(rand), from, id++, HEADER_BYTES + 50 + Math.floor(rand() * 3000));
        frames = f;
        expected[from]?.push(decoded);
      } else {
        const base = framesOf(pick(rand, SETTINGS), update(rand), from, id++, HEADER_BYTES + 100 + Math.floor(rand() * 500)).frames;
        const first = base[0] as ArrayBuffer;
        const kind = Math.floor(rand() * 6);
        if (kind === 0) {
          // Lying chunk count: claims more chunks than it will ever send.
          frames = base.map((f) => setU16(f, 22, Math.min(0xffff, base.length + 1 + Math.floor(rand() * 1000))));
        } else if (kind === 1) {
          // Huge total, beyond the message cap, with a chunk count that fits it.
          const stride = first.byteLength - HEADER_BYTES;
          const count = Math.min(0xffff, Math.ceil(CAPS.maxMessageBytes / stride) + 2 + Math.floor(rand() * 1000));
          frames = [setU32(setU16(first, 22, count), 24, stride * (count - 1) + 1 + Math.floor(rand() * stride))];
        } else if (kind === 2) {
          // A chunk set that never completes: one chunk missing.
          frames = base.length > 1 ? base.filter((_, i) => i !== Math.floor(rand() * base.length)) : [setU16(first, 22, 2)];
        } else if (kind === 3) {
          // Truncated frames.
          frames = base.map((f) => f.slice(0, Math.floor(rand() * f.byteLength)));
        } else if (kind === 4) {
          // A chunk that disagrees with its set (clock changed mid-message).
          frames = base.map((f, i) => (i === base.length - 1 && base.length > 1 ? setU32(f, 12, 0xdead) : f));
          if (base.length === 1) frames = [setU16(first, 20, 1)];
        } else {
          frames = lyingPayload(rand, from, id++);
        }
      }
      const link = links[from] as Link;
      for (const f of frames) {
        link.receive(f);
        sent++;
        t += rand() * 2;
        for (const l of links) {
          maxPendingBytes = Math.max(maxPendingBytes, l.reassembler.pendingBytes());
          maxPendingMessages = Math.max(maxPendingMessages, l.reassembler.pendingMessages());
        }
      }
      if (sent % 200 < frames.length) for (const l of links) l.reassembler.expire();
    }
    expect(maxPendingBytes).toBeLessThanOrEqual(CAPS.maxPendingMessages * CAPS.maxMessageBytes);
    expect(maxPendingMessages).toBeLessThanOrEqual(CAPS.maxPendingMessages);
    expect(maxPendingMessages).toBeGreaterThan(1); // sets that never complete did pile up
    // Honest peers: every update arrived, bit-identical to what the sender applied, nothing refused.
    for (let p = 0; p < 3; p++) {
      const link = links[p] as Link;
      expect(link.refused).toBe(0);
      const want = expected[p] as Float32Array[];
      expect(link.applied.length).toBe(want.length);
      const differ = link.applied.findIndex((u, i) => !u.every((v, j) => v === (want[i] as Float32Array)[j]));
      expect(differ).toBe(-1);
    }
    // The faulty peer: counted, by a spread of reasons from the frame layer and the update decoder.
    const faulty = links[bad] as Link;
    expect(faulty.refused).toBeGreaterThan(500);
    const reasons = [...faulty.refusals.keys()];
    expect(reasons).toEqual(expect.arrayContaining(["too-short", "too-large", "length-mismatch", "chunk-mismatch", "bad-count", "bad-index"]));
    expect(reasons.some((r) => r === "non-finite" || r === "bad-scale")).toBe(true);
    // Its sets that never complete are gone after the timeout: no memory held.
    t += CAPS.timeoutMs + 1;
    faulty.reassembler.expire();
    expect(faulty.reassembler.pendingBytes()).toBe(0);
  });

  it("5,000 random byte strings and bit-flipped payloads in every encoding: the decoder never throws and never yields a non-finite value", () => {
    const rand = rng(77);
    let refused = 0;
    let accepted = 0;
    const encodings = Object.values(Encoding);
    for (let i = 0; i < 5_000; i++) {
      let enc: number;
      let bytes: Uint8Array;
      if (i % 2 === 0) {
        enc = rand() < 0.95 ? pick(rand, encodings) : Math.floor(rand() * 256);
        bytes = Uint8Array.from({ length: Math.floor(rand() * 300) }, () => Math.floor(rand() * 256));
      } else {
        const p = encodeUpdate(update(rand, 200), pick(rand, SETTINGS));
        enc = p.encoding;
        bytes = p.payload.slice();
        for (let f = 0; f < 1 + Math.floor(rand() * 4); f++) {
          const at = Math.floor(rand() * bytes.length);
          if (bytes.length > 0) bytes[at] = (bytes[at] ?? 0) ^ (1 << Math.floor(rand() * 8));
        }
      }
      const n = i % 2 === 0 ? Math.floor(rand() * 400) : 200;
      const d = decodeUpdate(enc, bytes, n);
      if (d.ok) {
        accepted++;
        if (d.value.length !== n || !d.value.every(Number.isFinite)) throw new Error(`bad decode for encoding ${enc}`);
      } else refused++;
    }
    expect(refused).toBeGreaterThan(1000);
    expect(accepted).toBeGreaterThan(1000);
  });
});
