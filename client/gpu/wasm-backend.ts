/**
 * The CPU path: the kernel library's ops on TensorFlow.js's WASM backend
 * (XNNPACK SIMD matrix multiplies; threads only where the page is
 * cross-origin isolated and the threaded binary is served). Backend "cpu",
 * kernel "wasm-xnnpack".
 *
 * Contract:
 * - `createWasmBackend(paths)` initializes TF.js's "wasm" backend with the
 *   .wasm binaries at `paths` (URLs served from dist/ in the browser, file
 *   paths in Node) and rejects when WASM cannot start.
 * - TF.js keeps one global engine: every session makes "wasm" the active
 *   backend before it runs, so other TF.js users of the same realm (the bench
 *   page) cannot pull it onto another backend.
 * - Every tf.Tensor a session creates is disposed when it reads (or throws).
 * - `Aᵀ·B` transposes A explicitly before the multiply: measured 3.6 ms
 *   against 25 ms for `matMul(a, b, true)` at 784×128·128×256 in TF.js 4.22.
 */
import * as tf from "@tensorflow/tfjs-core";
import { setWasmPaths } from "@tensorflow/tfjs-backend-wasm";
import {
  adamCorrections,
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

/** Where the three TF.js WASM binaries are. */
export interface WasmPaths {
  readonly "tfjs-backend-wasm.wasm": string;
  readonly "tfjs-backend-wasm-simd.wasm": string;
  readonly "tfjs-backend-wasm-threaded-simd.wasm": string;
}

interface WasmTensor extends Tensor {
  readonly t: tf.Tensor;
}

let ready: Promise<void> | null = null;

/** Starts TF.js's WASM backend once per realm. */
export function initTfWasm(paths: WasmPaths | string): Promise<void> {
  ready ??= (async () => {
    setWasmPaths(typeof paths === "string" ? paths : { ...paths });
    // The wasm backend registers itself when its module is imported.
    await import("@tensorflow/tfjs-backend-wasm");
    if (!(await tf.setBackend("wasm"))) throw new Error("TF.js could not start its WASM backend");
    await tf.ready();
  })();
  ready.catch(() => {
    ready = null;
  });
  return ready;
}

/** The parts of TF.js's WASM backend object that `readInto` uses (not in its typings). */
interface WasmHeap {
  offset(dataId: object): number;
  f32(): Float32Array;
}

/**
 * Direct access to the active WASM backend's heap, or null when the backend
 * object does not look as expected (then `readInto` goes through `data()`).
 * The heap view is fetched per read: growing the memory replaces it.
 */
function wasmHeap(): WasmHeap | null {
  const b = tf.backend() as unknown as { getMemoryOffset?: unknown; wasm?: { HEAPF32?: unknown } };
  if (typeof b.getMemoryOffset !== "function" || !(b.wasm?.HEAPF32 instanceof Float32Array)) return null;
  const backend = b as { getMemoryOffset(id: object): number; wasm: { HEAPF32: Float32Array } };
  return { offset: (id) => backend.getMemoryOffset(id), f32: () => backend.wasm.HEAPF32 };
}

function session(): Session {
  const owned: tf.Tensor[] = [];
  let open = true;
  const wrap = (t: tf.Tensor, rows: number, cols: number, dtype: "f32" | "u32" = "f32"): WasmTensor => {
    owned.push(t);
    return { rows, cols, dtype, t };
  };
  const alive = (): void => {
    if (!open) throw new Error("session already read");
  };
  const raw = (x: Tensor): tf.Tensor => (x as WasmTensor).t;
  async function readInto(tensors: readonly Tensor[], into: readonly Float32Array[]): Promise<void> {
    alive();
    checkReadInto(tensors, into);
    open = false;
    try {
      const heap = wasmHeap();
      for (let i = 0; i < tensors.length; i++) {
        const t = raw(tensors[i]!);
        const dst = into[i]!;
        if (heap !== null && t.dtype === "float32") {
          // Straight out of the WASM heap: `data()` would slice a fresh
          // ArrayBuffer per tensor, and touching fresh pages is what a
          // step's time went to (3–6 ms per 800 KB on the test machine).
          const at = heap.offset(t.dataId) / 4;
          dst.set(heap.f32().subarray(at, at + dst.length));
        } else {
          dst.set(await t.data());
        }
      }
    } finally {
      for (const t of owned) t.dispose();
    }
  }
  return {
    upload(data, rows, cols) {
      alive();
      checkDim("rows", rows);
      checkDim("cols", cols);
      if (data.length !== rows * cols) throw new Error(`upload: ${data.length} values for ${rows}×${cols}`);
      return wrap(tf.tensor2d(data, [rows, cols], "float32"), rows, cols);
    },
    uploadLabels(labels) {
      alive();
      checkDim("rows", labels.length);
      return wrap(tf.tensor1d(Int32Array.from(labels), "int32"), labels.length, 1, "u32");
    },
    matmul(a, b, o = {}) {
      alive();
      const { m, n } = matmulShape(a, b, o);
      const alpha = o.alpha ?? 1;
      const c = tf.tidy(() => {
        const left = o.transA === true ? tf.transpose(raw(a)) : raw(a);
        const prod = tf.matMul(left as tf.Tensor2D, raw(b) as tf.Tensor2D, false, o.transB === true);
        return alpha === 1 ? prod : tf.mul(prod, alpha);
      });
      return wrap(c, m, n);
    },
    biasAct(x, bias, act) {
      alive();
      checkBias(x, bias);
      const y = tf.tidy(() => {
        const s = tf.add(raw(x), raw(bias));
        return act === "relu" ? tf.relu(s) : s;
      });
      return wrap(y, x.rows, x.cols);
    },
    reluBackward(dy, y) {
      alive();
      checkSameShape("reluBackward", dy, y);
      return wrap(tf.tidy(() => tf.mul(raw(dy), tf.step(raw(y), 0))), dy.rows, dy.cols);
    },
    softmaxXent(logits, labels, scale) {
      alive();
      checkLabels(logits, labels);
      const [grad, loss] = tf.tidy(() => {
        const z = raw(logits);
        const logp = tf.sub(z, tf.logSumExp(z, 1, true));
        // tf.oneHot needs depth ≥ 2; with one class every label is 0.
        const onehot = logits.cols === 1 ? tf.onesLike(z) : tf.cast(tf.oneHot(raw(labels) as tf.Tensor1D, logits.cols), "float32");
        const l = tf.reshape(tf.neg(tf.sum(tf.mul(logp, onehot), 1)), [logits.rows, 1]);
        const g = tf.mul(tf.sub(tf.exp(logp), onehot), scale);
        return [g, l];
      });
      return { grad: wrap(grad, logits.rows, logits.cols), loss: wrap(loss, logits.rows, 1) };
    },
    mseGrad(pred, target, scale) {
      alive();
      checkSameShape("mseGrad", pred, target);
      const [grad, loss] = tf.tidy(() => {
        const d = tf.sub(raw(pred), raw(target));
        return [tf.mul(d, scale), tf.mul(tf.sum(tf.square(d), 1, true), 0.5)];
      });
      return { grad: wrap(grad, pred.rows, pred.cols), loss: wrap(loss, pred.rows, 1) };
    },
    colSum(m, scale) {
      alive();
      return wrap(tf.tidy(() => tf.mul(tf.sum(raw(m), 0, true), scale)), 1, m.cols);
    },
    momentum(grad, velocity, o) {
      alive();
      checkSameShape("momentum", grad, velocity);
      const [d, v] = tf.tidy(() => {
        const vi = tf.add(tf.mul(raw(velocity), o.mu), raw(grad));
        return [tf.mul(vi, -o.lr), vi];
      });
      return { delta: wrap(d, grad.rows, grad.cols), velocity: wrap(v, grad.rows, grad.cols) };
    },
    adam(grad, m, v, o) {
      alive();
      checkSameShape("adam", grad, m);
      checkSameShape("adam", grad, v);
      checkAdam(o);
      const { c1, c2 } = adamCorrections(o);
      const [d, mo, vo] = tf.tidy(() => {
        const g = raw(grad);
        const mi = tf.add(tf.mul(raw(m), o.beta1), tf.mul(g, 1 - o.beta1));
        const vi = tf.add(tf.mul(raw(v), o.beta2), tf.mul(tf.square(g), 1 - o.beta2));
        const step = tf.div(tf.mul(mi, -o.lr / c1), tf.add(tf.sqrt(tf.div(vi, c2)), o.eps));
        return [step, mi, vi];
      });
      return { delta: wrap(d, grad.rows, grad.cols), m: wrap(mo, grad.rows, grad.cols), v: wrap(vo, grad.rows, grad.cols) };
    },
    async read(...tensors) {
      const out = tensors.map((t) => new Float32Array(t.rows * t.cols));
      await readInto(tensors, out);
      return out;
    },
    readInto,
  };
}

/**
 * The CPU path on TF.js WASM; `maxRows` bounds the rows of one session.
 * Rejects when the WASM backend cannot start.
 */
export async function createWasmBackend(paths: WasmPaths | string, maxRows = 4096): Promise<ComputeBackend> {
  await initTfWasm(paths);
  let rows = maxRows;
  let disposed = false;
  let tail: Promise<unknown> = Promise.resolve();
  return {
    backend: "cpu",
    kernel: "wasm-xnnpack",
    adapter: "cpu",
    get maxRows() {
      return rows;
    },
    session(body) {
      const run = tail.then(async () => {
        if (disposed) throw new Error("WASM backend is disposed");
        if (tf.getBackend() !== "wasm") await tf.setBackend("wasm");
        const s = session();
        try {
          return await body(s);
        } finally {
          // A body that threw before reading still frees its tensors.
          try {
            await s.read();
          } catch {
            /* already read */
          }
        }
      });
      tail = run.catch(() => undefined);
      return run;
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
