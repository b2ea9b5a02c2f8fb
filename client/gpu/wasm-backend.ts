/**
 * The CPU path: the kernel library's ops on TensorFlow.js's WASM backend
 * (XNNPACK SIMD matrix multiplies; threads only where the page is
 * cross-origin isolated and the threaded binary is served). Backend "cpu",
 * kernel "wasm-xnnpack".
 *
 * Contract:
 * - `createWasmBackend(paths)` initializes TF.js's "wasm" backend with the
 *   .wasm binaries at `paths` (URLs served from dist/ in the browser, file
 *   paths in Node) and rejects when WASM cannot start. The first start in a
 *   realm picks the build and thread count (gpu/wasm-threads.ts); later
 *   calls reuse it. A threaded start that fails (a thread's error, or no
 *   answer within its bound) falls back to the single-thread build and says
 *   so in `wasmStartInfo().note`; it never leaves the caller waiting.
 * - The backend's `adapter` says how many threads it runs with
 *   ("cpu, 2 wasm threads"): that is what the page and the status show.
 * - TF.js keeps one global engine: every session makes "wasm" the active
 *   backend before it runs, so other TF.js users of the same realm (the bench
 *   page) cannot pull it onto another backend.
 * - Every tf.Tensor a session creates is disposed when it reads (or throws).
 * - `Aᵀ·B` transposes A explicitly before the multiply: measured 3.6 ms
 *   against 25 ms for `matMul(a, b, true)` at 784×128·128×256 in TF.js 4.22.
 */
import * as tf from "@tensorflow/tfjs-core";
import { getThreadsCount, setThreadsCount, setWasmPaths } from "@tensorflow/tfjs-backend-wasm";
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
import { boundStart, planWasmThreads, THREADED_START_BOUND_MS, threadsLabel, type WasmThreadsPlan } from "./wasm-threads.ts";

/** Where the three TF.js WASM binaries are. */
export interface WasmPaths {
  readonly "tfjs-backend-wasm.wasm": string;
  readonly "tfjs-backend-wasm-simd.wasm": string;
  readonly "tfjs-backend-wasm-threaded-simd.wasm": string;
}

interface WasmTensor extends Tensor {
  readonly t: tf.Tensor;
}

/** How TF.js's WASM backend started in this realm. */
export interface WasmStartInfo {
  /** The build that runs: the threaded SIMD one or the single-thread SIMD (or plain) one. */
  readonly threaded: boolean;
  /** Threads XNNPACK runs with, as TF.js reports it (1 with the single-thread build). */
  readonly threads: number;
  /** What the thread rule decided and why (gpu/wasm-threads.ts). */
  readonly plan: WasmThreadsPlan;
  /** Set when the threaded build was wanted but did not start: why, and that the single-thread build runs. */
  readonly note: string | null;
  /** Milliseconds the start took (both attempts when it fell back). */
  readonly ms: number;
}

export interface WasmStartOptions {
  /** `?threads=N` (only heeded in a cross-origin isolated realm); null: the default rule. */
  readonly threads?: number | null;
  /** Bound on the threaded start, ms (default THREADED_START_BOUND_MS). */
  readonly boundMs?: number;
}

let ready: Promise<WasmStartInfo> | null = null;
let started: WasmStartInfo | null = null;

/** How the WASM backend started, once it has (null before). */
export function wasmStartInfo(): WasmStartInfo | null {
  return started;
}

const MULTITHREAD_FLAG = "WASM_HAS_MULTITHREAD_SUPPORT";

/** The realm's uncaught errors, as `boundStart` listens to them (none outside a browser realm). */
function realmErrors(): { add(f: (message: string) => void): () => void } | null {
  if (typeof globalThis.addEventListener !== "function") return null;
  return {
    add(f) {
      const on = (e: Event): void => {
        // Emscripten re-throws a pthread worker's ErrorEvent: its own message says what failed.
        const thrown: unknown = e instanceof ErrorEvent ? e.error : undefined;
        if (thrown instanceof ErrorEvent || thrown instanceof Error) f(thrown.message);
        else f(e instanceof ErrorEvent ? e.message || "error" : e.type);
      };
      globalThis.addEventListener("error", on);
      return () => globalThis.removeEventListener("error", on);
    },
  };
}

/**
 * Forget a threaded start that failed and make "wasm" start again with the
 * single-thread build: TF.js keeps the pending start (which may never settle)
 * and awaits it on every later `setBackend`, so the registration is replaced
 * and the engine's pending start dropped.
 */
function resetForSingleThread(): void {
  const factory = tf.findBackendFactory("wasm");
  if (factory === null) throw new Error("TF.js's wasm backend is not registered");
  tf.removeBackend("wasm");
  const engine = tf.engine() as unknown as { pendingBackendInit?: unknown; pendingBackendInitId?: unknown };
  if (engine.pendingBackendInit != null) {
    if (typeof engine.pendingBackendInitId !== "number") throw new Error("TF.js's engine is not as expected: cannot drop the failed start");
    engine.pendingBackendInitId++;
    engine.pendingBackendInit = null;
  }
  tf.env().set(MULTITHREAD_FLAG, false);
  // The package registers itself with priority 2 (its base.ts).
  tf.registerBackend("wasm", factory, 2);
}

/**
 * TF.js 4.22's WASM module caps XNNPACK's threads at
 * `hardwareConcurrency / 2` (it counts two hyper-threads per core), reading
 * the count once as the module starts; `setThreadsCount` cannot go past it
 * (one thread on a 2-core machine). For `threads` above that cap the realm's
 * navigator shows `2 × threads` until the start settles; the returned
 * function puts the real value back. Only this realm (the trainer worker, a
 * probe worker) sees it, and only during the start.
 */
function liftThreadCap(threads: number): () => void {
  const nav = (globalThis as { navigator?: Navigator }).navigator;
  if (nav === undefined || Math.floor((nav.hardwareConcurrency || 1) / 2) >= threads) return () => {};
  Object.defineProperty(nav, "hardwareConcurrency", { value: 2 * threads, configurable: true, enumerable: true });
  return () => {
    delete (nav as unknown as { hardwareConcurrency?: number }).hardwareConcurrency;
  };
}

async function startWasm(): Promise<void> {
  if (!(await tf.setBackend("wasm"))) throw new Error("TF.js could not start its WASM backend");
  await tf.ready();
}

/** Starts TF.js's WASM backend once per realm (see the file comment for the build and threads). */
export function initTfWasm(paths: WasmPaths | string, options: WasmStartOptions = {}): Promise<WasmStartInfo> {
  ready ??= (async () => {
    const t0 = performance.now();
    setWasmPaths(typeof paths === "string" ? paths : { ...paths });
    // The wasm backend registers itself (and its flags) when its module is imported.
    await import("@tensorflow/tfjs-backend-wasm");
    const plan = planWasmThreads({
      isolated: (globalThis as { crossOriginIsolated?: boolean }).crossOriginIsolated === true,
      threadsSupported: (await tf.env().getAsync(MULTITHREAD_FLAG)) === true,
      cores: typeof navigator === "undefined" ? undefined : navigator.hardwareConcurrency,
      requested: options.threads ?? null,
    });
    let note: string | null = null;
    if (plan.threaded) {
      setThreadsCount(plan.threads);
      const restore = liftThreadCap(plan.threads);
      try {
        await boundStart(startWasm(), options.boundMs ?? THREADED_START_BOUND_MS, realmErrors());
      } catch (e) {
        note = `WASM threads did not start (${e instanceof Error ? e.message : String(e)}); the CPU path runs on one thread`;
        resetForSingleThread();
        await startWasm();
      } finally {
        restore();
      }
    } else {
      // Also where threads exist but the rule says one: the single-thread build.
      tf.env().set(MULTITHREAD_FLAG, false);
      await startWasm();
    }
    const threaded = note === null && plan.threaded;
    started = { threaded, threads: threaded ? getThreadsCount() : 1, plan, note, ms: performance.now() - t0 };
    return started;
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
          const view = heap.f32();
          // The threaded build refreshes its heap views lazily after the
          // memory grows: a view too short for the tensor reads through data().
          if (at + dst.length <= view.length) dst.set(view.subarray(at, at + dst.length));
          else dst.set(await t.data());
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
export async function createWasmBackend(paths: WasmPaths | string, maxRows = 4096, options: WasmStartOptions = {}): Promise<ComputeBackend> {
  const info = await initTfWasm(paths, options);
  let rows = maxRows;
  let disposed = false;
  let tail: Promise<unknown> = Promise.resolve();
  return {
    backend: "cpu",
    kernel: "wasm-xnnpack",
    adapter: `cpu, ${threadsLabel(info.threads)}`,
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
