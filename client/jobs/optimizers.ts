/**
 * Optimizers: turn a mean gradient into the delta the worker applies to its
 * replica and sends to its peers (so under momentum or Adam the update on the
 * wire is the optimizer's delta, not the raw gradient). State is per worker.
 *
 * Two ways to take a step, with the same numbers:
 * - `apply(backend, …)`, what a job's step uses: momentum and Adam run as
 *   the kernel library's `momentum`/`adam` ops on the worker's backend (WGSL
 *   kernels on the GPU, TF.js WASM on the CPU path), one session per step.
 *   The state lives on the host between steps (it is uploaded with the
 *   gradient and read back with the delta), so a lost device, a rebuilt
 *   backend or an out-of-memory error loses none of it; an out-of-memory
 *   error in that session falls back to the host loop for the step.
 * - `delta(…)`, the host loop on the TypeScript references (gpu/kernels-ref.ts):
 *   the test oracle, and plain SGD's only path (`−lr·g` has no state; a
 *   session would only add a round trip).
 */
import { OutOfMemoryError, type ComputeBackend } from "../gpu/backend.ts";
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
}

function slotsOf(state: OptimizerState, count: number, n: number, name: string): Float32Array[] {
  const slots = state.slots.slice(0, count);
  if (slots.length !== count || slots.some((s) => s.length !== n)) throw new Error(`${name} state does not match the gradient`);
  return slots;
}

/** Runs `session` on the backend; on out-of-memory falls back to the host `delta`. */
async function onBackend(
  opt: Optimizer,
  backend: ComputeBackend,
  grad: Float32Array,
  lr: number,
  state: OptimizerState,
  session: () => Promise<Float32Array[]>,
): Promise<Float32Array> {
  let out: Float32Array[];
  try {
    out = await session();
  } catch (e) {
    if (e instanceof OutOfMemoryError) return opt.delta(grad, lr, state);
    throw e;
  }
  const [delta, ...slots] = out;
  if (delta === undefined || slots.length !== state.slots.length) throw new Error(`${opt.name}: the backend returned ${out.length} arrays`);
  slots.forEach((s, i) => state.slots[i]?.set(s));
  state.step++;
  return delta;
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
    apply(backend, grad, lr, state) {
      const [v] = slotsOf(state, 1, grad.length, opt.name);
      return onBackend(opt, backend, grad, lr, state, () =>
        backend.session((s) => {
          const r = s.momentum(s.upload(grad, 1, grad.length), s.upload(v!, 1, grad.length), { lr, mu });
          return s.read(r.delta, r.velocity);
        }),
      );
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
    apply(backend, grad, lr, state) {
      const [m, v] = slotsOf(state, 2, grad.length, opt.name);
      const n = grad.length;
      return onBackend(opt, backend, grad, lr, state, () =>
        backend.session((s) => {
          const r = s.adam(s.upload(grad, 1, n), s.upload(m!, 1, n), s.upload(v!, 1, n), hyper(lr, state));
          return s.read(r.delta, r.m, r.v);
        }),
      );
    },
  };
  return opt;
}

/** The optimizer a job option names, with default hyper-parameters. */
export function optimizerByName(name: OptimizerName): Optimizer {
  return name === "sgd" ? sgd() : name === "momentum" ? momentum(0.9) : adam();
}
