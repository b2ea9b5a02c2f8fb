/**
 * Factor blocks of job `mf` as bytes: the same layout for a checkpoint upload
 * (page → coordinator, one binary WebSocket message), a checkpoint download
 * (GET /api/mf/blocks/u|v/INDEX) and a column block handed peer to peer (the
 * payload of an MF_BLOCK frame, client/peer/frames.ts). Little-endian:
 *
 *   u32 magic "GMFB" · u32 kind (0 = U row block, 1 = V column block) ·
 *   u32 block index · u32 version (sub-epochs the block reflects) · f32 × n
 *
 * Decoding never throws: a wrong size, magic, kind or a non-finite float is a
 * reason string.
 */
export const MF_BLOCK_MAGIC = 0x42464d47; // "GMFB" read as little-endian u32
const HEADER = 16;

export interface FactorBlock {
  readonly kind: "u" | "v";
  readonly index: number;
  readonly version: number;
  readonly data: Float32Array;
}

export function encodeBlock(b: FactorBlock): Uint8Array<ArrayBuffer> {
  const out = new Uint8Array(HEADER + b.data.length * 4);
  const dv = new DataView(out.buffer);
  dv.setUint32(0, MF_BLOCK_MAGIC, true);
  dv.setUint32(4, b.kind === "u" ? 0 : 1, true);
  dv.setUint32(8, b.index, true);
  dv.setUint32(12, b.version, true);
  for (let i = 0; i < b.data.length; i++) dv.setFloat32(HEADER + 4 * i, b.data[i] ?? 0, true);
  return out;
}

/**
 * Decodes a block; `floatsOf(kind, index)` gives the expected float count
 * (undefined: no such block).
 */
export function decodeBlock(
  bytes: Uint8Array,
  floatsOf: (kind: "u" | "v", index: number) => number | undefined,
): { ok: true; value: FactorBlock } | { ok: false; reason: string } {
  if (bytes.byteLength < HEADER) return { ok: false, reason: `block of ${bytes.byteLength} bytes` };
  const dv = new DataView(bytes.buffer, bytes.byteOffset, bytes.byteLength);
  if (dv.getUint32(0, true) !== MF_BLOCK_MAGIC) return { ok: false, reason: "block: bad magic" };
  const k = dv.getUint32(4, true);
  if (k !== 0 && k !== 1) return { ok: false, reason: `block: bad kind ${k}` };
  const kind = k === 0 ? "u" : "v";
  const index = dv.getUint32(8, true);
  const n = floatsOf(kind, index);
  if (n === undefined) return { ok: false, reason: `block: no ${kind} block ${index}` };
  if (bytes.byteLength !== HEADER + 4 * n) return { ok: false, reason: `block ${kind}${index}: ${bytes.byteLength} bytes, want ${HEADER + 4 * n}` };
  const data = new Float32Array(n);
  for (let i = 0; i < n; i++) {
    const v = dv.getFloat32(HEADER + 4 * i, true);
    if (!Number.isFinite(v)) return { ok: false, reason: `block ${kind}${index}: non-finite value` };
    data[i] = v;
  }
  return { ok: true, value: { kind, index, version: dv.getUint32(12, true), data } };
}
