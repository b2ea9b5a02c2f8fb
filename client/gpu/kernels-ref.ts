/**
 * TypeScript references for every kernel of the library (shaders/*.wgsl):
 * the test oracle the WGSL kernels and the CPU path are compared against.
 * Same inputs, outputs and row-major layouts as the kernels; sums are
 * accumulated in float64 and rounded to float32 once. Pure functions, no
 * DOM, no WebGPU: usable from Node tests.
 */

function check(name: string, a: ArrayLike<number>, n: number): void {
  if (a.length !== n) throw new Error(`${name} has ${a.length} elements, expected ${n}`);
}

/**
 * `C = alpha · op(A) · op(B)` where `op(A)` is `m × k` and `op(B)` is `k × n`.
 * `a` is stored `m × k` (or `k × m` when `transA`), `b` `k × n` (or `n × k`).
 */
export function refMatmul(
  a: Float32Array,
  b: Float32Array,
  m: number,
  n: number,
  k: number,
  transA = false,
  transB = false,
  alpha = 1,
): Float32Array {
  check("A", a, m * k);
  check("B", b, k * n);
  const c = new Float32Array(m * n);
  const acc = new Float64Array(n);
  for (let i = 0; i < m; i++) {
    acc.fill(0);
    for (let p = 0; p < k; p++) {
      const av = transA ? (a[p * m + i] ?? 0) : (a[i * k + p] ?? 0);
      if (av === 0) continue;
      if (transB) {
        for (let j = 0; j < n; j++) acc[j] = (acc[j] ?? 0) + av * (b[j * k + p] ?? 0);
      } else {
        const base = p * n;
        for (let j = 0; j < n; j++) acc[j] = (acc[j] ?? 0) + av * (b[base + j] ?? 0);
      }
    }
    for (let j = 0; j < n; j++) c[i * n + j] = alpha * (acc[j] ?? 0);
  }
  return c;
}

/** `Y = act(X + bias)` with `bias` (length `cols`) added to every row. */
export function refBiasAct(x: Float32Array, bias: Float32Array, rows: number, cols: number, relu: boolean): Float32Array {
  check("X", x, rows * cols);
  check("bias", bias, cols);
  const y = new Float32Array(rows * cols);
  for (let r = 0; r < rows; r++) {
    for (let j = 0; j < cols; j++) {
      const v = (x[r * cols + j] ?? 0) + (bias[j] ?? 0);
      y[r * cols + j] = relu ? Math.max(0, v) : v;
    }
  }
  return y;
}

/** `dX = dY ⊙ [Y > 0]`. */
export function refReluBackward(dy: Float32Array, y: Float32Array): Float32Array {
  check("Y", y, dy.length);
  const dx = new Float32Array(dy.length);
  for (let i = 0; i < dy.length; i++) dx[i] = (y[i] ?? 0) > 0 ? (dy[i] ?? 0) : 0;
  return dx;
}

/** Per row: `grad = scale · (softmax(z) − onehot)`, `loss = −log softmax(z)[label]`. */
export function refSoftmaxXent(
  logits: Float32Array,
  labels: Uint32Array,
  rows: number,
  cols: number,
  scale: number,
): { grad: Float32Array; loss: Float32Array } {
  check("logits", logits, rows * cols);
  check("labels", labels, rows);
  const grad = new Float32Array(rows * cols);
  const loss = new Float32Array(rows);
  const e = new Float64Array(cols);
  for (let r = 0; r < rows; r++) {
    const base = r * cols;
    const label = labels[r] ?? 0;
    if (label >= cols) throw new Error(`labels[${r}] = ${label} is outside [0, ${cols})`);
    let zMax = -Infinity;
    for (let j = 0; j < cols; j++) zMax = Math.max(zMax, logits[base + j] ?? 0);
    let total = 0;
    for (let j = 0; j < cols; j++) {
      e[j] = Math.exp((logits[base + j] ?? 0) - zMax);
      total += e[j] ?? 0;
    }
    for (let j = 0; j < cols; j++) grad[base + j] = scale * ((e[j] ?? 0) / total - (j === label ? 1 : 0));
    loss[r] = Math.log(total) - ((logits[base + label] ?? 0) - zMax);
  }
  return { grad, loss };
}

/** `grad = scale · (pred − target)`, `loss[r] = ½ Σ_j (pred − target)²`. */
export function refMseGrad(
  pred: Float32Array,
  target: Float32Array,
  rows: number,
  cols: number,
  scale: number,
): { grad: Float32Array; loss: Float32Array } {
  check("pred", pred, rows * cols);
  check("target", target, rows * cols);
  const grad = new Float32Array(rows * cols);
  const loss = new Float32Array(rows);
  for (let r = 0; r < rows; r++) {
    let s = 0;
    for (let j = 0; j < cols; j++) {
      const d = (pred[r * cols + j] ?? 0) - (target[r * cols + j] ?? 0);
      grad[r * cols + j] = scale * d;
      s += d * d;
    }
    loss[r] = 0.5 * s;
  }
  return { grad, loss };
}

/** `out[j] = scale · Σ_r M[r][j]`. */
export function refColSum(m: Float32Array, rows: number, cols: number, scale: number): Float32Array {
  check("M", m, rows * cols);
  const acc = new Float64Array(cols);
  for (let r = 0; r < rows; r++) for (let j = 0; j < cols; j++) acc[j] = (acc[j] ?? 0) + (m[r * cols + j] ?? 0);
  const out = new Float32Array(cols);
  for (let j = 0; j < cols; j++) out[j] = scale * (acc[j] ?? 0);
  return out;
}

/** Momentum: `v' = mu·v + g`, `delta = −lr·v'`. */
export function refMomentum(g: Float32Array, v: Float32Array, lr: number, mu: number): { delta: Float32Array; velocity: Float32Array } {
  check("velocity", v, g.length);
  const delta = new Float32Array(g.length);
  const velocity = new Float32Array(g.length);
  for (let i = 0; i < g.length; i++) {
    const vi = Math.fround(mu * (v[i] ?? 0) + (g[i] ?? 0));
    velocity[i] = vi;
    delta[i] = -lr * vi;
  }
  return { delta, velocity };
}

/**
 * Adam with bias correction: `m' = b1·m + (1−b1)·g`, `v' = b2·v + (1−b2)·g²`,
 * `delta = −lr·(m'/c1) / (√(v'/c2) + eps)` with `c1 = 1 − b1^step`, `c2 = 1 − b2^step`.
 */
export function refAdam(
  g: Float32Array,
  m: Float32Array,
  v: Float32Array,
  o: { lr: number; beta1: number; beta2: number; eps: number; step: number },
): { delta: Float32Array; m: Float32Array; v: Float32Array } {
  check("m", m, g.length);
  check("v", v, g.length);
  const c1 = 1 - Math.pow(o.beta1, o.step);
  const c2 = 1 - Math.pow(o.beta2, o.step);
  const delta = new Float32Array(g.length);
  const mOut = new Float32Array(g.length);
  const vOut = new Float32Array(g.length);
  for (let i = 0; i < g.length; i++) {
    const gi = g[i] ?? 0;
    const mi = Math.fround(o.beta1 * (m[i] ?? 0) + (1 - o.beta1) * gi);
    const vi = Math.fround(o.beta2 * (v[i] ?? 0) + (1 - o.beta2) * gi * gi);
    mOut[i] = mi;
    vOut[i] = vi;
    delta[i] = (-o.lr * (mi / c1)) / (Math.sqrt(vi / c2) + o.eps);
  }
  return { delta, m: mOut, v: vOut };
}
