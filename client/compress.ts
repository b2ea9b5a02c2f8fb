/**
 * Update compression with error feedback, chosen per job
 * (`--compression none|fp16|int8|topk:RATIO`, combinable as
 * `topk:RATIO+fp16` or `topk:RATIO+int8`).
 *
 * Pure TypeScript (no DOM or Node imports): the worker encodes, the page
 * decodes, Node tests and benchmarks run the same code.
 *
 * The sender keeps a residual e (what earlier compression left out). For a
 * raw update u it encodes x = u + e, decodes its own payload with the same
 * decoder every receiver runs, applies that decoded update locally, sends the
 * payload, and keeps e' = x − decoded. So every replica applies bit-identical
 * values, and over time Σ decoded + e = Σ u (up to float rounding).
 *
 * Payload layouts (little-endian; the frame header's encoding byte names one,
 * see `Encoding` in peer/frames.ts; n is the job's parameter count):
 *
 * | encoding    | bytes                                                              |
 * |-------------|--------------------------------------------------------------------|
 * | F32         | n × f32                                                            |
 * | F16         | n × f16 (IEEE half; NaN and ±Inf refused)                          |
 * | INT8        | ⌈n/1024⌉ × f32 scale, then n × i8 (−127..127); value = q·scale      |
 * | SPARSE_F32  | u32 m, u32 indexBytes, m × f32, indices                            |
 * | SPARSE_F16  | u32 m, u32 indexBytes, m × f16, indices                            |
 * | SPARSE_INT8 | u32 m, u32 indexBytes, f32 scale, m × i8, indices                  |
 *
 * Sparse indices are m unsigned LEB128 varints (at most 5 bytes each), exactly
 * `indexBytes` long: the first is the first index, each next one the gap
 * minus one to the previous index, so indices are strictly ascending (no
 * duplicates) and every one must be below n. Scales are finite, ≥ 0 and small
 * enough that 127·scale is a finite f32. Decoders never throw: every refusal
 * is a reason from {@link UPDATE_REJECT_REASONS}.
 */
import { Encoding, decodeUpdatePayload, encodeUpdatePayload } from "./peer/frames.ts";

// ---------------------------------------------------------------------------
// The per-job setting
// ---------------------------------------------------------------------------

export type ValueCoding = "f32" | "f16" | "int8";

/** What a job's workers send: the top `topk` share of entries (null: all), each value coded as `values`. */
export interface Compression {
  readonly topk: number | null;
  readonly values: ValueCoding;
}

export const NO_COMPRESSION: Compression = { topk: null, values: "f32" };

export type CompressionParse = { readonly ok: true; readonly value: Compression } | { readonly ok: false; readonly message: string };

const RATIO = /^(?:[0-9]+\.?[0-9]*|\.[0-9]+)(?:e-?[0-9]+)?$/i;

/**
 * Parses `none`, `fp16`, `int8`, `topk:RATIO` (0 < RATIO ≤ 1) and the
 * combinations `topk:RATIO+fp16`, `topk:RATIO+int8` (either order). The
 * message of a refusal is one line.
 */
export function parseCompression(text: string): CompressionParse {
  const fail = (message: string): CompressionParse => ({ ok: false, message });
  if (text === "none") return { ok: true, value: NO_COMPRESSION };
  const parts = text.split("+");
  let topk: number | null = null;
  let values: ValueCoding | null = null;
  for (const part of parts) {
    if (part === "fp16" || part === "int8") {
      if (values !== null) return fail(`"${text}" names more than one value coding (fp16, int8)`);
      values = part === "fp16" ? "f16" : "int8";
    } else if (part.startsWith("topk:")) {
      if (topk !== null) return fail(`"${text}" names topk twice`);
      const raw = part.slice(5);
      const r = Number(raw);
      if (!RATIO.test(raw) || !(r > 0 && r <= 1)) return fail(`topk wants a ratio in (0, 1], got "${raw}"`);
      topk = r;
    } else {
      return fail(`unknown compression "${part}" (none, fp16, int8, topk:RATIO, or topk:RATIO+fp16|int8)`);
    }
  }
  return { ok: true, value: { topk, values: values ?? "f32" } };
}

/** The canonical text of a setting (what `parseCompression` reads back). */
export function formatCompression(c: Compression): string {
  const coding = c.values === "f16" ? "fp16" : c.values === "int8" ? "int8" : null;
  if (c.topk === null) return coding ?? "none";
  return coding === null ? `topk:${c.topk}` : `topk:${c.topk}+${coding}`;
}

// ---------------------------------------------------------------------------
// Half precision
// ---------------------------------------------------------------------------

const f32Scratch = new Float32Array(1);
const u32Scratch = new Uint32Array(f32Scratch.buffer);
/** Largest finite half, as bits (65504). */
const HALF_MAX_BITS = 0x7bff;

/**
 * The nearest half (round to nearest even) to `v`, as 16 bits. Values beyond
 * the half range saturate at ±65504 (never ±Inf); NaN maps to 0.
 */
export function toHalfBits(v: number): number {
  f32Scratch[0] = v;
  const x = u32Scratch[0] ?? 0;
  const sign = (x >>> 16) & 0x8000;
  const exp = (x >>> 23) & 0xff;
  const mant = x & 0x7fffff;
  if (exp === 0xff) return mant !== 0 ? 0 : sign | HALF_MAX_BITS;
  const e = exp - 112; // rebias 127 → 15
  if (e >= 0x1f) return sign | HALF_MAX_BITS;
  if (e <= 0) {
    if (e < -10) return sign;
    const m = mant | 0x800000;
    const shift = 14 - e;
    let half = m >>> shift;
    const rem = m & ((1 << shift) - 1);
    const halfway = 1 << (shift - 1);
    if (rem > halfway || (rem === halfway && (half & 1) === 1)) half++;
    return sign | half;
  }
  let half = (e << 10) | (mant >>> 13);
  const rem = mant & 0x1fff;
  if (rem > 0x1000 || (rem === 0x1000 && (half & 1) === 1)) half++;
  if (half >= 0x7c00) return sign | HALF_MAX_BITS;
  return sign | half;
}

let halfTable: Float32Array | null = null;

/** Every half's value (NaN for the exponent-31 codes, which decoders refuse). */
function halves(): Float32Array {
  if (halfTable !== null) return halfTable;
  const t = new Float32Array(65536);
  for (let h = 0; h < 65536; h++) {
    const sign = h & 0x8000 ? -1 : 1;
    const e = (h >>> 10) & 0x1f;
    const m = h & 0x3ff;
    t[h] = e === 0x1f ? Number.NaN : e === 0 ? sign * m * 2 ** -24 : sign * (1 + m / 1024) * 2 ** (e - 15);
  }
  halfTable = t;
  return t;
}

/** The value of half `bits` (NaN for exponent 31). */
export function fromHalfBits(bits: number): number {
  return halves()[bits & 0xffff] ?? Number.NaN;
}

// ---------------------------------------------------------------------------
// int8 scales
// ---------------------------------------------------------------------------

/** Values per scale in the dense int8 encoding. */
export const INT8_BLOCK = 1024;
const F32_MAX = 3.4028234663852886e38;
/** Largest scale whose ±127 multiple is still a finite f32. */
const MAX_SCALE = Math.fround(F32_MAX / 127);

function nextUpF32(s: number): number {
  f32Scratch[0] = s;
  u32Scratch[0] = (u32Scratch[0] ?? 0) + 1;
  return f32Scratch[0] ?? s;
}

/**
 * The scale for a block whose largest magnitude is `maxAbs`: about maxAbs/127,
 * nudged up by a few ulps so that re-deriving it from the decoded block
 * (whose largest magnitude is fround(127·scale)) gives the same scale; then a
 * decoded update re-encodes to the same bytes (see {@link encodeExact}).
 */
function int8Scale(maxAbs: number): number {
  if (!(maxAbs > 0)) return 0;
  let s = Math.min(MAX_SCALE, Math.fround(maxAbs / 127));
  for (let i = 0; i < 8 && s < MAX_SCALE && Math.fround(Math.fround(127 * s) / 127) !== s; i++) s = nextUpF32(s);
  return s;
}

function quantize(v: number, scale: number): number {
  if (scale === 0) return 0;
  const q = Math.round(v / scale);
  return q > 127 ? 127 : q < -127 ? -127 : q;
}

function validScale(s: number): boolean {
  return s >= 0 && s <= MAX_SCALE;
}

// ---------------------------------------------------------------------------
// Encoding
// ---------------------------------------------------------------------------

/** An update's wire form: the frame header's encoding and the payload bytes. */
export interface EncodedUpdate {
  readonly encoding: Encoding;
  readonly payload: Uint8Array<ArrayBuffer>;
}

function encodeDense(x: Float32Array, values: ValueCoding): EncodedUpdate {
  const n = x.length;
  if (values === "f32") return { encoding: Encoding.F32, payload: encodeUpdatePayload(x) };
  if (values === "f16") {
    const out = new Uint8Array(2 * n);
    const view = new DataView(out.buffer);
    for (let i = 0; i < n; i++) view.setUint16(2 * i, toHalfBits(x[i] ?? 0), true);
    return { encoding: Encoding.F16, payload: out };
  }
  const blocks = Math.ceil(n / INT8_BLOCK);
  const out = new Uint8Array(4 * blocks + n);
  const view = new DataView(out.buffer);
  const q = new Int8Array(out.buffer, 4 * blocks, n);
  for (let b = 0; b < blocks; b++) {
    const from = b * INT8_BLOCK;
    const to = Math.min(n, from + INT8_BLOCK);
    let maxAbs = 0;
    for (let i = from; i < to; i++) maxAbs = Math.max(maxAbs, Math.abs(x[i] ?? 0));
    const s = int8Scale(maxAbs);
    view.setFloat32(4 * b, s, true);
    for (let i = from; i < to; i++) q[i] = quantize(x[i] ?? 0, s);
  }
  return { encoding: Encoding.INT8, payload: out };
}

/**
 * The k-th largest of `a` (1 ≤ k ≤ a.length), by quickselect; reorders `a`.
 * Pivots come from a fixed-seed generator, so adversarial inputs cannot force
 * the quadratic case.
 */
function kthLargest(a: Float32Array, k: number): number {
  const target = a.length - k; // position in ascending order
  let lo = 0;
  let hi = a.length - 1;
  let seed = 0x2545f491;
  while (lo < hi) {
    seed = (Math.imul(seed, 1664525) + 1013904223) >>> 0;
    const pivot = a[lo + (seed % (hi - lo + 1))] ?? 0;
    // Three-way partition: [lo, lt) < pivot, [lt, gt] == pivot, (gt, hi] > pivot.
    let lt = lo;
    let gt = hi;
    let i = lo;
    while (i <= gt) {
      const v = a[i] ?? 0;
      if (v < pivot) {
        a[i] = a[lt] ?? 0;
        a[lt] = v;
        lt++;
        i++;
      } else if (v > pivot) {
        a[i] = a[gt] ?? 0;
        a[gt] = v;
        gt--;
      } else {
        i++;
      }
    }
    if (target < lt) hi = lt - 1;
    else if (target > gt) lo = gt + 1;
    else return pivot;
  }
  return a[lo] ?? 0;
}

/** Ascending indices of the `k` entries of `x` largest in magnitude (ties: lowest indices). */
export function topIndices(x: Float32Array, k: number): Uint32Array {
  const n = x.length;
  if (k >= n) return Uint32Array.from({ length: n }, (_, i) => i);
  if (k <= 0) return new Uint32Array(0);
  const mag = new Float32Array(n);
  for (let i = 0; i < n; i++) mag[i] = Math.abs(x[i] ?? 0);
  const t = kthLargest(mag, k);
  let above = 0;
  for (let i = 0; i < n; i++) if (Math.abs(x[i] ?? 0) > t) above++;
  let ties = k - above;
  const out = new Uint32Array(k);
  let m = 0;
  for (let i = 0; i < n && m < k; i++) {
    const v = Math.abs(x[i] ?? 0);
    if (v > t || (v === t && ties-- > 0)) out[m++] = i;
  }
  return out;
}

/** Bytes of the unsigned LEB128 form of `v` (a u32). */
function varintLength(v: number): number {
  let len = 1;
  while (v >= 0x80) {
    v = Math.floor(v / 128);
    len++;
  }
  return len;
}

function writeVarint(out: Uint8Array, at: number, v: number): number {
  while (v >= 0x80) {
    out[at++] = (v & 0x7f) | 0x80;
    v = Math.floor(v / 128);
  }
  out[at++] = v;
  return at;
}

const SPARSE_ENCODING: Record<ValueCoding, Encoding> = {
  f32: Encoding.SPARSE_F32,
  f16: Encoding.SPARSE_F16,
  int8: Encoding.SPARSE_INT8,
};

/**
 * Sparse payload of the entries `idx` of `x`. Entries whose coded value is
 * zero are left out (they would change nothing).
 */
function encodeSparse(x: Float32Array, idx: Uint32Array, values: ValueCoding): EncodedUpdate {
  let scale = 0;
  if (values === "int8") {
    let maxAbs = 0;
    for (const i of idx) maxAbs = Math.max(maxAbs, Math.abs(x[i] ?? 0));
    scale = int8Scale(maxAbs);
  }
  // Codes of the kept entries (f32 bits, f16 bits or int8), and their indices.
  const codes = new Int32Array(idx.length);
  const keep = new Uint32Array(idx.length);
  let m = 0;
  for (const i of idx) {
    const v = x[i] ?? 0;
    let code: number;
    if (values === "f32") {
      f32Scratch[0] = v;
      code = (u32Scratch[0] ?? 0) | 0;
      if ((code & 0x7fffffff) === 0) continue;
    } else if (values === "f16") {
      code = toHalfBits(v);
      if ((code & 0x7fff) === 0) continue;
    } else {
      code = quantize(v, scale);
      if (code === 0) continue;
    }
    codes[m] = code;
    keep[m++] = i;
  }
  let indexBytes = 0;
  let prev = -1;
  for (let j = 0; j < m; j++) {
    const i = keep[j] ?? 0;
    indexBytes += varintLength(i - prev - 1);
    prev = i;
  }
  const valueBytes = values === "f32" ? 4 * m : values === "f16" ? 2 * m : 4 + m;
  const out = new Uint8Array(8 + valueBytes + indexBytes);
  const view = new DataView(out.buffer);
  view.setUint32(0, m, true);
  view.setUint32(4, indexBytes, true);
  let at = 8;
  if (values === "f32") {
    for (let j = 0; j < m; j++, at += 4) view.setInt32(at, codes[j] ?? 0, true);
  } else if (values === "f16") {
    for (let j = 0; j < m; j++, at += 2) view.setUint16(at, codes[j] ?? 0, true);
  } else {
    view.setFloat32(at, scale, true);
    at += 4;
    for (let j = 0; j < m; j++) view.setInt8(at++, codes[j] ?? 0);
  }
  prev = -1;
  for (let j = 0; j < m; j++) {
    const i = keep[j] ?? 0;
    at = writeVarint(out, at, i - prev - 1);
    prev = i;
  }
  return { encoding: SPARSE_ENCODING[values], payload: out };
}

function denseBytes(n: number, values: ValueCoding): number {
  return values === "f32" ? 4 * n : values === "f16" ? 2 * n : 4 * Math.ceil(n / INT8_BLOCK) + n;
}

/**
 * Encodes `x` as `c` says, without error feedback. When the sparse form
 * would be larger than the dense one in the same value coding (large ratios),
 * the dense one is sent: fewer bytes, and closer to `x`.
 */
export function encodeUpdate(x: Float32Array, c: Compression): EncodedUpdate {
  if (c.topk === null) return encodeDense(x, c.values);
  const k = Math.min(x.length, Math.max(1, Math.ceil(c.topk * x.length)));
  const sparse = encodeSparse(x, topIndices(x, k), c.values);
  return sparse.payload.byteLength <= denseBytes(x.length, c.values) ? sparse : encodeDense(x, c.values);
}

// ---------------------------------------------------------------------------
// Decoding
// ---------------------------------------------------------------------------

/** Why a payload was refused. Closed. */
export const UPDATE_REJECT_REASONS = [
  /** The frame's encoding is not an update encoding. */
  "unknown-encoding",
  /** The byte length does not fit the layout for n parameters. */
  "wrong-length",
  /** A value is NaN or infinite (f32, f16 exponent 31). */
  "non-finite",
  /** A scale is negative, not finite, or so large that 127·scale overflows. */
  "bad-scale",
  /** An int8 code is −128 (outside the symmetric range). */
  "bad-code",
  /** Sparse: more entries than parameters, or index bytes that cannot hold them. */
  "bad-count",
  /** Sparse: an index at or beyond n, a varint over 5 bytes, or index bytes not used exactly. */
  "bad-index",
] as const;
export type UpdateRejectReason = (typeof UPDATE_REJECT_REASONS)[number];

export type DecodeUpdateResult =
  | { readonly ok: true; readonly value: Float32Array<ArrayBuffer> }
  | { readonly ok: false; readonly reason: UpdateRejectReason };

function refuse(reason: UpdateRejectReason): DecodeUpdateResult {
  return { ok: false, reason };
}

function decodeDenseF16(bytes: Uint8Array, n: number): DecodeUpdateResult {
  if (bytes.byteLength !== 2 * n) return refuse("wrong-length");
  const t = halves();
  const view = new DataView(bytes.buffer, bytes.byteOffset, bytes.byteLength);
  const out = new Float32Array(n);
  for (let i = 0; i < n; i++) {
    const h = view.getUint16(2 * i, true);
    if ((h & 0x7c00) === 0x7c00) return refuse("non-finite");
    out[i] = t[h] ?? 0;
  }
  return { ok: true, value: out };
}

function decodeDenseInt8(bytes: Uint8Array, n: number): DecodeUpdateResult {
  const blocks = Math.ceil(n / INT8_BLOCK);
  if (bytes.byteLength !== 4 * blocks + n) return refuse("wrong-length");
  const view = new DataView(bytes.buffer, bytes.byteOffset, bytes.byteLength);
  const q = new Int8Array(bytes.buffer, bytes.byteOffset + 4 * blocks, n);
  const out = new Float32Array(n);
  for (let b = 0; b < blocks; b++) {
    const s = view.getFloat32(4 * b, true);
    if (!validScale(s)) return refuse("bad-scale");
    const to = Math.min(n, (b + 1) * INT8_BLOCK);
    for (let i = b * INT8_BLOCK; i < to; i++) {
      const code = q[i] ?? 0;
      if (code === -128) return refuse("bad-code");
      out[i] = code * s;
    }
  }
  return { ok: true, value: out };
}

function decodeSparse(bytes: Uint8Array, n: number, values: ValueCoding): DecodeUpdateResult {
  if (bytes.byteLength < 8) return refuse("wrong-length");
  const view = new DataView(bytes.buffer, bytes.byteOffset, bytes.byteLength);
  const m = view.getUint32(0, true);
  const indexBytes = view.getUint32(4, true);
  if (m > n || indexBytes < m || indexBytes > 5 * m) return refuse("bad-count");
  const valueBytes = values === "f32" ? 4 * m : values === "f16" ? 2 * m : 4 + m;
  if (bytes.byteLength !== 8 + valueBytes + indexBytes) return refuse("wrong-length");
  const vals = new Float32Array(m);
  let at = 8;
  if (values === "f32") {
    for (let j = 0; j < m; j++, at += 4) {
      const v = view.getFloat32(at, true);
      if (v - v !== 0) return refuse("non-finite");
      vals[j] = v;
    }
  } else if (values === "f16") {
    const t = halves();
    for (let j = 0; j < m; j++, at += 2) {
      const h = view.getUint16(at, true);
      if ((h & 0x7c00) === 0x7c00) return refuse("non-finite");
      vals[j] = t[h] ?? 0;
    }
  } else {
    const s = view.getFloat32(at, true);
    if (!validScale(s)) return refuse("bad-scale");
    at += 4;
    for (let j = 0; j < m; j++) {
      const code = view.getInt8(at++);
      if (code === -128) return refuse("bad-code");
      vals[j] = code * s;
    }
  }
  const out = new Float32Array(n);
  const end = at + indexBytes;
  let prev = -1;
  for (let j = 0; j < m; j++) {
    let v = 0;
    let mul = 1;
    let len = 0;
    for (;;) {
      if (at >= end || len === 5) return refuse("bad-index");
      const b = bytes[at++] ?? 0;
      v += (b & 0x7f) * mul;
      mul *= 128;
      len++;
      if ((b & 0x80) === 0) break;
    }
    const i = prev + 1 + v;
    if (i >= n) return refuse("bad-index");
    out[i] = vals[j] ?? 0;
    prev = i;
  }
  if (at !== end) return refuse("bad-index");
  return { ok: true, value: out };
}

/**
 * Decodes an update payload of `encoding` for a job of `n` parameters into a
 * fresh dense Float32Array. Never throws.
 */
export function decodeUpdate(encoding: number, bytes: Uint8Array, n: number): DecodeUpdateResult {
  if (!Number.isSafeInteger(n) || n < 0) return refuse("wrong-length");
  switch (encoding) {
    case Encoding.F32: {
      const d = decodeUpdatePayload(bytes, n);
      return d.ok ? { ok: true, value: d.value } : refuse(d.reason === "non-finite" ? "non-finite" : "wrong-length");
    }
    case Encoding.F16:
      return decodeDenseF16(bytes, n);
    case Encoding.INT8:
      return decodeDenseInt8(bytes, n);
    case Encoding.SPARSE_F32:
      return decodeSparse(bytes, n, "f32");
    case Encoding.SPARSE_F16:
      return decodeSparse(bytes, n, "f16");
    case Encoding.SPARSE_INT8:
      return decodeSparse(bytes, n, "int8");
    default:
      return refuse("unknown-encoding");
  }
}

// ---------------------------------------------------------------------------
// Error feedback and exact re-encoding
// ---------------------------------------------------------------------------

/** One sender's error-feedback state for one job. */
export class ErrorFeedback {
  /** What compression has left out so far; added to the next raw update. */
  readonly residual: Float32Array;

  constructor(
    readonly compression: Compression,
    readonly n: number,
  ) {
    this.residual = new Float32Array(n);
  }

  /**
   * Encodes raw update `raw` plus the residual. Returns the payload to send
   * and the decoded update to apply locally (what every receiver decodes),
   * and keeps the new residual. Throws on a caller bug (wrong length).
   */
  encode(raw: Float32Array): { readonly encoded: EncodedUpdate; readonly decoded: Float32Array<ArrayBuffer> } {
    if (raw.length !== this.n) throw new RangeError(`update of ${raw.length} values, expected ${this.n}`);
    const x = new Float32Array(this.n);
    const e = this.residual;
    for (let i = 0; i < x.length; i++) x[i] = (raw[i] ?? 0) + (e[i] ?? 0);
    const encoded = encodeUpdate(x, this.compression);
    const d = decodeUpdate(encoded.encoding, encoded.payload, this.n);
    if (!d.ok) throw new Error(`compression produced an undecodable payload: ${d.reason}`);
    const decoded = d.value;
    for (let i = 0; i < x.length; i++) e[i] = (x[i] ?? 0) - (decoded[i] ?? 0);
    return { encoded, decoded };
  }
}

function sameValues(a: Float32Array, b: Float32Array): boolean {
  if (a.length !== b.length) return false;
  for (let i = 0; i < a.length; i++) if (a[i] !== b[i]) return false;
  return true;
}

/**
 * A wire form of `decoded` (an update already decoded once, e.g. a retained
 * one to re-send) that decodes to exactly the same values: the job's own
 * encoding when it round-trips exactly (the usual case: scales are chosen so
 * that it does), else sparse f32 of the non-zero entries or dense f32,
 * whichever is smaller. Replicas must apply bit-identical updates, so a lossy
 * second encoding is never sent.
 */
export function encodeExact(decoded: Float32Array, c: Compression): EncodedUpdate {
  const n = decoded.length;
  if (c.topk !== null || c.values !== "f32") {
    const first = encodeUpdate(decoded, c);
    const back = decodeUpdate(first.encoding, first.payload, n);
    if (back.ok && sameValues(back.value, decoded)) return first;
  }
  let nonZero = 0;
  for (let i = 0; i < n; i++) if (decoded[i] !== 0) nonZero++;
  if (nonZero * 9 + 8 < 4 * n) {
    const idx = new Uint32Array(nonZero);
    let m = 0;
    for (let i = 0; i < n; i++) if (decoded[i] !== 0) idx[m++] = i;
    return encodeSparse(decoded, idx, "f32");
  }
  return { encoding: Encoding.F32, payload: encodeUpdatePayload(decoded) };
}
