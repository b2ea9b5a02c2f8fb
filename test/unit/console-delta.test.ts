/**
 * The push stream's deltas (coordinator/console/delta.ts): applying the delta
 * of (A, B) to A gives B, for hand-picked cases and for random sequences of
 * statuses that change the way the coordinator's do (workers come, change and
 * go; series grow and get thinned; scalars change).
 */
import { describe, expect, it } from "vitest";
import fc from "fast-check";
import {
  applyDelta, diffStatus, isEmptyDelta, jsonEqual, parseDelta, parseFull, type Json, type JsonObject,
} from "../../coordinator/console/delta.ts";

function status(over: Partial<JsonObject> = {}): JsonObject {
  return {
    job: { name: "mnist-softmax", parameters: 7850, state: "running" },
    consistency: { mode: "ssp", staleness: 3 },
    view: { epoch: 1, active: ["w1"] },
    clock: { min: 1, max: 1 },
    workers: [{ id: "w1", state: "active", clock: 1, lastSeenMs: 10, stalenessHist: [1, 0] }],
    metrics: { trainLoss: [[1, 2.3]], test: { name: "accuracy", series: [] } },
    events: [{ t: 1, kind: "joined", worker: "w1" }],
    lastEvalMsAgo: null,
    ...over,
  };
}

function roundTrip(a: JsonObject, b: JsonObject): void {
  const d = diffStatus(a, b, 1);
  // Through JSON, as on the wire.
  const wire = parseDelta(JSON.parse(JSON.stringify(d)));
  expect(wire).not.toBeNull();
  const before = JSON.stringify(a);
  const got = applyDelta(a, wire ?? d);
  expect(JSON.stringify(a)).toBe(before); // the base is not modified
  expect(jsonEqual(got, b)).toBe(true);
}

describe("diffStatus / applyDelta", () => {
  it("sends nothing when nothing changed", () => {
    const d = diffStatus(status(), status(), 7);
    expect(d.seq).toBe(7);
    expect(isEmptyDelta(d)).toBe(true);
  });

  it("sends only the changed fields of a worker, and appended points", () => {
    const a = status();
    const b = status({
      clock: { min: 2, max: 2 },
      workers: [{ id: "w1", state: "active", clock: 2, lastSeenMs: 10, stalenessHist: [1, 0] }],
      metrics: { trainLoss: [[1, 2.3], [2, 1.9]], test: { name: "accuracy", series: [] } },
    });
    const d = diffStatus(a, b, 1);
    expect(d.set).toEqual({ clock: { min: 2, max: 2 } });
    expect(d.workers).toEqual({ upsert: [{ id: "w1", clock: 2 }], remove: [] });
    expect(d.lists).toEqual({ "metrics.trainLoss": { append: [[2, 1.9]] } });
    roundTrip(a, b);
  });

  it("adds and removes workers, reorders when needed", () => {
    const w = (id: string, clock: number): Json => ({ id, state: "active", clock });
    const a = status({ workers: [w("w1", 1), w("w2", 1), w("w10", 1)] });
    const b = status({ workers: [w("w2", 1), w("w3", 0), w("w10", 1), w("w1", 1)] });
    const d = diffStatus(a, b, 1);
    expect(d.workers?.order).toEqual(["w2", "w3", "w10", "w1"]);
    roundTrip(a, b);
    roundTrip(b, a);
  });

  it("resends a thinned list whole", () => {
    const long: Json[] = Array.from({ length: 10 }, (_, i) => [i, i / 10]);
    const thinned = [...long.slice(0, 5).filter((_, i) => i % 2 === 0), ...long.slice(5), [10, 1]];
    const a = status({ metrics: { trainLoss: long, test: null } });
    const b = status({ metrics: { trainLoss: thinned, test: null } });
    expect(diffStatus(a, b, 1).lists?.["metrics.trainLoss"]).toEqual({ reset: thinned });
    roundTrip(a, b);
  });

  it("handles a test metric that appears, and top-level fields that come and go", () => {
    const a = status({ metrics: { trainLoss: [], test: null } });
    const b = status({ metrics: { trainLoss: [[1, 1]], test: { name: "accuracy", series: [[1, 0.5]] } }, extra: 1 });
    delete b["lastEvalMsAgo"];
    roundTrip(a, b);
    roundTrip(b, a);
  });

  it("round-trips random sequences of statuses", () => {
    const workerArb = fc.record({
      id: fc.constantFrom("w1", "w2", "w3", "w4", "w5"),
      state: fc.constantFrom("active", "straggler", "dropped", "left"),
      clock: fc.nat(100),
      lastSeenMs: fc.nat(5000),
      name: fc.string({ maxLength: 5 }),
      stalenessHist: fc.array(fc.nat(9), { maxLength: 4 }),
    });
    const statusArb = fc.record({
      clock: fc.record({ min: fc.nat(50), max: fc.nat(50) }),
      consistency: fc.record({ mode: fc.constantFrom("ssp", "bsp", "asp"), staleness: fc.nat(5) }),
      workers: fc.uniqueArray(workerArb, { selector: (w) => w.id, maxLength: 5 }),
      grow: fc.nat(3),
      thin: fc.boolean(),
      test: fc.option(fc.constantFrom("accuracy", "rmse")),
    });
    fc.assert(
      fc.property(fc.array(statusArb, { minLength: 2, maxLength: 8 }), (steps) => {
        let loss: Json[] = [];
        let events: Json[] = [];
        let prev: JsonObject | null = null;
        steps.forEach((s, k) => {
          for (let i = 0; i < s.grow; i++) {
            loss.push([loss.length + k * 10, i]);
            events.push({ t: k * 10 + i, kind: "joined" });
          }
          if (s.thin && loss.length > 3) {
            const half = loss.length >> 1;
            loss = [...loss.slice(0, half).filter((_, i) => i % 2 === 0), ...loss.slice(half)];
            events = events.slice(1);
          }
          const next: JsonObject = status({
            clock: s.clock,
            consistency: s.consistency,
            workers: s.workers,
            metrics: { trainLoss: [...loss], test: s.test === null ? null : { name: s.test, series: [...loss] } },
            events: [...events],
          });
          if (prev !== null) {
            const got = applyDelta(prev, diffStatus(prev, next, k));
            if (!jsonEqual(got, next)) throw new Error(`mismatch at step ${k}: ${JSON.stringify(got)} vs ${JSON.stringify(next)}`);
          }
          prev = next;
        });
      }),
      { numRuns: 300 },
    );
  });
});

describe("parseDelta / parseFull", () => {
  it("accepts well-formed messages and rejects others", () => {
    expect(parseDelta({ seq: 1 })).toEqual({ seq: 1 });
    expect(parseDelta({ seq: 1, workers: { upsert: [{ id: "w1" }], remove: [] } })).not.toBeNull();
    expect(parseDelta({ seq: 1.5 })).toBeNull();
    expect(parseDelta({ seq: 1, set: [] })).toBeNull();
    expect(parseDelta({ seq: 1, workers: { upsert: [{}], remove: [] } })).toBeNull();
    expect(parseDelta({ seq: 1, lists: { events: { append: [], reset: [] } } })).toBeNull();
    expect(parseDelta({ seq: 1, lists: { events: { append: [1] } } })).not.toBeNull();
    expect(parseDelta("x")).toBeNull();
    expect(parseFull({ seq: 0, status: {} })).toEqual({ seq: 0, status: {} });
    expect(parseFull({ seq: 0, status: [] })).toBeNull();
  });
});
