/**
 * The `ComputeBackend` on the TypeScript references (kernels-ref.ts): backend
 * "cpu", kernel "cpu-reference". The test oracle for whole steps (a job's
 * step on this backend is what the WGSL and WASM paths are compared with) and
 * the last-resort fallback. Eager: every op computes at once.
 */
import {
  checkAdam,
  checkBias,
  checkDim,
  checkLabels,
  checkReadInto,
  checkSameShape,
  matmulShape,
  type ComputeBackend,
  type Session,
  type Tensor,
} from "./backend.ts";
import { refAdam, refBiasAct, refColSum, refMatmul, refMomentum, refMseGrad, refReluBackward, refSoftmaxXent } from "./kernels-ref.ts";

interface RefTensor extends Tensor {
  readonly data: Float32Array | Uint32Array;
}

function make(data: Float32Array | Uint32Array, rows: number, cols: number): RefTensor {
  return { rows, cols, dtype: data instanceof Uint32Array ? "u32" : "f32", data };
}

function f32(t: Tensor): Float32Array {
  const d = (t as RefTensor).data;
  if (!(d instanceof Float32Array)) throw new Error("expected an f32 tensor of the reference backend");
  return d;
}

/** A fresh session of reference ops. */
export function refSession(): Session {
  let open = true;
  const alive = (): void => {
    if (!open) throw new Error("session already read");
  };
  return {
    upload(data, rows, cols) {
      alive();
      checkDim("rows", rows);
      checkDim("cols", cols);
      if (data.length !== rows * cols) throw new Error(`upload: ${data.length} values for ${rows}×${cols}`);
      return make(data.slice(), rows, cols);
    },
    uploadLabels(labels) {
      alive();
      checkDim("rows", labels.length);
      return make(labels.slice(), labels.length, 1);
    },
    matmul(a, b, o = {}) {
      alive();
      const { m, n, k } = matmulShape(a, b, o);
      return make(refMatmul(f32(a), f32(b), m, n, k, o.transA === true, o.transB === true, o.alpha ?? 1), m, n);
    },
    biasAct(x, bias, act) {
      alive();
      checkBias(x, bias);
      return make(refBiasAct(f32(x), f32(bias), x.rows, x.cols, act === "relu"), x.rows, x.cols);
    },
    reluBackward(dy, y) {
      alive();
      checkSameShape("reluBackward", dy, y);
      return make(refReluBackward(f32(dy), f32(y)), dy.rows, dy.cols);
    },
    softmaxXent(logits, labels, scale) {
      alive();
      checkLabels(logits, labels);
      const l = (labels as RefTensor).data;
      if (!(l instanceof Uint32Array)) throw new Error("labels must be u32");
      const r = refSoftmaxXent(f32(logits), l, logits.rows, logits.cols, scale);
      return { grad: make(r.grad, logits.rows, logits.cols), loss: make(r.loss, logits.rows, 1) };
    },
    mseGrad(pred, target, scale) {
      alive();
      checkSameShape("mseGrad", pred, target);
      const r = refMseGrad(f32(pred), f32(target), pred.rows, pred.cols, scale);
      return { grad: make(r.grad, pred.rows, pred.cols), loss: make(r.loss, pred.rows, 1) };
    },
    colSum(m, scale) {
      alive();
      return make(refColSum(f32(m), m.rows, m.cols, scale), 1, m.cols);
    },
    momentum(grad, velocity, o) {
      alive();
      checkSameShape("momentum", grad, velocity);
      const r = refMomentum(f32(grad), f32(velocity), o.lr, o.mu);
      return { delta: make(r.delta, grad.rows, grad.cols), velocity: make(r.velocity, grad.rows, grad.cols) };
    },
    adam(grad, m, v, o) {
      alive();
      checkSameShape("adam", grad, m);
      checkSameShape("adam", grad, v);
      checkAdam(o);
      const r = refAdam(f32(grad), f32(m), f32(v), o);
      return { delta: make(r.delta, grad.rows, grad.cols), m: make(r.m, grad.rows, grad.cols), v: make(r.v, grad.rows, grad.cols) };
    },
    read(...tensors) {
      alive();
      open = false;
      return Promise.resolve(tensors.map((t) => Float32Array.from((t as RefTensor).data)));
    },
    readInto(tensors, into) {
      alive();
      checkReadInto(tensors, into);
      open = false;
      tensors.forEach((t, i) => into[i]?.set((t as RefTensor).data));
      return Promise.resolve();
    },
  };
}

/** The reference backend; `maxRows` bounds a session's rows (default: no bound in practice). */
export function createRefBackend(maxRows = 1 << 20): ComputeBackend {
  let disposed = false;
  let rows = maxRows;
  return {
    backend: "cpu",
    kernel: "cpu-reference",
    adapter: "cpu",
    get maxRows() {
      return rows;
    },
    async session(body) {
      if (disposed) throw new Error("reference backend is disposed");
      return body(refSession());
    },
    shrink() {
      if (rows <= 1) return false;
      rows = Math.floor(rows / 2);
      return true;
    },
    dispose() {
      disposed = true;
    },
  };
}
