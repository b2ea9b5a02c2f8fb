/**
 * Training shards: fetched from the coordinator (or the IndexedDB cache),
 * verified against their SHA-256, parsed (layout in coordinator/data.ts), and
 * sampled into minibatches.
 */
import type { ShardRef } from "../../coordinator/protocol.ts";
import type { Batch } from "../jobs/job.ts";
import { getCachedShard, putCachedShard } from "./db.ts";

const SHARD_MAGIC = 0x44485347;
const HEADER = 16;

export interface ShardData {
  readonly id: number;
  readonly count: number;
  readonly pixelsPerImage: number;
  readonly labels: Uint8Array;
  readonly pixels: Uint8Array;
}

export function parseShard(id: number, buf: ArrayBuffer): ShardData {
  if (buf.byteLength < HEADER) throw new Error(`shard ${id}: too short`);
  const dv = new DataView(buf);
  if (dv.getUint32(0, true) !== SHARD_MAGIC) throw new Error(`shard ${id}: bad magic`);
  const count = dv.getUint32(8, true);
  const p = dv.getUint32(12, true);
  if (buf.byteLength !== HEADER + count + count * p) throw new Error(`shard ${id}: wrong length`);
  return {
    id,
    count,
    pixelsPerImage: p,
    labels: new Uint8Array(buf, HEADER, count),
    pixels: new Uint8Array(buf, HEADER + count, count * p),
  };
}

async function sha256Hex(buf: ArrayBuffer): Promise<string> {
  const d = new Uint8Array(await crypto.subtle.digest("SHA-256", buf));
  return Array.from(d, (b) => b.toString(16).padStart(2, "0")).join("");
}

export interface LoadedShard {
  readonly data: ShardData;
  readonly fromCache: boolean;
}

/** Load a shard: cache first, else download, verify the hash, cache it. */
export async function loadShard(base: string, job: string, ref: ShardRef, warn: (m: string) => void): Promise<LoadedShard> {
  try {
    const cached = await getCachedShard(job, ref.id, ref.hash);
    if (cached) return { data: parseShard(ref.id, cached), fromCache: true };
  } catch (e) {
    warn(`shard cache unavailable (${e instanceof Error ? e.message : String(e)}); downloading`);
  }
  const res = await fetch(`${base}/data/${encodeURIComponent(job)}/shards/${ref.id}`);
  if (!res.ok) throw new Error(`shard ${ref.id}: HTTP ${res.status}`);
  const buf = await res.arrayBuffer();
  const hash = await sha256Hex(buf);
  if (hash !== ref.hash) throw new Error(`shard ${ref.id}: content hash mismatch`);
  const data = parseShard(ref.id, buf);
  try {
    await putCachedShard(job, ref.id, ref.hash, buf);
  } catch (e) {
    warn(`could not cache shard ${ref.id} (${e instanceof Error ? e.message : String(e)})`);
  }
  return { data, fromCache: false };
}

/**
 * Draws minibatches from the shards a worker holds: a seeded shuffle of all
 * their examples per pass, so one pass covers every example once.
 */
export class BatchSampler {
  private shards: ShardData[] = [];
  private order: Uint32Array = new Uint32Array(0);
  private pos = 0;
  private rng: number;
  passes = 0;

  constructor(seed: number) {
    this.rng = seed >>> 0 || 1;
  }

  get examples(): number {
    return this.order.length;
  }

  /** Progress through the current pass, 0..1. */
  get progress(): number {
    return this.order.length === 0 ? 0 : this.pos / this.order.length;
  }

  setShards(shards: ShardData[]): void {
    this.shards = shards;
    let total = 0;
    for (const s of shards) total += s.count;
    this.order = new Uint32Array(total);
    for (let i = 0; i < total; i++) this.order[i] = i;
    this.shuffle();
  }

  private next(): number {
    let x = this.rng;
    x ^= x << 13;
    x ^= x >>> 17;
    x ^= x << 5;
    this.rng = x >>> 0;
    return this.rng;
  }

  private shuffle(): void {
    const o = this.order;
    for (let i = o.length - 1; i > 0; i--) {
      const j = this.next() % (i + 1);
      const t = o[i] as number;
      o[i] = o[j] as number;
      o[j] = t;
    }
    this.pos = 0;
  }

  /** The next minibatch of up to `size` examples, or null when no shard is loaded. */
  nextBatch(size: number, inputDim: number): Batch | null {
    if (this.order.length === 0) return null;
    const n = Math.min(size, this.order.length);
    const x = new Float32Array(n * inputDim);
    const labels = new Uint32Array(n);
    for (let b = 0; b < n; b++) {
      if (this.pos >= this.order.length) {
        this.passes++;
        this.shuffle();
      }
      let idx = this.order[this.pos++] as number;
      let shard = this.shards[0] as ShardData;
      for (const s of this.shards) {
        if (idx < s.count) {
          shard = s;
          break;
        }
        idx -= s.count;
      }
      labels[b] = shard.labels[idx] as number;
      const src = shard.pixels.subarray(idx * inputDim, (idx + 1) * inputDim);
      const row = b * inputDim;
      for (let i = 0; i < inputDim; i++) x[row + i] = (src[i] as number) / 255;
    }
    return { x, labels, size: n };
  }
}
