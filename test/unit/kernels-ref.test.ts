import { describe, expect, it } from "vitest";
import { matmulShape, OutOfMemoryError, withSession, type ComputeBackend, type Tensor } from "../../client/gpu/backend.ts";
import { refColSum, refMatmul, refMseGrad, refSoftmaxXent } from "../../client/gpu/kernels-ref.ts";
import { matmulUniform, rowChunks } from "../../client/gpu/kernels.ts";
import { createRefBackend } from "../../client/gpu/ref-backend.ts";
import { adam, momentum, sgd } from "../../client/gpu/../jobs/optimizers.ts";
import { JOBS } from "../../client/jobs/registry.ts";

describe("refMatmul", () => {
  // A = [[1, 2, 3], [4, 5, 6]] (2×3), B = [[1, 0], [0, 1], [1, 1]] (3×2): A·B = [[4, 5], [10, 11]]
  const a = new Float32Array([1, 2, 3, 4, 5, 6]);
  const b = new Float32Array([1, 0, 0, 1, 1, 1]);
  it("computes A·B by hand", () => {
    expect(Array.from(refMatmul(a, b, 2, 2, 3))).toEqual([4, 5, 10, 11]);
  });
  it("reads transposed operands and scales by alpha", () => {
    const at = new Float32Array([1, 4, 2, 5, 3, 6]); // Aᵀ stored 3×2
    const bt = new Float32Array([1, 0, 1, 0, 1, 1]); // Bᵀ stored 2×3
    expect(Array.from(refMatmul(at, b, 2, 2, 3, true, false))).toEqual([4, 5, 10, 11]);
    expect(Array.from(refMatmul(a, bt, 2, 2, 3, false, true))).toEqual([4, 5, 10, 11]);
    expect(Array.from(refMatmul(at, bt, 2, 2, 3, true, true, -2))).toEqual([-8, -10, -20, -22]);
  });
  it("rejects wrong lengths, and matmulShape names mismatches", () => {
    expect(() => refMatmul(a, b, 2, 2, 2)).toThrow(/A has 6 elements, expected 4/);
    const t = (rows: number, cols: number): Tensor => ({ rows, cols, dtype: "f32" });
    expect(matmulShape(t(2, 3), t(3, 5))).toEqual({ m: 2, n: 5, k: 3 });
    expect(matmulShape(t(3, 2), t(3, 5), { transA: true })).toEqual({ m: 2, n: 5, k: 3 });
    expect(matmulShape(t(2, 3), t(5, 3), { transB: true })).toEqual({ m: 2, n: 5, k: 3 });
    expect(() => matmulShape(t(2, 3), t(4, 5))).toThrow(/op\(A\) is 2×3 but op\(B\) is 4×5/);
  });
});

describe("fused row kernels", () => {
  it("softmaxXent is stable for huge logits and scales the gradient", () => {
    const { grad, loss } = refSoftmaxXent(new Float32Array([1000, 1000, -1000, 0]), new Uint32Array([0, 0]), 2, 2, 0.5);
    expect(loss[0]).toBeCloseTo(Math.LN2, 6);
    expect(grad[0]).toBeCloseTo(-0.25, 6);
    expect(grad[1]).toBeCloseTo(0.25, 6);
    expect(loss[1]).toBeCloseTo(1000, 3);
  });
  it("mseGrad and colSum", () => {
    const r = refMseGrad(new Float32Array([1, 2, 3, 4]), new Float32Array([0, 0, 3, 2]), 2, 2, 0.5);
    expect(Array.from(r.grad)).toEqual([0.5, 1, 0, 1]);
    expect(Array.from(r.loss)).toEqual([2.5, 2]);
    expect(Array.from(refColSum(new Float32Array([1, 2, 3, 4, 5, 6]), 3, 2, 2))).toEqual([18, 24]);
  });
});

describe("dispatch planning", () => {
  it("rowChunks covers every row once, in tile multiples, within the FLOP budget", () => {
    for (const [rows, n, k, tile, max] of [[1, 1, 1, 16, 1e6], [1024, 1024, 1024, 32, 5e7], [1000, 7, 3, 16, 100], [255, 257, 19, 32, 1e5]] as const) {
      const chunks = rowChunks(rows, n, k, tile, max);
      let next = 0;
      for (const c of chunks) {
        expect(c.start).toBe(next);
        next += c.rows;
        if (c !== chunks.at(-1)) expect(c.rows % tile).toBe(0);
        if (c.rows > tile) expect(2 * c.rows * n * k).toBeLessThanOrEqual(max);
      }
      expect(next).toBe(rows);
    }
    expect(rowChunks(1024, 1024, 1024, 32, 5e7)).toHaveLength(32); // one 32-row tile (67 MFLOP) is the floor
  });
  it("matmulUniform encodes transposes as strides", () => {
    const words = (b: ArrayBuffer): number[] => Array.from(new Uint32Array(b));
    expect(words(matmulUniform({ M: 2, N: 5, K: 3, rowStart: 0, rows: 2, alpha: 1, transA: false, transB: false })).slice(6, 10)).toEqual([3, 1, 5, 1]);
    expect(words(matmulUniform({ M: 2, N: 5, K: 3, rowStart: 0, rows: 2, alpha: 1, transA: true, transB: true })).slice(6, 10)).toEqual([1, 2, 1, 3]);
  });
});

describe("optimizers", () => {
  const g = new Float32Array([1, -2]);
  it("sgd is −lr·g", () => {
    expect(Array.from(sgd().delta(g, 0.5, sgd().createState(2)))).toEqual([-0.5, 1]);
  });
  it("momentum accumulates v = μv + g", () => {
    const m = momentum(0.5);
    const st = m.createState(2);
    m.delta(g, 1, st);
    expect(Array.from(m.delta(g, 1, st))).toEqual([-1.5, 3]);
  });
  it("adam's first step is −lr·sign(g)", () => {
    const a = adam();
    const d = a.delta(g, 0.1, a.createState(2));
    expect(d[0]).toBeCloseTo(-0.1, 5);
    expect(d[1]).toBeCloseTo(0.1, 5);
  });
});

/** A float64 MLP loss, written independently of the kernel library: the finite-difference oracle. */
function mlpLoss64(p: Float32Array, x: Float32Array, labels: Uint32Array, rows: number): number {
  const IN = 784, H = 256, O = 10, B1 = IN * H, W2 = B1 + H, B2 = W2 + H * O;
  let total = 0;
  for (let r = 0; r < rows; r++) {
    const h = new Float64Array(H);
    for (let j = 0; j < H; j++) {
      let s = p[B1 + j]!;
      for (let i = 0; i < IN; i++) s += x[r * IN + i]! * p[i * H + j]!;
      h[j] = Math.max(0, s);
    }
    const z = new Float64Array(O);
    for (let k = 0; k < O; k++) {
      let s = p[B2 + k]!;
      for (let j = 0; j < H; j++) s += h[j]! * p[W2 + j * O + k]!;
      z[k] = s;
    }
    const m = Math.max(...z);
    const lse = m + Math.log(z.reduce((a, v) => a + Math.exp(v - m), 0));
    total += lse - z[labels[r]!]!;
  }
  return total / rows;
}

describe("mnist-mlp gradient", () => {
  const job = JOBS["mnist-mlp"]!;
  const rows = 6;
  let s = 7;
  const rnd = (): number => ((s = (s * 1103515245 + 12345) >>> 0) / 2 ** 32);
  const x = Float32Array.from({ length: rows * 784 }, () => (rnd() < 0.3 ? rnd() : 0));
  const labels = Uint32Array.from({ length: rows }, () => Math.floor(rnd() * 10));
  const params = job.init(3);
  for (let i = 0; i < params.length; i++) params[i] = params[i]! + 0.02 * (rnd() - 0.5);
  const batch = { x, labels, size: rows };

  it("matches central finite differences of an independent float64 loss", async () => {
    const { grad, loss } = await job.meanGradient(createRefBackend(), params, batch);
    expect(loss).toBeCloseTo(mlpLoss64(params, x, labels, rows), 5);
    // Coordinates in every block: W1 (rows with nonzero pixels), b1, W2, b2.
    const nonzero = [...Array(784).keys()].filter((i) => x[i]! !== 0);
    const coords = [
      ...nonzero.slice(0, 4).map((i) => i * 256 + (i % 256)),
      784 * 256 + 3, 784 * 256 + 100,
      784 * 256 + 256 + 5, 784 * 256 + 256 + 2000,
      784 * 256 + 256 + 2560 + 1, 784 * 256 + 256 + 2560 + 9,
    ];
    const eps = 1e-3;
    for (const c of coords) {
      const plus = params.slice();
      const minus = params.slice();
      plus[c] = plus[c]! + eps;
      minus[c] = minus[c]! - eps;
      // Perturb by what float32 actually stored.
      const h = (plus[c]! - minus[c]!) / 2;
      const fd = (mlpLoss64(plus, x, labels, rows) - mlpLoss64(minus, x, labels, rows)) / (2 * h);
      expect(Math.abs(grad[c]! - fd), `coordinate ${c}: ${grad[c]} vs ${fd}`).toBeLessThan(1e-4 + 1e-3 * Math.abs(fd));
    }
  });

  it("does not depend on how the batch is split into sessions", async () => {
    const whole = await job.meanGradient(createRefBackend(), params, batch);
    const split = await job.meanGradient(createRefBackend(4), params, batch);
    let diff = 0;
    for (let i = 0; i < whole.grad.length; i++) diff = Math.max(diff, Math.abs(whole.grad[i]! - split.grad[i]!));
    expect(diff).toBeLessThan(1e-6);
    expect(split.loss).toBeCloseTo(whole.loss, 6);
  });

  it("halves the rows per session after an out-of-memory error and still computes the same gradient", async () => {
    const inner = createRefBackend(8);
    let fails = 1;
    const seen: number[] = [];
    const flaky = withSession(inner, (body) => {
      seen.push(inner.maxRows);
      if (fails-- > 0) return Promise.reject(new OutOfMemoryError("simulated"));
      return inner.session(body);
    });
    const g = await job.meanGradient(flaky, params, batch);
    expect(seen[0]).toBe(8);
    expect(seen[1]).toBe(4);
    const want = await job.meanGradient(createRefBackend(), params, batch);
    expect(g.loss).toBeCloseTo(want.loss, 6);
  });

  it("keeps optimizer state per backend: the second momentum step differs from plain SGD", async () => {
    const b = createRefBackend();
    const first = await job.step(b, params, batch, 0.1);
    const second = await job.step(b, params, batch, 0.1);
    // Same gradient twice: v₂ = 1.9·g, so Δ₂ = 1.9·Δ₁.
    expect(second.update[784 * 256 + 3]!).toBeCloseTo(1.9 * first.update[784 * 256 + 3]!, 6);
    const fresh = await job.step(createRefBackend(), params, batch, 0.1);
    expect(fresh.update[784 * 256 + 3]!).toBeCloseTo(first.update[784 * 256 + 3]!, 7);
  });
});

describe("jobs", () => {
  it("init is a pure function of the seed and has the declared size", () => {
    for (const job of Object.values(JOBS)) {
      const a = job.init(5);
      expect(a.length).toBe(job.parameters);
      expect(Array.from(job.init(5))).toEqual(Array.from(a));
    }
    expect(JOBS["mnist-mlp"]!.parameters).toBe(203_530);
  });

  it("linreg learns its synthetic teacher on the reference backend", async () => {
    const job = JOBS["linreg"]!;
    const backend = createRefBackend();
    let s = 11;
    const rnd = (): number => ((s = (s * 1103515245 + 12345) >>> 0) / 2 ** 32);
    const pixels = Uint8Array.from({ length: 200 * 784 }, () => (rnd() < 0.2 ? Math.floor(rnd() * 256) : 0));
    const x = Float32Array.from(pixels, (v) => v / 255);
    const params = job.init(0);
    const before = job.evaluate(params, pixels, new Uint8Array(200), 200).value;
    for (let step = 0; step < 150; step++) {
      const from = (step % 4) * 50;
      const batch = { x: x.subarray(from * 784, (from + 50) * 784), labels: new Uint32Array(50), size: 50 };
      const { update } = await job.step(backend, params, batch, 0.05);
      for (let i = 0; i < params.length; i++) params[i] = params[i]! + update[i]!;
    }
    const after = job.evaluate(params, pixels, new Uint8Array(200), 200);
    expect(after.name).toBe("r2");
    expect(before).toBeLessThan(0.5);
    expect(after.value).toBeGreaterThan(0.9);
  });
});
