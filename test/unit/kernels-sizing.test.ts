import { tinyDataset, tinyJobOptions } from "../support/tiny-run.ts";
import { describe, expect, it } from "vitest";
import { sizeBatches, type SizingSample } from "../../coordinator/sizing.ts";
import { JobRun } from "../../coordinator/job.ts";
import type { ServerMessage } from "../../coordinator/protocol.ts";

const at = (id: string, batch: number, perExampleMs: number): SizingSample => ({ id, batch, computeMs: perExampleMs * batch });

/** Compute time per step each worker would take at its new batch. */
function stepTimes(samples: SizingSample[], sized: Map<string, number>): number[] {
  return samples.map((s) => (s.computeMs / s.batch) * sized.get(s.id)!);
}

describe("work sizing", () => {
  it("keeps equally fast workers at the base batch, through ±10 % noise", () => {
    const sized = sizeBatches([at("w1", 64, 1), at("w2", 64, 1.1), at("w3", 64, 0.92), at("w4", 64, 1.05)], 64);
    expect([...sized.values()]).toEqual([64, 64, 64, 64]);
  });

  it("gives a 2× faster worker about twice the batch of a slower one, equal step times, same examples per clock", () => {
    const samples = [at("w1", 64, 0.5), at("w2", 64, 1), at("w3", 64, 1)];
    const sized = sizeBatches(samples, 64);
    expect(sized.get("w1")! / sized.get("w2")!).toBeCloseTo(2, 1);
    const total = [...sized.values()].reduce((a, b) => a + b, 0);
    expect(Math.abs(total - 3 * 64)).toBeLessThanOrEqual(2);
    const times = stepTimes(samples, sized);
    expect(Math.max(...times) / Math.min(...times)).toBeLessThan(1.05);
  });

  it("never hides a fixed per-step delay: time outside the compute is not an input", () => {
    // A ?slowdown page computes as fast as the others and waits a fixed delay
    // per step; what it reports to sizing is only its compute, so it gets the
    // same batch and stays slower by its whole delay.
    const samples = [at("w1", 64, 1), at("w2", 64, 1), at("w3", 64, 1)];
    expect([...sizeBatches(samples, 64).values()]).toEqual([64, 64, 64]);
  });

  it("floors the batch of a very slow worker at a quarter of the base", () => {
    const sized = sizeBatches([at("w1", 64, 1), at("w2", 64, 1), at("w3", 64, 20)], 64);
    expect(sized.get("w3")).toBe(16);
    expect(sized.get("w1")).toBe(88); // (192 − 16) / 2
  });

  it("respects the caps and leaves unmeasured workers at their batch", () => {
    const sized = sizeBatches([at("w1", 64, 0.01), at("w2", 64, 10), at("w4", 64, 10), { id: "w3", batch: 40, computeMs: 0 }], 64);
    // maxShare 2: w1 would take 160 to keep 3 × 64 examples per clock; the
    // cap does not push the difference onto the slow ones.
    expect(sized.get("w1")).toBe(128);
    expect(sized.get("w2")).toBe(16);
    expect(sized.get("w4")).toBe(16);
    expect(sized.get("w3")).toBe(40);
    expect(sizeBatches([at("w1", 64, 3)], 64).get("w1")).toBe(64); // alone: nothing to balance
  });

  it("converges when the workers apply what it says (a fixed point after a few rounds)", () => {
    const per: Record<string, number> = { w1: 0.3, w2: 1, w3: 1.6 };
    let batches: Record<string, number> = { w1: 32, w2: 32, w3: 32 };
    let previous = "";
    for (let round = 0; round < 6; round++) {
      const samples = Object.entries(batches).map(([id, b]) => at(id, b, per[id]!));
      const sized = sizeBatches(samples, 32);
      batches = Object.fromEntries(sized);
      const key = JSON.stringify(batches);
      if (key === previous) break;
      previous = key;
    }
    const samples = Object.entries(batches).map(([id, b]) => at(id, b, per[id]!));
    expect(JSON.stringify(Object.fromEntries(sizeBatches(samples, 32)))).toBe(previous);
    const times = stepTimes(samples, new Map(Object.entries(batches)));
    expect(Math.max(...times) / Math.min(...times)).toBeLessThan(1.5);
  });
});

describe("work sizing in the coordinator", () => {
  function makeRun(workSizing: boolean, clock: { t: number }): JobRun {
    return new JobRun(tinyJobOptions({ data: tinyDataset(10), evalEvery: 1000, batch: 64, workSizing, now: () => clock.t }));
  }
  /** Two workers report steps at 64 rows for a few seconds: w1 computes 3× faster than w2. */
  function drive(run: JobRun, clock: { t: number }): Map<string, (number | undefined)[]> {
    const acks = new Map<string, (number | undefined)[]>();
    const ids: string[] = [];
    for (const name of ["fast", "slow"]) {
      const got: (number | undefined)[] = [];
      const joined = run.join({ type: "join", name, backend: "cpu", kernel: "wasm-xnnpack", adapter: "cpu" }, (m: ServerMessage) => {
        if (m.type === "ack") got.push(m.batch);
      });
      if (!joined.ok) throw new Error(joined.reason);
      ids.push(joined.id);
      acks.set(name, got);
    }
    const per = [0.1, 0.3];
    for (let k = 1; k <= 20; k++) {
      clock.t += 250;
      ids.forEach((id, i) => {
        // Each worker runs the batch its last ack asked for (64 before any).
        const batch = [...acks.values()][i]!.at(-1) ?? 64;
        const computeMs = per[i]! * batch;
        run.onMessage(id, { type: "clock", clock: k, minApplied: k - 1, loss: 1, stepMs: computeMs + 40 * i, computeMs, batch, examples: k * batch, bytesIn: 0, bytesOut: 0, peers: 1 });
      });
    }
    return acks;
  }

  it("sends each worker a batch in its acks, larger for the faster one, and reports them in the status", () => {
    const clock = { t: 1_000_000 };
    const run = makeRun(true, clock);
    const acks = drive(run, clock);
    const fast = acks.get("fast")!.at(-1)!;
    const slow = acks.get("slow")!.at(-1)!;
    // Equal compute per step (0.1 ms × fast = 0.3 ms × slow) and 2 × 64 examples per
    // clock; the slow one's extra 40 ms per step outside its compute changes nothing.
    expect(fast).toBe(96);
    expect(slow).toBe(32);
    const workers = run.status()["workers"] as { name: string; batch: number }[];
    expect(workers.map((w) => [w.name, w.batch])).toEqual([["fast", 96], ["slow", 32]]);
  });

  it("sends no batch with --work-sizing off", () => {
    const clock = { t: 1_000_000 };
    const acks = drive(makeRun(false, clock), clock);
    expect(acks.get("fast")!.every((b) => b === undefined)).toBe(true);
  });
});
