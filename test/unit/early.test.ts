/**
 * A joiner's peers' updates that come before its snapshot (client/early.ts):
 * held, bounded, and applied once the replica starts, so that the joiner ends
 * where a member that got them all in order does, without re-sends.
 */
import { describe, expect, it } from "vitest";
import { EarlyUpdates } from "../../client/early.ts";
import { Replica, digestsAgree, replicaDigest, type ReplicaView } from "../../client/replica.ts";

const buf = (n: number, v: number): ArrayBuffer => new Float32Array(n).fill(v).buffer as ArrayBuffer;

describe("EarlyUpdates", () => {
  it("gives back what it held, oldest clock first, once", () => {
    const e = new EarlyUpdates();
    expect(e.hold("w2", 7, buf(2, 1))).toBe(true);
    expect(e.hold("w1", 5, buf(2, 2))).toBe(true);
    expect(e.hold("w1", 7, buf(2, 3))).toBe(true);
    expect(e.count).toBe(3);
    expect(e.take().map((u) => `${u.sender}@${u.clock}`)).toEqual(["w1@5", "w1@7", "w2@7"]);
    expect(e.count).toBe(0);
    expect(e.take()).toEqual([]);
  });

  it("refuses past its count or byte bound, and takes again once emptied", () => {
    const byCount = new EarlyUpdates(2, 1 << 20);
    expect(byCount.hold("w1", 1, buf(4, 1))).toBe(true);
    expect(byCount.hold("w1", 2, buf(4, 1))).toBe(true);
    expect(byCount.hold("w1", 3, buf(4, 1))).toBe(false);
    const byBytes = new EarlyUpdates(100, 40);
    expect(byBytes.hold("w1", 1, buf(4, 1))).toBe(true); // 16 bytes
    expect(byBytes.hold("w1", 2, buf(4, 1))).toBe(true); // 32
    expect(byBytes.hold("w1", 3, buf(4, 1))).toBe(false); // 48 > 40
    byBytes.take();
    expect(byBytes.hold("w1", 3, buf(4, 1))).toBe(true);
  });

  it("a joiner that held the updates sent before its snapshot ends where the giver does, none asked for again", () => {
    const n = 64;
    const ssp = { mode: "ssp" as const, staleness: 3 };
    const members = ["w1", "w2", "w9"];
    const view: ReplicaView = { active: members.map((id) => ({ id, peerId: `p-${id}`, startClock: id === "w9" ? 6 : 0 })), cuts: [], consistency: ssp };
    const upd = (id: string, c: number): Float32Array => Float32Array.from({ length: n }, (_, i) => Math.sin(i * 0.31 + c * 1.7 + id.length) * 1e-2 + (id === "w1" ? 1e-3 : -1e-3));
    const giver = new Replica("w1", new Float32Array(n), view);
    // Clocks 1..6 of w1 and w2 are in the giver when it takes the snapshot.
    for (let c = 1; c <= 6; c++) for (const id of ["w1", "w2"]) giver.receive(id, c, upd(id, c));
    const snap = giver.snapshot();
    // Clocks 5..9 reach the joiner before its snapshot is loaded (5 and 6 are in the snapshot already).
    const early = new EarlyUpdates();
    for (let c = 5; c <= 9; c++) for (const id of ["w1", "w2"]) expect(early.hold(id, c, upd(id, c).buffer as ArrayBuffer)).toBe(true);
    for (let c = 7; c <= 9; c++) for (const id of ["w1", "w2"]) giver.receive(id, c, upd(id, c));
    const joiner = new Replica("w9", new Float32Array(n), view);
    joiner.loadSnapshot(snap.params, { ...snap.vector, w9: 6 });
    const results = early.take().map((u) => joiner.receive(u.sender, u.clock, new Float32Array(u.buffer)));
    expect(results.filter((r) => r === "applied")).toHaveLength(6);
    expect(results.filter((r) => r === "duplicate")).toHaveLength(4);
    expect(joiner.vector("w1")).toBe(9);
    expect(joiner.vector("w2")).toBe(9);
    expect(digestsAgree(replicaDigest(joiner.params), replicaDigest(giver.params))).toBe(true);
  });
});
