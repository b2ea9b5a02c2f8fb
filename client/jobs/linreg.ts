/**
 * Job `linreg`: linear regression, the worked example of docs/jobs.md.
 *
 * Data: the MNIST images the coordinator already serves are the inputs x
 * (784 pixels / 255); the target is synthetic, y = x·w* + b* for a fixed
 * "teacher" (w*, b*) drawn from seed 2024, so the job needs no new data
 * pipeline and the optimum is known (R² = 1).
 * Parameters (785 floats): w `[784][1]`, then b `[1]`; zero init.
 * Gradient (B rows): pred = X·w + b; r = (pred − y)/B; loss = ½ mean (pred − y)²;
 *   dw = Xᵀ·r; db = Σ r. Optimizer: plain SGD.
 * Metric: R² = 1 − SSE/SST on the test images (named "r2").
 */
import { defineJob, type Metric } from "./job.ts";
import { sgd } from "./optimizers.ts";
import { fillNormal, uniformSource } from "./random.ts";

const IN = 784;
const PARAMS = IN + 1;

/** The teacher: w* ~ N(0, 0.1²) per pixel, b* = 0.5. */
const TEACHER = (() => {
  const t = new Float32Array(PARAMS);
  fillNormal(t, 0, IN, 0.1, uniformSource(2024));
  t[IN] = 0.5;
  return t;
})();

/** The synthetic targets of `rows` rows of `x` (`rows × 784`). */
export function linregTargets(x: Float32Array, rows: number): Float32Array {
  const y = new Float32Array(rows);
  for (let r = 0; r < rows; r++) {
    let acc = TEACHER[IN] ?? 0;
    for (let i = 0; i < IN; i++) acc += (x[r * IN + i] ?? 0) * (TEACHER[i] ?? 0);
    y[r] = acc;
  }
  return y;
}

export const linreg = defineJob({
  name: "linreg",
  dataset: "mnist",
  inputDim: IN,
  classes: 1,
  parameters: PARAMS,
  batch: 64,
  learningRate: 0.01,
  targetAccuracy: 0.9,
  optimizer: sgd(),
  init: () => new Float32Array(PARAMS),
  gradient(s, params, batch) {
    const B = batch.size;
    const x = s.upload(batch.x, B, IN);
    const w = s.upload(params.subarray(0, IN), IN, 1);
    const b = s.upload(params.subarray(IN), 1, 1);
    const pred = s.biasAct(s.matmul(x, w), b, "none");
    const { grad: r, loss } = s.mseGrad(pred, s.upload(linregTargets(batch.x, B), B, 1), 1 / B);
    const dw = s.matmul(x, r, { transA: true });
    const db = s.colSum(r, 1);
    return { grads: [dw, db], loss: s.colSum(loss, 1 / B) };
  },
  matmulShapes: (rows) => [
    [rows, 1, IN],
    [IN, 1, rows],
  ],
  evaluate(params, pixels, _labels, count): Metric {
    let sse = 0;
    let sum = 0;
    let sumSq = 0;
    for (let n = 0; n < count; n++) {
      let pred = params[IN] ?? 0;
      let truth = TEACHER[IN] ?? 0;
      for (let i = 0; i < IN; i++) {
        const px = pixels[n * IN + i] ?? 0;
        if (px === 0) continue;
        const v = px / 255;
        pred += v * (params[i] ?? 0);
        truth += v * (TEACHER[i] ?? 0);
      }
      sse += (pred - truth) ** 2;
      sum += truth;
      sumSq += truth * truth;
    }
    const sst = sumSq - (sum * sum) / Math.max(1, count);
    return { name: "r2", value: count > 0 && sst > 0 ? 1 - sse / sst : 0, loss: count > 0 ? sse / (2 * count) : 0 };
  },
});
