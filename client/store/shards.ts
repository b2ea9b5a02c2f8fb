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

/** An IndexedDB failure as "QuotaExceededError: …" (the name says what happened; messages vary). */
function describeError(e: unknown): string {
  if (e instanceof Error || e instanceof DOMException) return `${e.name}: ${e.message}`;
  return String(e);
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
    warn(`shard cache unavailable (${describeError(e)}); downloading`);
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
    warn(`could not cache shard ${ref.id} (${describeError(e)})`);
  }
  return { data, fromCache: false };
}

/**
 * The shards a page has loaded, by content hash, across its jobs (least
 * recently used dropped past `maxBytes`): jobs of one kind on a grid train on
 * the same data set, so a volunteer moved to another job often holds some of
 * its new shards already and can step as soon as its snapshot is in, without
 * waiting for IndexedDB or a download.
 */
export class ShardPool {
  private readonly byHash = new Map<string, ShardData>();
  private bytes = 0;

  constructor(private readonly maxBytes: number) {}

  has(ref: ShardRef): boolean {
    return this.byHash.get(ref.hash)?.count === ref.count;
  }

  /** The shard with `ref`'s content, under `ref`'s id, if held. */
  get(ref: ShardRef): ShardData | undefined {
    const d = this.byHash.get(ref.hash);
    if (!d || d.count !== ref.count) return undefined;
    this.byHash.delete(ref.hash);
    this.byHash.set(ref.hash, d);
    return d.id === ref.id ? d : { ...d, id: ref.id };
  }

  put(hash: string, d: ShardData): void {
    const old = this.byHash.get(hash);
    if (old) {
      this.byHash.delete(hash);
      this.bytes -= size(old);
    }
    this.byHash.set(hash, d);
    this.bytes += size(d);
    for (const [h, x] of this.byHash) {
      if (this.bytes <= this.maxBytes || h === hash) break;
      this.byHash.delete(h);
      this.bytes -= size(x);
    }
  }

  get heldBytes(): number {
    return this.bytes;
  }
}

function size(d: ShardData): number {
  return d.labels.byteLength + d.pixels.byteLength;
}

/**
 * Draws minibatches from the shards a worker holds. A pass visits the shards
 * in a seeded random order and each shard's examples in a seeded random
 * order, so the worker can say when it has processed every example of a shard
 * (`takeCompleted`): the coordinator counts epoch coverage from that. When the
 * assignment changes mid-pass, shards taken away are skipped and new ones are
 * queued in the current pass.
 */
export class BatchSampler {
  private shards = new Map<number, ShardData>();
  private queue: number[] = [];
  private current: { shard: ShardData; order: Uint32Array; pos: number } | null = null;
  private doneThisPass = new Set<number>();
  private completed: number[] = [];
  private rng: number;
  passes = 0;

  constructor(seed: number) {
    this.rng = seed >>> 0 || 1;
  }

  /** Examples in the shards held. */
  get examples(): number {
    let n = 0;
    for (const s of this.shards.values()) n += s.count;
    return n;
  }

  /** Progress through the current pass, 0..1. */
  get progress(): number {
    const total = this.examples;
    if (total === 0) return 0;
    let done = 0;
    for (const id of this.doneThisPass) done += this.shards.get(id)?.count ?? 0;
    if (this.current) done += this.current.pos;
    return Math.min(1, done / total);
  }

  private next(): number {
    let x = this.rng;
    x ^= x << 13;
    x ^= x >>> 17;
    x ^= x << 5;
    this.rng = x >>> 0;
    return this.rng;
  }

  private shuffle<T extends { length: number; [i: number]: number }>(a: T): T {
    for (let i = a.length - 1; i > 0; i--) {
      const j = this.next() % (i + 1);
      const t = a[i] as number;
      a[i] = a[j] as number;
      a[j] = t;
    }
    return a;
  }

  /** The shards this worker holds now (loaded ones; more may follow). */
  setShards(shards: ShardData[]): void {
    this.shards = new Map(shards.map((s) => [s.id, s]));
    this.queue = this.queue.filter((id) => this.shards.has(id));
    if (this.current && !this.shards.has(this.current.shard.id)) this.current = null;
    for (const id of this.shards.keys()) {
      if (!this.queue.includes(id) && !this.doneThisPass.has(id) && this.current?.shard.id !== id) this.queue.push(id);
    }
  }

  /** Shards whose every example was drawn since the last call. */
  takeCompleted(): number[] {
    const c = this.completed;
    this.completed = [];
    return c;
  }

  private advance(): { shard: ShardData; order: Uint32Array; pos: number } | null {
    if (this.current && this.current.pos < this.current.order.length) return this.current;
    if (this.current) {
      this.doneThisPass.add(this.current.shard.id);
      this.completed.push(this.current.shard.id);
      this.current = null;
    }
    if (this.queue.length === 0) {
      if (this.shards.size === 0) return null;
      this.passes++;
      this.doneThisPass.clear();
      this.queue = this.shuffle([...this.shards.keys()]);
    }
    const id = this.queue.shift();
    const shard = id === undefined ? undefined : this.shards.get(id);
    if (!shard) return null;
    const order = new Uint32Array(shard.count);
    for (let i = 0; i < order.length; i++) order[i] = i;
    this.current = { shard, order: this.shuffle(order), pos: 0 };
    return this.current;
  }

  /** The next minibatch of up to `size` examples, or null when no shard is loaded. */
  nextBatch(size: number, inputDim: number): Batch | null {
    if (this.shards.size === 0) return null;
    const x = new Float32Array(size * inputDim);
    const labels = new Uint32Array(size);
    for (let b = 0; b < size; b++) {
      const cur = this.advance();
      if (!cur) return null;
      const idx = cur.order[cur.pos++] as number;
      labels[b] = cur.shard.labels[idx] as number;
      const src = cur.shard.pixels.subarray(idx * inputDim, (idx + 1) * inputDim);
      const row = b * inputDim;
      for (let i = 0; i < inputDim; i++) x[row + i] = (src[i] as number) / 255;
    }
    // Close the shard now if the batch ended exactly at its last example.
    if (this.current && this.current.pos >= this.current.order.length) this.advance();
    return { x, labels, size };
  }
}
