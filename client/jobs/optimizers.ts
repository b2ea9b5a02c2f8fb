/**
 * Optimizers: turn a mean gradient into the delta the worker applies to its
 * replica and sends to its peers (so under momentum or Adam the update on the
 * wire is the optimizer's delta, not the raw gradient). State is per worker.
 *
 * Three ways to take a step, with the same numbers:
 * - `ops(s, …)`, what a job's step uses when the batch fits in one session:
 *   momentum and Adam as the kernel library's `momentum`/`adam` ops recorded
 *   in the gradient's own session (WGSL kernels on the GPU, TF.js WASM on the
 *   CPU path), on one block of the gradient and the matching slices of the
 *   state; the step reads the delta and the new state straight into its
 *   buffers. The state lives on the host between steps (uploaded with the
 *   parameters, read back with the delta), so a lost device, a rebuilt
 *   backend or an out-of-memory error loses none of it.
 * - `apply(backend, …)`: the same ops in a session of their own, on a mean
 *   gradient already on the host (a batch split into chunks); an
 *   out-of-memory error in that session falls back to the host loop.
 * - `delta(…)`, the host loop on the TypeScript references (gpu/kernels-ref.ts):
 *   the test oracle, and plain SGD's only path (`−lr·g` has no state; a
 *   session would only add a round trip).
 */
import { OutOfMemoryError, type ComputeBackend, type Session, type Tensor } from "../gpu/backend.ts";
import { refAdam, refMomentum } from "../gpu/kernels-ref.ts";

export interface OptimizerState {
  readonly slots: Float32Array[];
  step: number;
}

export const OPTIMIZER_NAMES = ["sgd", "momentum", "adam"] as const;
export type OptimizerName = (typeof OPTIMIZER_NAMES)[number];

export interface Optimizer {
  /** "sgd", "momentum" or "adam" (the job option's value). */
  readonly kind: OptimizerName;
  /** With hyper-parameters, e.g. "momentum(0.9)". */
  readonly name: string;
  createState(parameters: number): OptimizerState;
  /** The delta for mean gradient `grad` at learning rate `lr`, on the host; advances `state`. */
  delta(grad: Float32Array, lr: number, state: OptimizerState): Float32Array;
  /** The same delta computed by `backend`'s kernels; advances `state`. */
  apply(backend: ComputeBackend, grad: Float32Array, lr: number, state: OptimizerState): Promise<Float32Array>;
  /**
   * The update as ops of session `s` for one block `grad` of the gradient:
   * `slots` are the matching slices of the state's slots (uploaded here),
   * `step` the step being taken (≥ 1). Returns the delta and the new value of
   * each slot, unread; the caller reads them and advances `state.step`.
   * Absent for stateless SGD (its step stays on the host).
   */
  readonly ops?: (s: Session, grad: Tensor, slots: readonly Float32Array[], lr: number, step: number) => { delta: Tensor; slots: Tensor[] };
}

function slotsOf(state: OptimizerState, count: number, n: number, name: string): Float32Array[] {
  const slots = state.slots.slice(0, count);
  if (slots.length !== count || slots.some((s) => s.length !== n)) throw new Error(`${name} state does not match the gradient`);
  return slots;
}

/**
 * `opt.ops` in a session of its own on host gradient `grad`, reading into a
 * new delta and the state; on out-of-memory falls back to the host `delta`.
 */
async function onBackend(opt: Optimizer, backend: ComputeBackend, grad: Float32Array, lr: number, state: OptimizerState): Promise<Float32Array> {
  const ops = opt.ops;
  if (ops === undefined) return opt.delta(grad, lr, state);
  const n = grad.length;
  const slots = slotsOf(state, state.slots.length, n, opt.name);
  const delta = new Float32Array(n);
  try {
    await backend.session((s) => {
      const r = ops(s, s.upload(grad, 1, n), slots, lr, state.step + 1);
      return s.readInto([r.delta, ...r.slots], [delta, ...slots]);
    });
  } catch (e) {
    if (e instanceof OutOfMemoryError) return opt.delta(grad, lr, state);
    throw e;
  }
  state.step++;
  return delta;
}

/** Uploads the state slices `slots` as tensors shaped like `grad`. */
function uploadSlots(s: Session, grad: Tensor, slots: readonly Float32Array[], count: number, name: string): Tensor[] {
  if (slots.length !== count || slots.some((x) => x.length !== grad.rows * grad.cols)) throw new Error(`${name} state does not match the gradient`);
  return slots.map((x) => s.upload(x, grad.rows, grad.cols));
}

/** Plain SGD: `Δ = −lr · g`. Stateless, on the host. */
export function sgd(): Optimizer {
  const opt: Optimizer = {
    kind: "sgd",
    name: "sgd",
    createState: () => ({ slots: [], step: 0 }),
    delta(grad, lr, state) {
      state.step++;
      const out = new Float32Array(grad.length);
      for (let i = 0; i < grad.length; i++) out[i] = -lr * (grad[i] ?? 0);
      return out;
    },
    apply: (_backend, grad, lr, state) => Promise.resolve(opt.delta(grad, lr, state)),
  };
  return opt;
}

/** Heavy-ball momentum: `v = μ·v + g`, `Δ = −lr · v`. */
export function momentum(mu = 0.9): Optimizer {
  const opt: Optimizer = {
    kind: "momentum",
    name: `momentum(${mu})`,
    createState: (n) => ({ slots: [new Float32Array(n)], step: 0 }),
    delta(grad, lr, state) {
      const [v] = slotsOf(state, 1, grad.length, opt.name);
      const r = refMomentum(grad, v!, lr, mu);
      v!.set(r.velocity);
      state.step++;
      return r.delta;
    },
    apply: (backend, grad, lr, state) => onBackend(opt, backend, grad, lr, state),
    ops(s, grad, slots, lr) {
      const [v] = uploadSlots(s, grad, slots, 1, opt.name);
      const r = s.momentum(grad, v!, { lr, mu });
      return { delta: r.delta, slots: [r.velocity] };
    },
  };
  return opt;
}

/** Adam (Kingma & Ba) with bias correction. */
export function adam(beta1 = 0.9, beta2 = 0.999, eps = 1e-8): Optimizer {
  const hyper = (lr: number, state: OptimizerState) => ({ lr, beta1, beta2, eps, step: state.step + 1 });
  const opt: Optimizer = {
    kind: "adam",
    name: "adam",
    createState: (n) => ({ slots: [new Float32Array(n), new Float32Array(n)], step: 0 }),
    delta(grad, lr, state) {
      const [m, v] = slotsOf(state, 2, grad.length, opt.name);
      const r = refAdam(grad, m!, v!, hyper(lr, state));
      m!.set(r.m);
      v!.set(r.v);
      state.step++;
      return r.delta;
    },
    apply: (backend, grad, lr, state) => onBackend(opt, backend, grad, lr, state),
    ops(s, grad, slots, lr, step) {
      const [m, v] = uploadSlots(s, grad, slots, 2, opt.name);
      const r = s.adam(grad, m!, v!, { lr, beta1, beta2, eps, step });
      return { delta: r.delta, slots: [r.m, r.v] };
    },
  };
  return opt;
}

/**
 * How a worker's learning rate follows K, the number of active workers in its
 * view (the job option `lrScaling`, flag `--lr-scaling`). Every replica adds up
 * the K updates of a clock, each computed at about the same parameters, so a
 * clock moves the model like one step of K times the minibatch at K times the
 * learning rate. "sum" (the default) keeps each worker's rate, i.e. that K×
 * step; "sqrt" scales it by 1/√K; "mean" by 1/K, i.e. the clock is one step of
 * the K·batch mean gradient at the job's rate. A rate tuned for one worker near
 * its stability limit makes the summed K× step overshoot and the test metric
 * swing from clock to clock (docs/harness.md, distributed against one page).
 */
export const LR_SCALINGS = ["sum", "sqrt", "mean"] as const;
export type LrScaling = (typeof LR_SCALINGS)[number];

/** The factor on the learning rate under `rule` with `workers` active workers (fewer than one counts as one). */
export function lrScale(rule: LrScaling, workers: number): number {
  const k = Number.isFinite(workers) ? Math.max(1, Math.floor(workers)) : 1;
  return rule === "sum" ? 1 : rule === "sqrt" ? 1 / Math.sqrt(k) : 1 / k;
}

/** The optimizer a job option names, with default hyper-parameters. */
export function optimizerByName(name: OptimizerName): Optimizer {
  return name === "sgd" ? sgd() : name === "momentum" ? momentum(0.9) : adam();
}
