/**
 * Optimizers: turn a mean gradient into the delta the worker applies to its
 * replica and sends to its peers (so under momentum or Adam the update on the
 * wire is the optimizer's delta, not the raw gradient). State is per worker.
 * Elementwise over ~10⁵–10⁶ floats: a host loop costs well under a millisecond
 * per 10⁵, cheap next to the gradient.
 */

export interface OptimizerState {
  readonly slots: Float32Array[];
  step: number;
}

export interface Optimizer {
  readonly name: string;
  createState(parameters: number): OptimizerState;
  /** The delta for mean gradient `grad` at learning rate `lr`; advances `state`. */
  delta(grad: Float32Array, lr: number, state: OptimizerState): Float32Array;
}

/** Plain SGD: `Δ = −lr · g`. Stateless. */
export function sgd(): Optimizer {
  return {
    name: "sgd",
    createState: () => ({ slots: [], step: 0 }),
    delta(grad, lr, state) {
      state.step++;
      const out = new Float32Array(grad.length);
      for (let i = 0; i < grad.length; i++) out[i] = -lr * (grad[i] ?? 0);
      return out;
    },
  };
}

/** Heavy-ball momentum: `v = μ·v + g`, `Δ = −lr · v`. */
export function momentum(mu = 0.9): Optimizer {
  return {
    name: `momentum(${mu})`,
    createState: (n) => ({ slots: [new Float32Array(n)], step: 0 }),
    delta(grad, lr, state) {
      const v = state.slots[0];
      if (v === undefined || v.length !== grad.length) throw new Error("momentum state does not match the gradient");
      state.step++;
      const out = new Float32Array(grad.length);
      for (let i = 0; i < grad.length; i++) {
        const vi = mu * (v[i] ?? 0) + (grad[i] ?? 0);
        v[i] = vi;
        out[i] = -lr * vi;
      }
      return out;
    },
  };
}

/** Adam (Kingma & Ba) with bias correction. */
export function adam(beta1 = 0.9, beta2 = 0.999, eps = 1e-8): Optimizer {
  return {
    name: "adam",
    createState: (n) => ({ slots: [new Float32Array(n), new Float32Array(n)], step: 0 }),
    delta(grad, lr, state) {
      const [m, v] = state.slots;
      if (m === undefined || v === undefined || m.length !== grad.length) throw new Error("adam state does not match the gradient");
      state.step++;
      const c1 = 1 - Math.pow(beta1, state.step);
      const c2 = 1 - Math.pow(beta2, state.step);
      const out = new Float32Array(grad.length);
      for (let i = 0; i < grad.length; i++) {
        const g = grad[i] ?? 0;
        const mi = beta1 * (m[i] ?? 0) + (1 - beta1) * g;
        const vi = beta2 * (v[i] ?? 0) + (1 - beta2) * g * g;
        m[i] = mi;
        v[i] = vi;
        out[i] = (-lr * (mi / c1)) / (Math.sqrt(vi / c2) + eps);
      }
      return out;
    },
  };
}
