import { describe, expect, it } from "vitest";
import { aggregate, clipScales, formatAggregationRule, formatClip, parseAggregation, parseAggregationRule, parseClip, type Aggregation } from "../../client/aggregate.ts";
import { Replica, type ReplicaView } from "../../client/replica.ts";

const f = (...xs: number[]): Float32Array => Float32Array.from(xs);
const agg = (rule: string, clip: string): Aggregation => {
  const a = parseAggregation(rule, clip);
  if (!a.ok) throw new Error(a.message);
  return a.value;
};

describe("aggregation settings", () => {
  it("parses the rules strictly and writes them back", () => {
    for (const t of ["mean", "median", "trimmed:0.2", "trimmed:0.1", "trimmed:0.49"]) {
      const r = parseAggregationRule(t);
      expect(r.ok, t).toBe(true);
      if (r.ok) expect(formatAggregationRule(r.value)).toBe(t);
    }
    for (const t of ["", "Mean", "trimmed", "trimmed:", "trimmed:0", "trimmed:0.5", "trimmed:-0.1", "trimmed:0x1", "trimmed: 0.2", "trimmed:0.2 ", "krum", "median:1"]) {
      expect(parseAggregationRule(t).ok, t).toBe(false);
    }
  });

  it("parses clip bounds strictly; mean takes no clip", () => {
    for (const t of ["auto", "off", "1", "0.5", "2.5e-3"]) {
      const c = parseClip(t);
      expect(c.ok, t).toBe(true);
      if (c.ok) expect(parseClip(formatClip(c.value))).toEqual(c);
    }
    for (const t of ["", "0", "-1", "NaN", "Infinity", "1e400", "1 ", "on"]) expect(parseClip(t).ok, t).toBe(false);
    expect(parseAggregation("mean", "auto").ok).toBe(false);
    expect(parseAggregation("mean", "off").ok).toBe(true);
    expect(parseAggregation("median", "auto").ok).toBe(true);
  });
});

describe("aggregate", () => {
  const ups = [f(1, 10, -3), f(2, 20, -2), f(3, 30, -1), f(4, 40, 0), f(-100, 1000, 50)];

  it("mean is the plain sum", () => {
    expect(Array.from(aggregate(ups, agg("mean", "off"), 3))).toEqual([-90, 1100, 44]);
  });

  it("trimmed:0.2 of five drops the largest and smallest value of each coordinate, times five", () => {
    // column 0: -100,1,2,3,4 → mean(1,2,3) = 2; column 1: 10..1000 → mean(20,30,40) = 30; column 2: -3..50 → mean(-2,-1,0) = -1
    expect(Array.from(aggregate(ups, agg("trimmed:0.2", "off"), 3))).toEqual([10, 150, -5]);
  });

  it("median takes the middle value, or the mean of the two middle ones", () => {
    expect(Array.from(aggregate(ups, agg("median", "off"), 3))).toEqual([10, 150, -5]);
    expect(Array.from(aggregate(ups.slice(0, 4), agg("median", "off"), 3))).toEqual([10, 100, -6]);
  });

  it("clips norms above the bound, or above the median norm with auto", () => {
    const a = f(3, 4);
    const b = f(0, 1);
    const c = f(30, 40);
    expect(clipScales([a, b, c], { kind: "fixed", bound: 2.5 })).toEqual([0.5, 1, 2.5 / 50]);
    // median norm is 5: only c is scaled, to norm 5.
    const s = clipScales([a, b, c], { kind: "auto" });
    expect(s[0]).toBe(1);
    expect(s[1]).toBe(1);
    expect(s[2]).toBeCloseTo(0.1, 12);
  });

  it("keeps one scaled-up, sign-flipped update from moving the result much", () => {
    const honest = [f(1, 1), f(1.1, 0.9), f(0.9, 1.1), f(1, 1.05)];
    const attacker = f(-10, -10);
    const mean = aggregate([...honest, attacker], agg("mean", "off"), 2);
    const trimmed = aggregate([...honest, attacker], agg("trimmed:0.2", "auto"), 2);
    expect(mean[0]).toBeLessThan(0);
    expect(trimmed[0]).toBeGreaterThan(4);
    expect(trimmed[0]).toBeLessThan(5.5);
  });
});

describe("a replica with a robust rule", () => {
  const view = (ids: string[]): ReplicaView => ({ active: ids.map((id) => ({ id, peerId: id, startClock: 0 })), cuts: [], consistency: { mode: "ssp", staleness: 2 } });

  it("computes on its own updates at once and applies a clock when every worker's update for it is in", () => {
    const r = new Replica("w1", new Float32Array(1), view(["w1", "w2", "w3"]), agg("median", "off"));
    r.applyOwn(f(1));
    expect(Array.from(r.params)).toEqual([1]);
    expect(Array.from(r.model())).toEqual([0]);
    r.receive("w2", 1, f(100));
    expect(Array.from(r.params)).toEqual([1]);
    expect(r.finalized).toBe(0);
    r.receive("w3", 1, f(2));
    expect(r.finalized).toBe(1);
    expect(Array.from(r.model())).toEqual([6]);
    expect(Array.from(r.params)).toEqual([6]);
  });

  it("re-aggregates a finalized clock when a cut takes an update back", () => {
    const r = new Replica("w1", new Float32Array(1), view(["w1", "w2", "w3"]), agg("trimmed:0.2", "off"));
    r.applyOwn(f(1));
    r.receive("w2", 1, f(2));
    r.receive("w3", 1, f(6));
    expect(Array.from(r.model())).toEqual([9]);
    const res = r.setView({ ...view(["w1", "w2"]), cuts: [{ id: "w3", clock: 0 }] });
    expect(res.unrevertable).toBe(0);
    expect(Array.from(r.model())).toEqual([3]);
  });

  it("hands a joiner a snapshot that ends equal to the donor", () => {
    const a = agg("trimmed:0.2", "auto");
    const donor = new Replica("w1", new Float32Array(2), view(["w1", "w2"]), a);
    for (let c = 1; c <= 20; c++) {
      donor.applyOwn(f(c, -c));
      donor.receive("w2", c, f(2 * c, 1));
    }
    donor.setStable(20);
    const snap = donor.snapshot();
    expect(snap.frontier).toBe(12);
    const joiner = new Replica("w3", new Float32Array(2), view(["w1", "w2", "w3"]), a);
    joiner.loadSnapshot(snap.params, snap.vector, snap.frontier);
    for (const id of ["w1", "w2"]) for (const u of donor.retainedAfter(id, joiner.vector(id))) joiner.receive(id, u.clock, u.update);
    joiner.finalizeAll();
    donor.finalizeAll();
    expect(Array.from(joiner.model())).toEqual(Array.from(donor.model()).map((x) => expect.closeTo(x, 4)));
  });
});
