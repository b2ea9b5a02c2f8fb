/**
 * Job `mnist-softmax`: softmax regression on MNIST, 784×10 weights and 10
 * biases, plain minibatch SGD. The gradient step runs on the page's backend
 * (WGSL kernels in shaders/, or the CPU reference); the test metric is the
 * accuracy on the 10k test images.
 */
import type { JobDefinition, Metric } from "./job.ts";

const IN = 784;
const OUT = 10;

export const mnistSoftmax: JobDefinition = {
  name: "mnist-softmax",
  dataset: "mnist",
  inputDim: IN,
  classes: OUT,
  parameters: IN * OUT + OUT,
  batch: 128,
  learningRate: 0.5,
  targetAccuracy: 0.9,
  init(): Float32Array {
    // Softmax regression is convex: zeros are a fine, seed-independent start.
    return new Float32Array(IN * OUT + OUT);
  },
  step(backend, params, batch, lr) {
    return backend.softmaxStep(params, batch.x, batch.labels, batch.size, lr);
  },
  evaluate(params, pixels, labels, count): Metric {
    let correct = 0;
    let lossSum = 0;
    const logits = new Float64Array(OUT);
    const bOff = IN * OUT;
    for (let n = 0; n < count; n++) {
      for (let k = 0; k < OUT; k++) logits[k] = params[bOff + k] ?? 0;
      const row = n * IN;
      for (let i = 0; i < IN; i++) {
        const px = pixels[row + i] ?? 0;
        if (px === 0) continue;
        const v = px / 255;
        const w = i * OUT;
        for (let k = 0; k < OUT; k++) logits[k] = (logits[k] ?? 0) + v * (params[w + k] ?? 0);
      }
      let best = 0;
      let max = -Infinity;
      for (let k = 0; k < OUT; k++) {
        const l = logits[k] ?? 0;
        if (l > max) {
          max = l;
          best = k;
        }
      }
      let z = 0;
      for (let k = 0; k < OUT; k++) z += Math.exp((logits[k] ?? 0) - max);
      const label = labels[n] ?? 0;
      lossSum += Math.log(z) - ((logits[label] ?? 0) - max);
      if (best === label) correct++;
    }
    return { name: "accuracy", value: count > 0 ? correct / count : 0, loss: count > 0 ? lossSum / count : 0 };
  },
};
