/**
 * The page's shards by content across jobs (client/store/shards.ts ShardPool):
 * a move to a job on the same data finds the shards it loaded before, under
 * the new job's ids, and the pool stays within its bytes.
 */
import { describe, expect, it } from "vitest";
import { ShardPool, type ShardData } from "../../client/store/shards.ts";

function shard(id: number, count: number, fill: number): ShardData {
  return { id, count, pixelsPerImage: 4, labels: new Uint8Array(count).fill(fill), pixels: new Uint8Array(count * 4).fill(fill) };
}
const ref = (id: number, hash: string, count: number) => ({ id, hash, count, bytes: 16 + count * 5 });

describe("ShardPool", () => {
  it("gives a shard held from another job by its content, under the new job's id", () => {
    const pool = new ShardPool(1000);
    pool.put("h1", shard(3, 10, 7));
    expect(pool.has(ref(9, "h1", 10))).toBe(true);
    const got = pool.get(ref(9, "h1", 10));
    expect(got?.id).toBe(9);
    expect(got?.labels[0]).toBe(7);
    expect(got?.pixels.length).toBe(40);
    // Other content, or the same hash with another length (a corrupt ref): not held.
    expect(pool.get(ref(3, "h2", 10))).toBeUndefined();
    expect(pool.has(ref(3, "h1", 11))).toBe(false);
  });

  it("drops the least recently used shards past its bytes", () => {
    const pool = new ShardPool(120); // two shards of 50 bytes fit, three do not
    pool.put("a", shard(1, 10, 1));
    pool.put("b", shard(2, 10, 2));
    expect(pool.heldBytes).toBe(100);
    pool.get(ref(1, "a", 10)); // a used last: b is the oldest now
    pool.put("c", shard(3, 10, 3));
    expect(pool.heldBytes).toBe(100);
    expect(pool.has(ref(1, "a", 10))).toBe(true);
    expect(pool.has(ref(2, "b", 10))).toBe(false);
    expect(pool.has(ref(3, "c", 10))).toBe(true);
    // Putting the same content again does not count it twice.
    pool.put("c", shard(3, 10, 3));
    expect(pool.heldBytes).toBe(100);
    // A shard larger than the whole pool is still kept (the one in use), alone.
    pool.put("big", shard(4, 40, 4));
    expect(pool.heldBytes).toBe(200);
    expect(pool.has(ref(1, "a", 10))).toBe(false);
    expect(pool.has(ref(4, "big", 40))).toBe(true);
  });
});
