/**
 * Job `mnist-softmax`: softmax regression on MNIST, 784×10 weights then 10
 * biases, plain minibatch SGD. Gradient: logits = X·W + b; G = softmax − onehot
 * (scaled by 1/B); dW = Xᵀ·G; db = Σ_rows G. Metric: accuracy on the test images.
 */
import { defineJob, type Metric } from "./job.ts";
import { sgd } from "./optimizers.ts";
import { scoreLogits } from "./scoring.ts";

const IN = 784;
const OUT = 10;

export const mnistSoftmax = defineJob({
  name: "mnist-softmax",
  dataset: "mnist",
  inputDim: IN,
  classes: OUT,
  parameters: IN * OUT + OUT,
  batch: 128,
  learningRate: 0.5,
  targetAccuracy: 0.9,
  optimizer: sgd(),
  init(): Float32Array {
    // Softmax regression is convex: zeros are a fine, seed-independent start.
    return new Float32Array(IN * OUT + OUT);
  },
  gradient(s, params, batch) {
    const B = batch.size;
    const x = s.upload(batch.x, B, IN);
    const w = s.upload(params.subarray(0, IN * OUT), IN, OUT);
    const b = s.upload(params.subarray(IN * OUT), 1, OUT);
    const logits = s.biasAct(s.matmul(x, w), b, "none");
    const { grad, loss } = s.softmaxXent(logits, s.uploadLabels(batch.labels), 1 / B);
    const dw = s.matmul(x, grad, { transA: true });
    const db = s.colSum(grad, 1);
    return { grads: [dw, db], loss: s.colSum(loss, 1 / B) };
  },
  matmulShapes: (rows) => [
    [rows, OUT, IN],
    [IN, OUT, rows],
  ],
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
      const sc = scoreLogits(logits, OUT, labels[n] ?? 0);
      lossSum += sc.loss;
      if (sc.correct) correct++;
    }
    return { name: "accuracy", value: count > 0 ? correct / count : 0, loss: count > 0 ? lossSum / count : 0 };
  },
});
