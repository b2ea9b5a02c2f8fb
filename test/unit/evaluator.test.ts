/**
 * Test-set evaluation in a worker thread: the same metric as on the main
 * thread, and the event loop keeps running while it computes.
 */
import { describe, expect, it } from "vitest";
import { inlineEvaluator, threadEvaluator } from "../../coordinator/evaluator.ts";
import { mnistSoftmax } from "../../client/jobs/mnist-softmax.ts";
import type { ImageSet } from "../../coordinator/data.ts";

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
});
