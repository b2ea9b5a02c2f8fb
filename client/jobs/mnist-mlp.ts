/**
 * Job `mnist-mlp`: a 784–256–10 perceptron with a ReLU hidden layer on MNIST.
 *
 * Parameter layout (203,530 floats): W1 `[784][256]`, b1 `[256]`, W2 `[256][10]`, b2 `[10]`.
 * Init: He-normal W1 (std √(2/784)), W2 std √(1/256), zero biases, from `seed`.
 * Gradient (B rows, mean loss):
 *   H = relu(X·W1 + b1); Z = H·W2 + b2; G2 = (softmax(Z) − onehot)/B
 *   dW2 = Hᵀ·G2; db2 = Σ G2; dH = G2·W2ᵀ; G1 = dH ⊙ [H > 0]; dW1 = Xᵀ·G1; db1 = Σ G1
 * Optimizer: SGD with momentum 0.9 (the update sent to peers is the momentum delta).
 * Metric: accuracy on the test images, evaluated in one pass that skips zero
 * pixels (≈ 80 % of MNIST), ~0.3 s for the 10k test images on one core.
 */
import { defineJob, type Metric } from "./job.ts";
import { momentum } from "./optimizers.ts";
import { fillNormal, uniformSource } from "./random.ts";
import { scoreLogits } from "./scoring.ts";

const IN = 784;
const HID = 256;
const OUT = 10;
const W1 = 0;
const B1 = IN * HID;
const W2 = B1 + HID;
const B2 = W2 + HID * OUT;
const PARAMS = B2 + OUT;

export const mnistMlp = defineJob({
  name: "mnist-mlp",
  dataset: "mnist",
  inputDim: IN,
  classes: OUT,
  parameters: PARAMS,
  batch: 64,
  learningRate: 0.02,
  targetAccuracy: 0.97,
  optimizer: momentum(0.9),
  init(seed: number): Float32Array {
    const p = new Float32Array(PARAMS);
    const u = uniformSource(seed * 2654435761 + 17);
    fillNormal(p, W1, IN * HID, Math.sqrt(2 / IN), u);
    fillNormal(p, W2, HID * OUT, Math.sqrt(1 / HID), u);
    return p;
  },
  gradient(s, params, batch) {
    const B = batch.size;
    const x = s.upload(batch.x, B, IN);
    const w1 = s.upload(params.subarray(W1, B1), IN, HID);
    const b1 = s.upload(params.subarray(B1, W2), 1, HID);
    const w2 = s.upload(params.subarray(W2, B2), HID, OUT);
    const b2 = s.upload(params.subarray(B2), 1, OUT);
    const h = s.biasAct(s.matmul(x, w1), b1, "relu");
    const z = s.biasAct(s.matmul(h, w2), b2, "none");
    const { grad: g2, loss } = s.softmaxXent(z, s.uploadLabels(batch.labels), 1 / B);
    const dw2 = s.matmul(h, g2, { transA: true });
    const db2 = s.colSum(g2, 1);
    const g1 = s.reluBackward(s.matmul(g2, w2, { transB: true }), h);
    const dw1 = s.matmul(x, g1, { transA: true });
    const db1 = s.colSum(g1, 1);
    // Blocks in the parameter layout: W1, b1, W2, b2.
    return { grads: [dw1, db1, dw2, db2], loss: s.colSum(loss, 1 / B) };
  },
  matmulShapes: (rows) => [
    [rows, HID, IN],
    [rows, OUT, HID],
    [HID, OUT, rows],
    [rows, HID, OUT],
    [IN, HID, rows],
  ],
  evaluate(params, pixels, labels, count): Metric {
    // Hot loop (≈ 4·10⁸ multiply-adds for 10k images): views instead of
    // offsets, no `??` in the inner loops, zero pixels and dead units skipped.
    const w1 = params.subarray(W1, B1);
    const b1 = params.subarray(B1, W2);
    const w2 = params.subarray(W2, B2);
    const hidden = new Float32Array(HID);
    const logits = new Float64Array(OUT);
    let correct = 0;
    let lossSum = 0;
    for (let n = 0; n < count; n++) {
      hidden.set(b1);
      const row = n * IN;
      for (let i = 0; i < IN; i++) {
        const px = pixels[row + i]!;
        if (px === 0) continue;
        const v = px / 255;
        let w = i * HID;
        // HID is a multiple of 4: unrolled by hand, V8 does not vectorize.
        for (let j = 0; j < HID; j += 4, w += 4) {
          hidden[j] = hidden[j]! + v * w1[w]!;
          hidden[j + 1] = hidden[j + 1]! + v * w1[w + 1]!;
          hidden[j + 2] = hidden[j + 2]! + v * w1[w + 2]!;
          hidden[j + 3] = hidden[j + 3]! + v * w1[w + 3]!;
        }
      }
      for (let k = 0; k < OUT; k++) logits[k] = params[B2 + k]!;
      for (let j = 0; j < HID; j++) {
        const hv = hidden[j]!;
        if (hv <= 0) continue;
        const w = j * OUT;
        for (let k = 0; k < OUT; k++) logits[k]! += hv * w2[w + k]!;
      }
      const sc = scoreLogits(logits, OUT, labels[n] ?? 0);
      lossSum += sc.loss;
      if (sc.correct) correct++;
    }
    return { name: "accuracy", value: count > 0 ? correct / count : 0, loss: count > 0 ? lossSum / count : 0 };
  },
});
