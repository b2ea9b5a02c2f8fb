/**
 * The compute interface a job's gradient step is written against. Three
 * implementations exist: the WGSL kernel library on a WebGPU device
 * (gpu/wgsl-backend.ts), the CPU path on TF.js's WASM SIMD backend
 * (gpu/wasm-backend.ts) and the TypeScript reference (gpu/ref-backend.ts, the
 * test oracle, also used by Node tests).
 *
 * Programming model:
 * - A step opens a `Session`, uploads its inputs, chains ops on opaque
 *   row-major 2-D `Tensor` handles and ends with one `read(...)`, which
 *   returns host copies and releases every tensor of the session. A GPU
 *   session records every op into one command buffer and maps once.
 * - Ops validate shapes eagerly and throw an Error naming the mismatch.
 * - Sessions of one backend are serialized (they share pooled buffers).
 *
 * Nothing here imports the DOM or WebGPU, so jobs (which the Node coordinator
 * imports for their metric) may import these types.
 */

/** A row-major `rows × cols` matrix living in a backend. Opaque outside it. */
export interface Tensor {
  readonly rows: number;
  readonly cols: number;
  /** f32 values, or u32 class labels (only `softmaxXent` reads those). */
  readonly dtype: "f32" | "u32";
}

export interface MatmulOptions {
  /** Use `Aᵀ` instead of `A`. */
  readonly transA?: boolean;
  /** Use `Bᵀ` instead of `B`. */
  readonly transB?: boolean;
  /** `C = alpha · op(A) · op(B)`; default 1. */
  readonly alpha?: number;
}

export type Activation = "none" | "relu";

/** Heavy-ball momentum: `v' = mu·v + g`, `delta = −lr·v'`. */
export interface MomentumOptions {
  readonly lr: number;
  readonly mu: number;
}

/** Adam with bias correction at step `step` (≥ 1, the step being taken). */
export interface AdamOptions {
  readonly lr: number;
  readonly beta1: number;
  readonly beta2: number;
  readonly eps: number;
  readonly step: number;
}

/** Throws unless the optimizer's hyper-parameters are usable. */
export function checkAdam(o: AdamOptions): void {
  checkDim("adam step", o.step);
  if (!(o.beta1 >= 0 && o.beta1 < 1 && o.beta2 >= 0 && o.beta2 < 1)) throw new Error(`adam: betas must be in [0, 1), got ${o.beta1}, ${o.beta2}`);
  if (!(o.eps > 0) || !Number.isFinite(o.lr)) throw new Error(`adam: eps must be > 0 and lr finite, got ${o.eps}, ${o.lr}`);
}

/** The bias corrections `1 − β^t` of Adam's step `step`, in float64. */
export function adamCorrections(o: AdamOptions): { c1: number; c2: number } {
  return { c1: 1 - Math.pow(o.beta1, o.step), c2: 1 - Math.pow(o.beta2, o.step) };
}

/** The ops of the kernel library. Every result is a new tensor of the session. */
export interface Session {
  /** Copies `data` (`rows × cols`, row-major) into the backend. */
  upload(data: Float32Array, rows: number, cols: number): Tensor;
  /** Copies class labels (`rows` entries) into the backend, as a `rows × 1` u32 tensor. */
  uploadLabels(labels: Uint32Array): Tensor;
  /** `C = alpha · op(A) · op(B)`, `op(A)` is `M × K`, `op(B)` is `K × N`. */
  matmul(a: Tensor, b: Tensor, options?: MatmulOptions): Tensor;
  /** `Y = act(X + 1·bᵀ)`: `bias` is `1 × cols`, added to every row. */
  biasAct(x: Tensor, bias: Tensor, act: Activation): Tensor;
  /** `dX = dY ⊙ [Y > 0]`, the gradient through a ReLU whose output was `Y`. */
  reluBackward(dy: Tensor, y: Tensor): Tensor;
  /**
   * Fused softmax cross-entropy per row of `logits` (`rows × classes`):
   * `grad = scale · (softmax(z) − onehot(label))`, `loss[r] = −log softmax(z)[label]`
   * (`rows × 1`). Stable for any finite logits.
   */
  softmaxXent(logits: Tensor, labels: Tensor, scale: number): { grad: Tensor; loss: Tensor };
  /** Fused squared error: `grad = scale · (pred − target)`, `loss[r] = ½ Σ_j (pred − target)²` (`rows × 1`). */
  mseGrad(pred: Tensor, target: Tensor, scale: number): { grad: Tensor; loss: Tensor };
  /** `out = scale · Σ_rows M`, a `1 × cols` tensor. */
  colSum(m: Tensor, scale: number): Tensor;
  /**
   * One momentum update, elementwise (`grad` and `velocity` of one shape):
   * the delta to apply and the new velocity.
   */
  momentum(grad: Tensor, velocity: Tensor, o: MomentumOptions): { delta: Tensor; velocity: Tensor };
  /** One Adam update, elementwise (`grad`, `m`, `v` of one shape): the delta and the new moments. */
  adam(grad: Tensor, m: Tensor, v: Tensor, o: AdamOptions): { delta: Tensor; m: Tensor; v: Tensor };
  /** Runs everything recorded, returns host copies of `tensors` in order, and ends the session. */
  read(...tensors: Tensor[]): Promise<Float32Array[]>;
  /**
   * Like `read`, but copies `tensors[i]` into `into[i]` (which must hold exactly
   * `rows × cols` values) instead of new arrays: a step that reads into
   * buffers it keeps allocates nothing on the host. Ends the session.
   */
  readInto(tensors: readonly Tensor[], into: readonly Float32Array[]): Promise<void>;
}

/** Throws unless `into` pairs one destination of the right length with each tensor. */
export function checkReadInto(tensors: readonly Tensor[], into: readonly Float32Array[]): void {
  if (tensors.length !== into.length) throw new Error(`readInto: ${tensors.length} tensors but ${into.length} destinations`);
  tensors.forEach((t, i) => {
    const n = into[i]?.length;
    if (n !== t.rows * t.cols) throw new Error(`readInto: tensor ${i} is ${t.rows}×${t.cols} but its destination holds ${n} values`);
  });
}

export interface BackendInfo {
  readonly backend: "webgpu" | "cpu";
  /** Kernel variant, e.g. "wgsl-vec4", "wgsl-tiled", "wasm-xnnpack", "cpu-reference". */
  readonly kernel: string;
  /** Adapter description, e.g. "swiftshader"; "cpu" for CPU paths. */
  readonly adapter: string;
}

export interface ComputeBackend extends BackendInfo {
  /**
   * Most rows a single session should process; a job's step splits larger
   * minibatches into chunks of at most this many rows and averages their
   * gradients. Lowered after an out-of-memory error.
   */
  readonly maxRows: number;
  /** Runs `body` in a fresh session; serialized with other sessions of this backend. */
  session<T>(body: (s: Session) => Promise<T>): Promise<T>;
  /**
   * Halves `maxRows` after an out-of-memory error; returns false when it is
   * already 1 (nothing left to halve).
   */
  shrink(): boolean;
  dispose(): void;
}

/**
 * `inner` with `session` in place of its own (which `session` may call, e.g.
 * to add pressure, delay or faults around it); everything else is `inner`'s,
 * `maxRows` read live (a shrink shows).
 */
export function withSession(inner: ComputeBackend, session: <T>(body: (s: Session) => Promise<T>) => Promise<T>): ComputeBackend {
  return {
    backend: inner.backend,
    kernel: inner.kernel,
    adapter: inner.adapter,
    get maxRows() {
      return inner.maxRows;
    },
    shrink: () => inner.shrink(),
    dispose: () => inner.dispose(),
    session,
  };
}

/** What the worker gets from `job.step`. */
export interface StepResult {
  /** The delta the optimizer applies (e.g. `−lr · grad`), in the job's parameter layout. */
  readonly update: Float32Array;
  /** Mean training loss over the minibatch, before the step. */
  readonly loss: number;
}

/** Thrown by a backend when the device reports out-of-memory; the step retries with smaller chunks. */
export class OutOfMemoryError extends Error {
  override readonly name = "OutOfMemoryError";
}

/** Thrown by a GPU backend whose device was lost; the owner re-acquires and retries. */
export class DeviceLostError extends Error {
  override readonly name = "DeviceLostError";
}

/** Throws unless `value` is an integer ≥ `min`. */
export function checkDim(name: string, value: number, min = 1): void {
  if (!Number.isInteger(value) || value < min) throw new Error(`${name} must be an integer ≥ ${min}, got ${value}`);
}

/** The shape `C` of `alpha · op(A) · op(B)`, or an Error naming the mismatch. */
export function matmulShape(a: Tensor, b: Tensor, o: MatmulOptions = {}): { m: number; n: number; k: number } {
  if (a.dtype !== "f32" || b.dtype !== "f32") throw new Error("matmul takes f32 tensors");
  const m = o.transA === true ? a.cols : a.rows;
  const k = o.transA === true ? a.rows : a.cols;
  const kb = o.transB === true ? b.cols : b.rows;
  const n = o.transB === true ? b.rows : b.cols;
  if (k !== kb) {
    throw new Error(
      `matmul: op(A) is ${m}×${k} but op(B) is ${kb}×${n} (transA=${o.transA === true}, transB=${o.transB === true})`,
    );
  }
  return { m, n, k };
}

/** Throws unless `a` and `b` have the same shape. */
export function checkSameShape(op: string, a: Tensor, b: Tensor): void {
  if (a.rows !== b.rows || a.cols !== b.cols) {
    throw new Error(`${op}: shapes ${a.rows}×${a.cols} and ${b.rows}×${b.cols} differ`);
  }
}

/** Throws unless `bias` is `1 × x.cols`. */
export function checkBias(x: Tensor, bias: Tensor): void {
  if (bias.rows !== 1 || bias.cols !== x.cols) throw new Error(`biasAct: bias is ${bias.rows}×${bias.cols}, expected 1×${x.cols}`);
}

/** Throws unless `labels` is a `logits.rows × 1` u32 tensor. */
export function checkLabels(logits: Tensor, labels: Tensor): void {
  if (labels.dtype !== "u32" || labels.rows !== logits.rows || labels.cols !== 1) {
    throw new Error(`softmaxXent: labels must be ${logits.rows}×1 u32, got ${labels.rows}×${labels.cols} ${labels.dtype}`);
  }
}

/** @deprecated The softmax-only interface of the walking skeleton; every backend is a `ComputeBackend` now. */
export type SoftmaxBackend = ComputeBackend;

/**
 * Resolves after one macrotask (a MessageChannel round trip, not clamped like
 * nested timers). The worker's training loop awaits it after every step: CPU
 * backends settle in microtasks only, and a loop that never yields a
 * macrotask would starve the worker's messages and fetches (shard downloads,
 * peers' updates).
 */
export function yieldToEventLoop(): Promise<void> {
  return new Promise((resolve) => {
    const channel = new MessageChannel();
    channel.port1.onmessage = () => {
      channel.port1.close();
      resolve();
    };
    channel.port2.postMessage(null);
  });
}
