import { describe, expect, it } from "vitest";
import {
  biasGrad,
  cpuSoftmaxStep,
  linearForward,
  meanLoss,
  softmaxParamCount,
  softmaxXentGrad,
  validateStepInputs,
  weightGrad,
} from "../../client/gpu/reference.ts";

/** Element-wise closeness with a message naming the index. */
function expectClose(actual: ArrayLike<number>, expected: readonly number[], digits = 6): void {
  expect(actual.length).toBe(expected.length);
  for (let i = 0; i < expected.length; i++) {
    expect(actual[i], `index ${i}`).toBeCloseTo(expected[i] ?? Number.NaN, digits);
  }
}

describe("linearForward", () => {
  it("computes X·W + b on a 2×3 input by hand", () => {
    // W (3×2) = [[1, 2], [0, -1], [3, 0.5]], b = [0.5, -1]
    const params = new Float32Array([1, 2, 0, -1, 3, 0.5, 0.5, -1]);
    // x row 0 = [1, 2, 3]:  1·1 + 2·0 + 3·3 + 0.5 = 10.5;  1·2 + 2·(−1) + 3·0.5 − 1 = 0.5
    // x row 1 = [−1, 0, 2]: −1 + 0 + 6 + 0.5 = 5.5;         −2 + 0 + 1 − 1 = −2
    const x = new Float32Array([1, 2, 3, -1, 0, 2]);
    expect(Array.from(linearForward(params, x, 2, 3, 2))).toEqual([10.5, 0.5, 5.5, -2]);
  });

  it("returns only the bias for zero inputs and nothing for an empty batch", () => {
    const params = new Float32Array([9, 9, 9, 9, 0.25, -4]);
    expect(Array.from(linearForward(params, new Float32Array(2), 1, 2, 2))).toEqual([0.25, -4]);
    expect(linearForward(params, new Float32Array(0), 0, 2, 2)).toHaveLength(0);
  });

  it("rejects mismatched shapes", () => {
    expect(() => linearForward(new Float32Array(7), new Float32Array(6), 2, 3, 2)).toThrow(/params has 7/);
    expect(() => linearForward(new Float32Array(8), new Float32Array(5), 2, 3, 2)).toThrow(/x has 5/);
  });
});

describe("softmaxXentGrad", () => {
  it("matches hand-computed softmax, gradient and loss", () => {
    // Row 0: logits [0, 0], label 1 → p = [1/2, 1/2], G = [1/2, −1/2], loss = ln 2.
    // Row 1: logits [2, 0], label 0 → p0 = 1 / (1 + e^−2) ≈ 0.8807971,
    //        G = [p0 − 1, 1 − p0], loss = ln(1 + e^−2) ≈ 0.1269280.
    const { grad, loss } = softmaxXentGrad(new Float32Array([0, 0, 2, 0]), new Uint32Array([1, 0]), 2, 2);
    const p0 = 1 / (1 + Math.exp(-2));
    expectClose(grad, [0.5, -0.5, p0 - 1, 1 - p0]);
    expectClose(loss, [Math.LN2, Math.log(1 + Math.exp(-2))]);
    expect(loss[1]).toBeCloseTo(0.126928, 6);
  });

  it("each gradient row sums to zero", () => {
    const logits = new Float32Array([0.3, -1.2, 4, 2.5, 2.5, -7, 0, 0, 0.1]);
    const { grad } = softmaxXentGrad(logits, new Uint32Array([2, 0, 1]), 3, 3);
    for (let r = 0; r < 3; r++) {
      expect((grad[r * 3] ?? 0) + (grad[r * 3 + 1] ?? 0) + (grad[r * 3 + 2] ?? 0)).toBeCloseTo(0, 6);
    }
  });

  it("stays finite for large logits (max subtraction)", () => {
    // exp(1000) overflows even float64; the shifted form does not.
    // Row 0: [1000, 1000, 0], label 0 → p = [1/2, 1/2, ~0], loss = ln 2.
    // Row 1: [−1000, −1000, −1000], label 2 → uniform, loss = ln 3.
    // Row 2: [0, 200], label 0 → loss = 200 + ln(1 + e^−200) = 200.
    const { grad, loss } = softmaxXentGrad(
      new Float32Array([1000, 1000, 0, -1000, -1000, -1000]),
      new Uint32Array([0, 2]),
      2,
      3,
    );
    expectClose(grad, [-0.5, 0.5, 0, 1 / 3, 1 / 3, -2 / 3]);
    expectClose(loss, [Math.LN2, Math.log(3)]);
    const far = softmaxXentGrad(new Float32Array([0, 200]), new Uint32Array([0]), 1, 2);
    expect(far.loss[0]).toBeCloseTo(200, 4);
    expectClose(far.grad, [-1, 1]);
    expect([...grad, ...loss, ...far.grad, ...far.loss].every(Number.isFinite)).toBe(true);
  });

  it("gives log(outDim) for a uniform prediction", () => {
    for (const outDim of [1, 2, 10, 1000]) {
      const { loss } = softmaxXentGrad(new Float32Array(outDim).fill(3.5), new Uint32Array([outDim - 1]), 1, outDim);
      expect(loss[0]).toBeCloseTo(Math.log(outDim), 6);
    }
  });

  it("rejects labels outside [0, outDim)", () => {
    expect(() => softmaxXentGrad(new Float32Array(2), new Uint32Array([2]), 1, 2)).toThrow(/labels\[0\] = 2/);
  });
});

describe("weightGrad and biasGrad", () => {
  // x (2×3) = [[1, 2, 3], [−1, 0, 2]], G (2×2) = [[0.5, −0.5], [−0.25, 0.25]], lr = 0.2, batch 2
  // → scale −lr/batch = −0.1.
  // XᵀG row 0: [1·0.5 + (−1)(−0.25), 1·(−0.5) + (−1)(0.25)] = [0.75, −0.75]
  //     row 1: [2·0.5, 2·(−0.5)]                             = [1, −1]
  //     row 2: [3·0.5 + 2·(−0.25), 3·(−0.5) + 2·0.25]        = [1, −1]
  // column sums of G: [0.25, −0.25]
  const x = new Float32Array([1, 2, 3, -1, 0, 2]);
  const g = new Float32Array([0.5, -0.5, -0.25, 0.25]);

  it("dW = −(lr/B)·XᵀG by hand", () => {
    expectClose(weightGrad(x, g, 2, 0.2, 3, 2), [-0.075, 0.075, -0.1, 0.1, -0.1, 0.1]);
  });

  it("db = −(lr/B)·column sums of G by hand", () => {
    expectClose(biasGrad(g, 2, 0.2, 2), [-0.025, 0.025]);
  });

  it("meanLoss averages the first batch rows", () => {
    expect(meanLoss(new Float32Array([1, 2, 6, 100]), 3)).toBeCloseTo(3, 6);
  });
});

describe("cpuSoftmaxStep", () => {
  it("starts from log(outDim) with zero parameters and pushes the bias towards the labels", () => {
    const inDim = 4;
    const outDim = 10;
    const batch = 5;
    const params = new Float32Array(softmaxParamCount(inDim, outDim));
    const x = new Float32Array(batch * inDim).map((_, i) => Math.sin(i));
    const labels = new Uint32Array([3, 3, 3, 7, 0]);
    const { update, loss } = cpuSoftmaxStep(params, x, labels, batch, 0.5, inDim, outDim);
    expect(loss).toBeCloseTo(Math.log(10), 6);
    expect(update).toHaveLength(inDim * outDim + outDim);
    // db_j = −(lr/B)·Σ_r (1/10 − [label_r = j]) = −0.1·(0.5 − count_j)
    const db = Array.from(update.subarray(inDim * outDim));
    expectClose(db, [0.05, -0.05, -0.05, 0.25, -0.05, -0.05, -0.05, 0.05, -0.05, -0.05]);
  });

  it("is −lr times the finite-difference gradient of the mean loss", () => {
    const inDim = 3;
    const outDim = 4;
    const batch = 6;
    const lr = 0.7;
    let s = 12345;
    const rand = (): number => {
      s = (s * 1103515245 + 12345) % 2147483648;
      return s / 2147483648 - 0.5;
    };
    const params = new Float32Array(softmaxParamCount(inDim, outDim)).map(() => rand());
    const x = new Float32Array(batch * inDim).map(() => 2 * rand());
    const labels = new Uint32Array([0, 1, 2, 3, 1, 2]);
    const { update } = cpuSoftmaxStep(params, x, labels, batch, lr, inDim, outDim);
    const eps = 1e-2;
    for (let p = 0; p < params.length; p++) {
      const plus = Float32Array.from(params);
      const minus = Float32Array.from(params);
      plus[p] = (plus[p] ?? 0) + eps;
      minus[p] = (minus[p] ?? 0) - eps;
      const lPlus = cpuSoftmaxStep(plus, x, labels, batch, lr, inDim, outDim).loss;
      const lMinus = cpuSoftmaxStep(minus, x, labels, batch, lr, inDim, outDim).loss;
      const numeric = (lPlus - lMinus) / (2 * eps);
      expect(update[p], `param ${p}`).toBeCloseTo(-lr * numeric, 3);
    }
  });
});

describe("validateStepInputs", () => {
  const params = new Float32Array(softmaxParamCount(3, 2));
  const x = new Float32Array(6);
  const labels = new Uint32Array([0, 1]);

  it("accepts matching shapes", () => {
    expect(() => validateStepInputs(params, x, labels, 2, 0.1, 3, 2, 4)).not.toThrow();
  });

  it("names each mismatch", () => {
    expect(() => validateStepInputs(params, x, labels, 2, 0.1, 3, 2, 1)).toThrow(/exceeds the backend's maxBatch 1/);
    expect(() => validateStepInputs(params, x, labels, 0, 0.1, 3, 2)).toThrow(/batch must be an integer ≥ 1/);
    expect(() => validateStepInputs(params, x, labels, 2.5, 0.1, 3, 2)).toThrow(/batch/);
    expect(() => validateStepInputs(params, x, labels, 2, Number.NaN, 3, 2)).toThrow(/lr must be finite/);
    expect(() => validateStepInputs(params.subarray(1), x, labels, 2, 0.1, 3, 2)).toThrow(/params has 7 elements, expected 8/);
    expect(() => validateStepInputs(params, x.subarray(1), labels, 2, 0.1, 3, 2)).toThrow(/x has 5 elements, expected 6/);
    expect(() => validateStepInputs(params, x, labels.subarray(1), 2, 0.1, 3, 2)).toThrow(/labels has 1/);
    expect(() => validateStepInputs(params, x, new Uint32Array([0, 2]), 2, 0.1, 3, 2)).toThrow(/labels\[1\] = 2/);
  });
});
