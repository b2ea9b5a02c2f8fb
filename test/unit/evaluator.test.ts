/**
 * Test-set evaluation in a worker thread: the same metric as on the main
 * thread, and the event loop keeps running while it computes.
 */
import { describe, expect, it } from "vitest";
import { inlineEvaluator, threadCpuMs, threadEvaluator, timed } from "../../coordinator/evaluator.ts";
import { mnistSoftmax } from "../../client/jobs/mnist-softmax.ts";
import type { ImageSet } from "../../coordinator/data.ts";
import { JobRun } from "../../coordinator/job.ts";
import { encodeModelUpload, type ServerMessage } from "../../coordinator/protocol.ts";
import { tinyJobOptions } from "../support/tiny-run.ts";
import type { Evaluation, Evaluator } from "../../coordinator/evaluator.ts";

function testSet(count: number): ImageSet {
  const pixels = new Uint8Array(count * 784);
  const labels = new Uint8Array(count);
  for (let n = 0; n < count; n++) {
    labels[n] = n % 10;
    for (let k = 0; k < 784; k += 7) pixels[n * 784 + k] = (n * 31 + k) % 256;
  }
  return { count, pixelsPerImage: 784, pixels, labels };
}

describe("evaluation off the event loop", () => {
  it("gives the inline metric and leaves the loop free meanwhile", async () => {
    const test = testSet(20_000);
    const params = mnistSoftmax.init(3);
    for (let i = 0; i < params.length; i++) params[i] = Math.sin(i) * 0.01;
    const inline = await inlineEvaluator(mnistSoftmax, test).evaluate(1, params);
    const thread = threadEvaluator(mnistSoftmax, test);
    try {
      // Warm the thread up (module loading), then time one evaluation.
      await thread.evaluate(1, params);
      let ticks = 0;
      const timer = setInterval(() => ticks++, 2);
      const t0 = performance.now();
      const m = await thread.evaluate(2, params);
      const waited = performance.now() - t0;
      clearInterval(timer);
      expect(m.name).toBe(inline.name);
      expect(m.value).toBe(inline.value);
      // The loop ran timers while the thread computed (inline, it could not run any).
      expect(m.ms).toBeGreaterThan(5);
      expect(ticks).toBeGreaterThan(0);
      expect(waited).toBeGreaterThanOrEqual(m.ms * 0.5);
    } finally {
      await thread.close();
    }
  }, 60_000);

  it("counts an evaluation's CPU time apart from its wall time (a thread that sleeps uses no CPU)", async () => {
    if (threadCpuMs() === null) return expect(process.platform).not.toBe("linux");
    // Busy for ~150 ms: CPU time close to the wall time (a busy machine can only make the wall time longer).
    const busy = timed(() => {
      const end = performance.now() + 150;
      let x = 0;
      while (performance.now() < end) x += Math.sqrt(x + 1);
      return x;
    });
    expect(busy.cpuMs).toBeDefined();
    expect(busy.cpuMs as number).toBeGreaterThan(50);
    expect(busy.cpuMs as number).toBeLessThanOrEqual(busy.ms + 20);
    // Blocked for ~150 ms without computing: almost no CPU time.
    const shared = new Int32Array(new SharedArrayBuffer(4));
    const idle = timed(() => Atomics.wait(shared, 0, 0, 150));
    expect(idle.ms).toBeGreaterThan(140);
    expect(idle.cpuMs as number).toBeLessThan(40);
    // The worker thread reports it too.
    const thread = threadEvaluator(mnistSoftmax, testSet(5_000));
    try {
      const m = await thread.evaluate(1, mnistSoftmax.init(1));
      expect(m.cpuMs).toBeDefined();
      expect(m.cpuMs as number).toBeLessThanOrEqual(m.ms + 20);
    } finally {
      await thread.close();
    }
  }, 60_000);

  it("spaces evaluations by their CPU time, not by a busy machine's wall time", async () => {
    // Each evaluation took 4 s of wall time; with its CPU time known (40 ms) the next upload 1.5 s
    // later is evaluated (spacing max(1 s, 10 × 40 ms)); without it, not for 40 s.
    const evaluatedClocks = async (cpuMs: number | undefined): Promise<number[]> => {
      const clocks: number[] = [];
      const evaluator: Evaluator = {
        evaluate: (clock) => {
          clocks.push(clock);
          const e: Evaluation = { name: "accuracy", value: 0.5, ms: 4000, ...(cpuMs !== undefined ? { cpuMs } : {}) };
          return Promise.resolve(e);
        },
        close: () => Promise.resolve(),
      };
      let now = 1_000_000;
      const run = new JobRun(tinyJobOptions({ evaluator, now: () => now }));
      const inbox: ServerMessage[] = [];
      const r = run.join({ type: "join", name: "p", backend: "cpu", kernel: "k", adapter: "a" }, (m) => inbox.push(m));
      if (!r.ok) throw new Error(r.reason);
      for (let c = 1; c <= 15; c++) {
        now += 300;
        run.onMessage(r.id, { type: "clock", clock: c, minApplied: c, loss: 1, stepMs: 5, batch: 8, examples: c * 8, bytesIn: 0, bytesOut: 0, peers: 0 });
        if (c % 5 === 0) {
          expect(run.onBinary(r.id, new Uint8Array(encodeModelUpload(c, mnistSoftmax.init(c))))).toBeNull();
          await new Promise((res) => setTimeout(res, 0));
        }
      }
      return clocks;
    };
    expect(await evaluatedClocks(40)).toEqual([5, 10, 15]);
    expect(await evaluatedClocks(undefined)).toEqual([5]);
  });
});
