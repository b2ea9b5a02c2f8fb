/**
 * CPU references for the softmax-regression kernels in `shaders/`: one
 * function per kernel, with the same inputs, outputs and layouts, plus the
 * whole step. The generic kernel library's references are in kernels-ref.ts.
 *
 * These are the test oracle for the softmax-regression step; Node code (the coordinator) imports `linearForward` to
 * measure accuracy. So: no DOM, no WebGPU, no imports beyond types.
 *
 * Sums are accumulated in float64 and rounded to float32 once at the end.
 * Parameter layout (see backend.ts): `W` row-major `[inDim][outDim]`, then
 * `b` `[outDim]`.
 */
import type { StepResult } from "./backend.ts";

/** Per-row softmax cross-entropy outputs. */
export interface SoftmaxXentResult {
  /** `batch × outDim`, row-major: `softmax(logits) − onehot(label)`. */
  readonly grad: Float32Array;
  /** `batch` losses `−log softmax(logits)[label]`. */
  readonly loss: Float32Array;
}

/** Number of parameters of a dense `inDim → outDim` layer (W then b). */
export function softmaxParamCount(inDim: number, outDim: number): number {
  return inDim * outDim + outDim;
}

function checkDim(name: string, value: number, min: number): void {
  if (!Number.isInteger(value) || value < min) {
    throw new Error(`${name} must be an integer ≥ ${min}, got ${value}`);
  }
}

function checkLength(name: string, array: ArrayLike<number>, expected: number): void {
  if (array.length !== expected) {
    throw new Error(`${name} has ${array.length} elements, expected ${expected}`);
  }
}

/**
 * Throws an Error naming the first mismatch between the step's inputs and the
 * layer shape: `params` of `inDim·outDim + outDim`, `x` of exactly
 * `batch·inDim`, `labels` of exactly `batch` entries in `[0, outDim)`,
 * `batch ≥ 1` (and `≤ maxBatch` when given), `lr` finite.
 */
export function validateStepInputs(
  params: Float32Array,
  x: Float32Array,
  labels: Uint32Array,
  batch: number,
  lr: number,
  inDim: number,
  outDim: number,
  maxBatch?: number,
): void {
  checkDim("inDim", inDim, 1);
  checkDim("outDim", outDim, 1);
  checkDim("batch", batch, 1);
  if (maxBatch !== undefined && batch > maxBatch) {
    throw new Error(`batch ${batch} exceeds the backend's maxBatch ${maxBatch}`);
  }
  if (!Number.isFinite(lr)) throw new Error(`lr must be finite, got ${lr}`);
  checkLength("params", params, softmaxParamCount(inDim, outDim));
  checkLength("x", x, batch * inDim);
  checkLength("labels", labels, batch);
  for (let r = 0; r < batch; r++) {
    const label = labels[r] ?? 0;
    if (label >= outDim) {
      throw new Error(`labels[${r}] = ${label} is outside [0, ${outDim})`);
    }
  }
}

/**
 * `logits = X · W + b` for `batch` rows: `x` is `batch × inDim`, the result is
 * `batch × outDim`, row-major. Reads `W` and `b` from `params` (layout above).
 */
export function linearForward(
  params: Float32Array,
  x: Float32Array,
  batch: number,
  inDim: number,
  outDim: number,
): Float32Array {
  checkDim("batch", batch, 0);
  checkLength("params", params, softmaxParamCount(inDim, outDim));
  checkLength("x", x, batch * inDim);
  const logits = new Float32Array(batch * outDim);
  const bOffset = inDim * outDim;
  const acc = new Float64Array(outDim);
  for (let r = 0; r < batch; r++) {
    for (let j = 0; j < outDim; j++) acc[j] = params[bOffset + j] ?? 0;
    const xBase = r * inDim;
    for (let k = 0; k < inDim; k++) {
      const xv = x[xBase + k] ?? 0;
      if (xv === 0) continue;
      const wBase = k * outDim;
      for (let j = 0; j < outDim; j++) acc[j] = (acc[j] ?? 0) + xv * (params[wBase + j] ?? 0);
    }
    logits.set(acc, r * outDim);
  }
  return logits;
}

/**
 * Per row of `logits` (`batch × outDim`): `p = softmax(z)`, `grad = p −
 * onehot(label)`, `loss = −log p[label]`, computed with the row maximum
 * subtracted so that no `exp` overflows.
 */
export function softmaxXentGrad(
  logits: Float32Array,
  labels: Uint32Array,
  batch: number,
  outDim: number,
): SoftmaxXentResult {
  checkDim("outDim", outDim, 1);
  checkLength("logits", logits, batch * outDim);
  checkLength("labels", labels, batch);
  const grad = new Float32Array(batch * outDim);
  const loss = new Float32Array(batch);
  const e = new Float64Array(outDim);
  for (let r = 0; r < batch; r++) {
    const base = r * outDim;
    const label = labels[r] ?? 0;
    if (label >= outDim) throw new Error(`labels[${r}] = ${label} is outside [0, ${outDim})`);
    let zMax = -Infinity;
    for (let j = 0; j < outDim; j++) zMax = Math.max(zMax, logits[base + j] ?? 0);
    let total = 0;
    for (let j = 0; j < outDim; j++) {
      const v = Math.exp((logits[base + j] ?? 0) - zMax);
      e[j] = v;
      total += v;
    }
    for (let j = 0; j < outDim; j++) {
      grad[base + j] = (e[j] ?? 0) / total - (j === label ? 1 : 0);
    }
    loss[r] = Math.log(total) - ((logits[base + label] ?? 0) - zMax);
  }
  return { grad, loss };
}

/**
 * `dW = −(lr / batch) · Xᵀ · G`: `x` is `batch × inDim`, `grad` is
 * `batch × outDim`; the result is `inDim × outDim`, row-major.
 */
export function weightGrad(
  x: Float32Array,
  grad: Float32Array,
  batch: number,
  lr: number,
  inDim: number,
  outDim: number,
): Float32Array {
  checkDim("batch", batch, 1);
  checkLength("x", x, batch * inDim);
  checkLength("grad", grad, batch * outDim);
  const acc = new Float64Array(inDim * outDim);
  for (let r = 0; r < batch; r++) {
    const xBase = r * inDim;
    const gBase = r * outDim;
    for (let i = 0; i < inDim; i++) {
      const xv = x[xBase + i] ?? 0;
      if (xv === 0) continue;
      const aBase = i * outDim;
      for (let j = 0; j < outDim; j++) {
        acc[aBase + j] = (acc[aBase + j] ?? 0) + xv * (grad[gBase + j] ?? 0);
      }
    }
  }
  const scale = -lr / batch;
  const out = new Float32Array(inDim * outDim);
  for (let i = 0; i < out.length; i++) out[i] = scale * (acc[i] ?? 0);
  return out;
}

/** `db = −(lr / batch) · Σ_rows G`: `grad` is `batch × outDim`; the result has `outDim` entries. */
export function biasGrad(grad: Float32Array, batch: number, lr: number, outDim: number): Float32Array {
  checkDim("batch", batch, 1);
  checkLength("grad", grad, batch * outDim);
  const acc = new Float64Array(outDim);
  for (let r = 0; r < batch; r++) {
    for (let j = 0; j < outDim; j++) acc[j] = (acc[j] ?? 0) + (grad[r * outDim + j] ?? 0);
  }
  const scale = -lr / batch;
  const out = new Float32Array(outDim);
  for (let j = 0; j < outDim; j++) out[j] = scale * (acc[j] ?? 0);
  return out;
}

/** Mean of the first `batch` per-row losses (the reduction the GPU step does last). */
export function meanLoss(rowLoss: Float32Array, batch: number): number {
  checkDim("batch", batch, 1);
  if (rowLoss.length < batch) throw new Error(`rowLoss has ${rowLoss.length} entries, expected ≥ ${batch}`);
  let total = 0;
  for (let r = 0; r < batch; r++) total += rowLoss[r] ?? 0;
  return total / batch;
}

/**
 * One SGD step of softmax regression on the CPU: the update `−lr · ∇loss` in
 * the parameter layout (dW then db) and the mean loss before the step.
 * Throws on shape mismatches (see `validateStepInputs`).
 */
export function cpuSoftmaxStep(
  params: Float32Array,
  x: Float32Array,
  labels: Uint32Array,
  batch: number,
  lr: number,
  inDim: number,
  outDim: number,
): StepResult {
  validateStepInputs(params, x, labels, batch, lr, inDim, outDim);
  const logits = linearForward(params, x, batch, inDim, outDim);
  const { grad, loss } = softmaxXentGrad(logits, labels, batch, outDim);
  const update = new Float32Array(softmaxParamCount(inDim, outDim));
  update.set(weightGrad(x, grad, batch, lr, inDim, outDim), 0);
  update.set(biasGrad(grad, batch, lr, outDim), inDim * outDim);
  return { update, loss: meanLoss(loss, batch) };
}
