import { describe, expect, it } from "vitest";
import { assess, chooseDrops, rejoinDelayMs, median, type WorkerHealth } from "../../coordinator/stragglers.ts";
import { initialAutoState, stepAuto, type AutoSample } from "../../coordinator/auto.ts";

const h = (id: string, stepMs: number, over: Partial<WorkerHealth> = {}): WorkerHealth => ({
  id,
  clock: 10,
  stepMs,
  lastSeen: 1000,
  slowSince: null,
  paused: false,
  syncing: false,
  ...over,
});

describe("straggler detection", () => {
  it("marks a silent worker gone after the heartbeat timeout", () => {
    const v = assess([h("w1", 10), h("w2", 10, { lastSeen: 0 })], 3, 5_500);
    expect(v.find((x) => x.id === "w2")?.verdict).toBe("gone");
    expect(v.find((x) => x.id === "w1")?.verdict).toBe("ok");
  });

  it("keeps the last replica holders in the view while they are all silent, for a bounded time", () => {
    // Everyone silent for 6 s: suspect, not gone (nobody else holds the model).
    const all = assess([h("w1", 10, { lastSeen: 0 }), h("w2", 10, { lastSeen: 500 })], 3, 6_000);
    expect(all.map((v) => v.verdict)).toEqual(["suspect", "suspect"]);
    // A joiner still syncing holds no replica: it does not count as someone heard.
    const withJoiner = assess([h("w1", 10, { lastSeen: 0 }), h("w3", 0, { lastSeen: 6_000, syncing: true })], 3, 6_000);
    expect(withJoiner.find((x) => x.id === "w1")?.verdict).toBe("suspect");
    // One holder heard again: the silent ones are gone as usual.
    const oneBack = assess([h("w1", 10, { lastSeen: 0 }), h("w2", 10, { lastSeen: 5_900 })], 3, 6_000);
    expect(oneBack.map((v) => v.verdict)).toEqual(["gone", "ok"]);
    // Silent past the bound: gone even though nobody else holds a replica.
    const long = assess([h("w1", 10, { lastSeen: 0 }), h("w2", 10, { lastSeen: 0 })], 3, 60_001);
    expect(long.map((v) => v.verdict)).toEqual(["gone", "gone"]);
  });

  it("calls a worker slower than 3× the median a straggler only after the grace period", () => {
    const ws = [h("w1", 10), h("w2", 11), h("w3", 12), h("w4", 80)]; // 80 > 3 × 11.5 and > 11.5 + 15
    const first = assess(ws, 2, 1000);
    const slow = first.find((x) => x.id === "w4");
    expect(slow?.verdict).toBe("ok");
    expect(slow?.slowSince).toBe(1000);
    const later = assess(ws.map((w) => (w.id === "w4" ? { ...w, slowSince: 1000, lastSeen: 6000 } : { ...w, lastSeen: 6000 })), 2, 6000);
    expect(later.find((x) => x.id === "w4")?.verdict).toBe("straggler");
    expect(later.filter((x) => x.verdict === "straggler")).toHaveLength(1);
  });

  it("does not judge a joiner that is still syncing: it is in nobody's gate yet", () => {
    // A rejoining slow page reports its old 800 ms step time while it loads its snapshot.
    const at = (t: number, syncing: boolean, slowSince: number | null): WorkerHealth[] => [
      h("w1", 200, { lastSeen: t }),
      h("w2", 200, { lastSeen: t }),
      h("w4", 200, { lastSeen: t }),
      h("w5", 800, { clock: 2, lastSeen: t, syncing, slowSince }),
    ];
    expect(assess(at(6_000, true, 0), 1, 6_000).find((x) => x.id === "w5")).toMatchObject({ verdict: "ok", slowSince: null });
    // Once in the gate, the same step time makes it a straggler after the grace period.
    expect(assess(at(7_000, false, null), 1, 7_000).find((x) => x.id === "w5")).toMatchObject({ verdict: "ok", slowSince: 7_000 });
    expect(assess(at(12_000, false, 7_000), 1, 12_000).find((x) => x.id === "w5")?.verdict).toBe("straggler");
  });

  it("forgets a slow spell once the worker keeps up again", () => {
    const v = assess([h("w1", 10), h("w2", 10), h("w3", 12, { slowSince: 500 })], 2, 1000);
    expect(v.find((x) => x.id === "w3")?.slowSince).toBeNull();
  });

  it("drops the slowest straggler first, one at a time, never below the minimum, never in ASP", () => {
    const verdicts = [
      { id: "w1", verdict: "straggler" as const, slowSince: 0, reason: "" },
      { id: "w2", verdict: "straggler" as const, slowSince: 0, reason: "" },
      { id: "w3", verdict: "ok" as const, slowSince: null, reason: "" },
    ];
    const step = new Map([["w1", 50], ["w2", 90], ["w3", 10]]);
    expect(chooseDrops(verdicts, step, 3, false)).toEqual(["w2"]);
    expect(chooseDrops(verdicts, step, 1, false)).toEqual([]);
    expect(chooseDrops(verdicts, step, 3, true)).toEqual([]);
    expect(rejoinDelayMs(1)).toBe(10_000);
    expect(rejoinDelayMs(3)).toBe(40_000);
    expect(rejoinDelayMs(30)).toBe(120_000);
    expect(median([3, 1, 2])).toBe(2);
  });
});

describe("auto staleness", () => {
  const samples = (wait: number[], speed: number[]): AutoSample[] =>
    wait.map((w, i) => ({ id: `w${i + 1}`, waitMs: w, stepsPerSec: speed[i] ?? 1 }));

  it("raises s while the fast workers wait more than the target share, and lowers it when they do not wait", () => {
    let st = initialAutoState(0, 0);
    st = stepAuto(st, samples([0, 0, 0, 0], [10, 10, 10, 5]), 4000); // first window: baseline only
    expect(st.staleness).toBe(0);
    st = stepAuto(st, samples([2000, 2000, 2000, 0], [10, 10, 10, 5]), 8000); // fast ones waited 50%
    expect(st.staleness).toBe(1);
    expect(st.lastWaitShare).toBeCloseTo(0.5);
    st = stepAuto(st, samples([3000, 3000, 3000, 0], [10, 10, 10, 5]), 12000); // 25%
    expect(st.staleness).toBe(2);
    st = stepAuto(st, samples([3200, 3300, 3200, 0], [10, 10, 10, 5]), 16000); // 5%: within target
    expect(st.staleness).toBe(2);
    st = stepAuto(st, samples([3200, 3300, 3200, 0], [10, 10, 10, 5]), 20000); // 0%
    expect(st.staleness).toBe(1);
  });

  it("does not change s within a window or with fewer than two workers", () => {
    const st = initialAutoState(3, 0);
    expect(stepAuto(st, samples([0, 0], [1, 1]), 1000)).toBe(st);
    const one = stepAuto(stepAuto(st, samples([0], [1]), 4000), samples([4000], [1]), 8000);
    expect(one.staleness).toBe(3);
  });
});
