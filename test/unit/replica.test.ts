import { describe, expect, it } from "vitest";
import { AppliedClocks, gateOpen } from "../../coordinator/ssp.ts";
import { Replica, digestsAgree, replicaDigest, type ReplicaView } from "../../client/replica.ts";
import type { Consistency } from "../../coordinator/protocol.ts";

const ssp = (s: number): Consistency => ({ mode: "ssp", staleness: s });
const view = (ids: string[], consistency: Consistency = ssp(1), cuts: { id: string; clock: number }[] = []): ReplicaView => ({
  active: ids.map((id) => ({ id, peerId: `p-${id}`, startClock: 0 })),
  cuts,
  consistency,
});
const u = (n: number, v: number): Float32Array => new Float32Array(n).fill(v);

describe("AppliedClocks", () => {
  it("tracks the contiguous prefix whatever the arrival order", () => {
    const a = new AppliedClocks();
    expect(a.add(2)).toBe(true);
    expect(a.prefix).toBe(0);
    expect(a.add(3)).toBe(true);
    expect(a.add(1)).toBe(true);
    expect(a.prefix).toBe(3);
    expect(a.add(2)).toBe(false);
    expect(a.add(0)).toBe(false);
    expect(a.missingUpTo(5)).toEqual([4, 5]);
  });

  it("treats clocks up to the start as applied and can forget a clock", () => {
    const a = new AppliedClocks(10);
    expect(a.has(7)).toBe(true);
    expect(a.add(10)).toBe(false);
    a.add(11);
    a.add(13);
    expect(a.appliedAbove(10)).toEqual([11, 13]);
    expect(a.remove(11)).toBe(true);
    expect(a.prefix).toBe(10);
    a.advanceTo(12);
    expect(a.prefix).toBe(13);
  });
});

describe("the SSP gate", () => {
  const active = [{ id: "w1" }, { id: "w2" }];
  it("lets a worker at clock c start c+1 only when every V[j] >= c - s", () => {
    const v = (m: Record<string, number>) => (id: string) => m[id] ?? 0;
    expect(gateOpen(3, active, v({ w1: 3, w2: 1 }), ssp(1))).toBe(false);
    expect(gateOpen(3, active, v({ w1: 3, w2: 2 }), ssp(1))).toBe(true);
    expect(gateOpen(3, active, v({ w1: 3, w2: 2 }), { mode: "bsp", staleness: 5 })).toBe(false);
    expect(gateOpen(3, active, v({ w1: 3, w2: 3 }), { mode: "bsp", staleness: 5 })).toBe(true);
    expect(gateOpen(300, active, v({ w1: 300, w2: 0 }), { mode: "asp", staleness: 0 })).toBe(true);
  });
});

describe("Replica", () => {
  it("applies each update exactly once, in any order", () => {
    const r = new Replica("w1", new Float32Array(4), view(["w1", "w2"]));
    expect(r.receive("w2", 2, u(4, 1))).toBe("applied");
    expect(r.receive("w2", 2, u(4, 1))).toBe("duplicate");
    expect(r.vector("w2")).toBe(0);
    expect(r.receive("w2", 1, u(4, 10))).toBe("applied");
    expect(r.vector("w2")).toBe(2);
    expect([...r.params]).toEqual([11, 11, 11, 11]);
    expect(r.appliedCount).toBe(2);
    expect(r.receive("w2", 3, u(3, 1))).toBe("bad-length");
  });

  it("reads its own writes and blocks on a slow peer under SSP", () => {
    const r = new Replica("w1", new Float32Array(2), view(["w1", "w2"], ssp(1)));
    expect(r.canStep()).toBe(true);
    r.applyOwn(u(2, 1));
    expect(r.canStep()).toBe(true); // clock 1, needs V[w2] >= 0
    r.applyOwn(u(2, 1));
    expect(r.clock).toBe(2);
    expect(r.canStep()).toBe(false); // needs V[w2] >= 1
    expect(r.blockers()).toEqual(["w2"]);
    r.receive("w2", 1, u(2, 0.5));
    expect(r.canStep()).toBe(true);
    expect([...r.params]).toEqual([2.5, 2.5]);
  });

  it("reverts updates beyond a cut, ignores later ones and reports what it lacks", () => {
    const r = new Replica("w1", new Float32Array(2), view(["w1", "w2", "w3"], ssp(3)));
    for (let c = 1; c <= 4; c++) r.receive("w2", c, u(2, c));
    r.receive("w3", 2, u(2, 100));
    const res = r.setView(view(["w1"], ssp(3), [{ id: "w2", clock: 2 }, { id: "w3", clock: 3 }]));
    expect(res.unrevertable).toBe(0);
    expect(res.missing).toEqual([{ id: "w3", clocks: [1, 3] }]);
    expect([...r.params]).toEqual([103, 103]); // u(w2,1)+u(w2,2) + u(w3,2)
    expect(r.receive("w2", 5, u(2, 1))).toBe("cut");
    expect(r.receive("w2", 3, u(2, 1))).toBe("cut");
    expect(r.receive("w3", 1, u(2, 1000))).toBe("applied");
    expect(r.vector("w3")).toBe(2);
  });

  it("retains updates above the stable point for re-sending, and drops the rest", () => {
    const r = new Replica("w1", new Float32Array(1), view(["w1"], ssp(2)));
    for (let c = 1; c <= 30; c++) r.applyOwn(u(1, c));
    expect(r.retainedAfter("w1", 25).map((x) => x.clock)).toEqual([26, 27, 28, 29, 30]);
    expect(r.retainedAfter("w1", 0)).toHaveLength(30);
    r.setStable(25);
    expect(r.retainedAfter("w1", 0).map((x) => x.clock)[0]).toBe(18);
    for (let c = 31; c <= 400; c++) r.applyOwn(u(1, c));
    expect(r.retainedAfter("w1", 0).length).toBeLessThanOrEqual(256);
  });

  it("loads a snapshot and counts a joiner's early clocks as applied", () => {
    const v = { active: [{ id: "w1", peerId: "a", startClock: 0 }, { id: "w9", peerId: "b", startClock: 40 }], cuts: [], consistency: ssp(2) };
    const r = new Replica("w9", new Float32Array(2), v);
    r.loadSnapshot(Float32Array.from([5, 6]), { w1: 41, w9: 40 });
    expect(r.clock).toBe(40);
    expect(r.vector("w1")).toBe(41);
    expect(r.receive("w1", 41, u(2, 1))).toBe("duplicate");
    expect(r.receive("w1", 42, u(2, 1))).toBe("applied");
    expect([...r.params]).toEqual([6, 7]);
  });
});

describe("digests", () => {
  it("agree for the same updates summed in different orders, and differ for different replicas", () => {
    const n = 5000;
    const updates = Array.from({ length: 20 }, (_, k) => Float32Array.from({ length: n }, (_, i) => Math.sin(i * 0.37 + k) * 1e-2));
    const a = new Float32Array(n);
    const b = new Float32Array(n);
    for (const x of updates) for (let i = 0; i < n; i++) a[i]! += x[i]!;
    for (const x of [...updates].reverse()) for (let i = 0; i < n; i++) b[i]! += x[i]!;
    expect(digestsAgree(replicaDigest(a), replicaDigest(b))).toBe(true);
    const c = Float32Array.from(a);
    c[17]! += 0.05;
    expect(digestsAgree(replicaDigest(a), replicaDigest(c))).toBe(false);
  });
});
