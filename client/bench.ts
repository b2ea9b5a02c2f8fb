/**
 * Benchmark page (bench.html): everything measured in one browser, side by
 * side. `window.gridBench(options)` returns rows for test/bench/kernels.ts:
 *
 * - matmul: GFLOP/s of `C = A·B` (or the MLP's transposed products) for our
 *   WGSL strategies (naive, vec4, tiled), a plain-JS loop, our CPU path
 *   (the kernel library on TF.js WASM), TF.js WebGPU `matMul` and TF.js WASM
 *   `matMul`. Inputs stay resident; each timing runs `reps` products and
 *   reads the last result back (so it includes one readback).
 * - peak: the adapter's FMA-bound GFLOP/s (shaders/fma_peak.wgsl).
 * - train: examples/s of mnist-mlp steps at the job's batch, as the worker
 *   runs them (job.step on the backend selectBackend picks, and on each
 *   candidate), against TF.js training the same MLP (momentum SGD, softmax
 *   cross-entropy, same batch) on each TF.js backend.
 */
import * as tf from "@tensorflow/tfjs-core";
// tfjs-core alone has no gradients; the union package registers these.
import "@tensorflow/tfjs-core/dist/register_all_gradients";
import "@tensorflow/tfjs-backend-cpu";
import "@tensorflow/tfjs-backend-webgl";
import "@tensorflow/tfjs-backend-webgpu";
import type { ComputeBackend, Tensor } from "./gpu/backend.ts";
import { acquireDevice } from "./gpu/device.ts";
import { KERNELS } from "./gpu/kernels.ts";
import { pipelineCacheFor } from "./gpu/pipelines.ts";
import { selectBackend, syntheticBatch } from "./gpu/select.ts";
import { createWasmBackend, initTfWasm } from "./gpu/wasm-backend.ts";
import { distWasmPaths } from "./gpu/wasm-paths.ts";
import { createWgslBackend } from "./gpu/wgsl-backend.ts";
import type { MatmulStrategy } from "./gpu/kernels.ts";
import { mnistMlp } from "./jobs/mnist-mlp.ts";
import { noiseInputs } from "./jobs/random.ts";

export interface BenchRow {
  /** "threads": the CPU path's WASM builds and thread counts side by side (test/bench/kernels-threads.ts). */
  readonly section: "matmul" | "peak" | "train" | "threads";
  /** e.g. "512x512x512" or "mlp 64x256x784 AᵀB". */
  readonly case: string;
  readonly impl: string;
  /** GFLOP/s (matmul, peak) or examples/s (train); ms for a start-up; null when the implementation failed. */
  readonly value: number | null;
  readonly unit: "GFLOP/s" | "examples/s" | "ms";
  readonly ms: number | null;
  readonly note?: string;
}

export interface BenchOptions {
  /** Square sizes; default [256, 512, 1024]. */
  readonly sizes?: readonly number[];
  /** Rows per MLP step; default the job's batch. */
  readonly batch?: number;
  /** Training steps timed per implementation (after 2 warm-ups); default 20. */
  readonly trainSteps?: number;
  /** Which sections to run; default all three. */
  readonly sections?: readonly BenchRow["section"][];
}

interface Shape {
  readonly name: string;
  readonly m: number;
  readonly n: number;
  readonly k: number;
  readonly transA: boolean;
  readonly transB: boolean;
}

/** Repetitions so that one timing is long enough to measure yet bounded: ~`targetFlops` of work, 1..8. */
function repsFor(flops: number, targetFlops: number): number {
  return Math.max(1, Math.min(8, Math.round(targetFlops / flops)));
}

async function timeOurs(backend: ComputeBackend, sh: Shape, reps: number): Promise<number> {
  const a = noiseInputs(sh.m * sh.k, 1);
  const b = noiseInputs(sh.k * sh.n, 2);
  const run = (r: number): Promise<unknown> =>
    backend.session((s) => {
      const ta = sh.transA ? s.upload(a, sh.k, sh.m) : s.upload(a, sh.m, sh.k);
      const tb = sh.transB ? s.upload(b, sh.n, sh.k) : s.upload(b, sh.k, sh.n);
      let c: Tensor = ta;
      for (let i = 0; i < r; i++) c = s.matmul(ta, tb, { transA: sh.transA, transB: sh.transB });
      return s.read(c);
    });
  // Warm-up (buffers; pipelines are compiled when the backend is created),
  // skipped for big products where it would only double a long run.
  if (2 * sh.m * sh.n * sh.k <= 5e8) await run(1);
  const t0 = performance.now();
  await run(reps);
  return (performance.now() - t0) / reps;
}

function timeJs(sh: Shape): number {
  const a = noiseInputs(sh.m * sh.k, 1);
  const b = noiseInputs(sh.k * sh.n, 2);
  const c = new Float32Array(sh.m * sh.n);
  const t0 = performance.now();
  // i-p-j order over row-major operands (transposes read with strides).
  for (let i = 0; i < sh.m; i++) {
    const ci = i * sh.n;
    for (let p = 0; p < sh.k; p++) {
      const av = sh.transA ? a[p * sh.m + i]! : a[i * sh.k + p]!;
      if (sh.transB) for (let j = 0; j < sh.n; j++) c[ci + j] = c[ci + j]! + av * b[j * sh.k + p]!;
      else {
        const bp = p * sh.n;
        for (let j = 0; j < sh.n; j++) c[ci + j] = c[ci + j]! + av * b[bp + j]!;
      }
    }
  }
  return performance.now() - t0;
}

async function timeTf(backendName: string, sh: Shape, reps: number): Promise<number> {
  if (!(await tf.setBackend(backendName))) throw new Error(`TF.js backend ${backendName} unavailable`);
  await tf.ready();
  const a = tf.tensor2d(noiseInputs(sh.m * sh.k, 1), sh.transA ? [sh.k, sh.m] : [sh.m, sh.k]);
  const b = tf.tensor2d(noiseInputs(sh.k * sh.n, 2), sh.transB ? [sh.n, sh.k] : [sh.k, sh.n]);
  try {
    const run = async (r: number): Promise<void> => {
      const outs: tf.Tensor[] = [];
      for (let i = 0; i < r; i++) outs.push(tf.matMul(a, b, sh.transA, sh.transB));
      await outs[outs.length - 1]!.data();
      for (const o of outs) o.dispose();
    };
    await run(1);
    const t0 = performance.now();
    await run(reps);
    return (performance.now() - t0) / reps;
  } finally {
    a.dispose();
    b.dispose();
  }
}

async function peak(device: GPUDevice): Promise<{ gflops: number; ms: number }> {
  const iters = 1024;
  const wg = 64;
  const groups = 256;
  const dispatches = 16;
  const pipeline = await pipelineCacheFor(device).get({ code: KERNELS.fma_peak.code, constants: { WG: wg, ITERS: iters }, label: "fma_peak" });
  const out = device.createBuffer({ size: wg * groups * 4, usage: GPUBufferUsage.STORAGE });
  const bind = device.createBindGroup({ layout: pipeline.getBindGroupLayout(0), entries: [{ binding: 0, resource: { buffer: out } }] });
  const run = async (n: number): Promise<void> => {
    const enc = device.createCommandEncoder();
    const pass = enc.beginComputePass();
    pass.setPipeline(pipeline);
    pass.setBindGroup(0, bind);
    for (let i = 0; i < n; i++) pass.dispatchWorkgroups(groups);
    pass.end();
    device.queue.submit([enc.finish()]);
    await device.queue.onSubmittedWorkDone();
  };
  await run(1);
  const t0 = performance.now();
  await run(dispatches);
  const ms = performance.now() - t0;
  out.destroy();
  return { gflops: (dispatches * groups * wg * iters * 64) / (ms * 1e6), ms };
}

/** One implementation's training step, for timing. */
interface Trainer {
  step(): Promise<void>;
  dispose(): void;
}

/** TF.js training the same MLP (same init scale, momentum 0.9, same batch). */
async function tfTrainer(backendName: string, batch: number): Promise<Trainer> {
  if (!(await tf.setBackend(backendName))) throw new Error(`TF.js backend ${backendName} unavailable`);
  await tf.ready();
  const p = mnistMlp.init(1);
  const w1 = tf.variable(tf.tensor2d(p.subarray(0, 784 * 256), [784, 256]));
  const b1 = tf.variable(tf.zeros([256]));
  const w2 = tf.variable(tf.tensor2d(p.subarray(784 * 256 + 256, 784 * 256 + 256 + 2560), [256, 10]));
  const b2 = tf.variable(tf.zeros([10]));
  const opt = tf.train.momentum(mnistMlp.learningRate, 0.9);
  const data = syntheticBatch(mnistMlp, batch);
  return {
    async step() {
      // Interleaved with our steps on the same engine: make this backend current.
      if (tf.getBackend() !== backendName) await tf.setBackend(backendName);
      // Inputs are uploaded every step, as the worker's minibatches are.
      const x = tf.tensor2d(data.x, [batch, 784]);
      const y = tf.oneHot(tf.tensor1d(Int32Array.from(data.labels), "int32"), 10);
      const loss = opt.minimize(() => {
        const h = tf.relu(tf.add(tf.matMul(x, w1), b1));
        const z = tf.add(tf.matMul(h, w2), b2);
        return tf.losses.softmaxCrossEntropy(y, z) as tf.Scalar;
      }, true);
      await loss?.data();
      loss?.dispose();
      x.dispose();
      y.dispose();
    },
    dispose() {
      opt.dispose();
      for (const v of [w1, b1, w2, b2]) v.dispose();
    },
  };
}

/** mnist-mlp steps as the worker runs them: job.step into one update buffer, then added to the replica. */
function ourTrainer(backend: ComputeBackend, batch: number): Trainer {
  const params = mnistMlp.init(1);
  const data = syntheticBatch(mnistMlp, batch);
  const buffer = new Float32Array(params.length);
  return {
    async step() {
      const { update } = await mnistMlp.step(backend, params, data, mnistMlp.learningRate, mnistMlp.optimizer, buffer);
      for (let i = 0; i < params.length; i++) params[i] = params[i]! + update[i]!;
    },
    dispose() {},
  };
}

/**
 * Examples/s of each trainer: two warm-up steps each, then `steps` steps
 * each in three blocks, the trainers' blocks interleaved (so a burst of load
 * from other processes hits all of them alike); each trainer's best block
 * counts (other processes on a shared machine only ever slow a block down).
 */
async function bestRates(trainers: readonly Trainer[], batch: number, steps: number): Promise<number[]> {
  for (const t of trainers) {
    await t.step();
    await t.step();
  }
  const per = Math.max(1, Math.ceil(steps / 3));
  const best = trainers.map(() => 0);
  for (let block = 0; block < 3; block++) {
    for (const [i, t] of trainers.entries()) {
      const t0 = performance.now();
      for (let k = 0; k < per; k++) await t.step();
      best[i] = Math.max(best[i]!, (per * batch * 1000) / (performance.now() - t0));
    }
  }
  return best;
}

export async function gridBench(options: BenchOptions = {}): Promise<{ adapter: string; rows: BenchRow[] }> {
  const sizes = options.sizes ?? [256, 512, 1024];
  const batch = options.batch ?? mnistMlp.batch;
  const steps = options.trainSteps ?? 20;
  const sections = new Set(options.sections ?? ["matmul", "peak", "train"]);
  const rows: BenchRow[] = [];
  const acq = await acquireDevice({ label: "grid bench" });
  if (!acq.ok) throw new Error(acq.reason);
  const device = acq.device;
  await initTfWasm(distWasmPaths());
  const ours: Record<string, ComputeBackend> = {};
  for (const strategy of ["naive", "vec4", "tiled"] as MatmulStrategy[]) {
    ours[`wgsl-${strategy}`] = await createWgslBackend(device, { strategy, adapter: acq.info.name, fallback: acq.info.isFallback });
  }
  ours["cpu-path (wasm-xnnpack)"] = await createWasmBackend(distWasmPaths());

  const shapes: Shape[] = sizes.map((s) => ({ name: `${s}x${s}x${s}`, m: s, n: s, k: s, transA: false, transB: false }));
  // The MLP's products at the job's batch, with their transposes.
  const mlp: [string, number, number, number, boolean, boolean][] = [
    ["fwd X·W1", batch, 256, 784, false, false],
    ["dW1 Xᵀ·G1", 784, 256, batch, true, false],
    ["dH G2·W2ᵀ", batch, 256, 10, false, true],
  ];
  for (const [name, m, n, k, ta, tb] of mlp) shapes.push({ name: `mlp ${name} ${m}x${n}x${k}`, m, n, k, transA: ta, transB: tb });

  for (const sh of sections.has("matmul") ? shapes : []) {
    const flops = 2 * sh.m * sh.n * sh.k;
    const record = async (impl: string, f: () => Promise<number> | number, note?: string): Promise<void> => {
      try {
        const ms = await f();
        rows.push({ section: "matmul", case: sh.name, impl, value: flops / (ms * 1e6), unit: "GFLOP/s", ms, ...(note ? { note } : {}) });
      } catch (e) {
        rows.push({ section: "matmul", case: sh.name, impl, value: null, unit: "GFLOP/s", ms: null, note: e instanceof Error ? e.message.slice(0, 120) : String(e) });
      }
    };
    for (const [impl, backend] of Object.entries(ours)) {
      const slow = impl === "wgsl-naive";
      // The CPU path's row says its WASM threads ("cpu, 1 wasm thread").
      await record(impl, () => timeOurs(backend, sh, repsFor(flops, slow ? 1e8 : 5e8)), backend.backend === "cpu" ? backend.adapter : undefined);
    }
    await record("plain-js", () => timeJs(sh));
    await record("tfjs-webgpu", () => timeTf("webgpu", sh, repsFor(flops, 1e8)));
    await record("tfjs-wasm", () => timeTf("wasm", sh, repsFor(flops, 2e9)));
  }

  if (sections.has("peak")) {
    const pk = await peak(device);
    rows.push({ section: "peak", case: "fma vec4 x8", impl: "wgsl-fma-peak", value: pk.gflops, unit: "GFLOP/s", ms: pk.ms });
  }
  if (sections.has("train")) await trainRows(rows, ours, batch, steps);
  for (const backend of Object.values(ours)) backend.dispose();
  return { adapter: acq.info.name, rows };
}

async function trainRows(rows: BenchRow[], ours: Record<string, ComputeBackend>, batch: number, steps: number): Promise<void> {
  const sel = await selectBackend(mnistMlp, null, batch, { wasmPaths: distWasmPaths(), store: null });
  const chosen = sel.backend.kernel;
  const trainCase = `mnist-mlp batch ${batch}`;
  const row = (impl: string, value: number | null, note?: string): void => {
    rows.push({ section: "train", case: trainCase, impl, value, unit: "examples/s", ms: null, ...(note !== undefined ? { note } : {}) });
  };
  const failed = (e: unknown): string => (e instanceof Error ? e.message.slice(0, 120) : String(e));
  // The ratio's two sides, interleaved block by block: the worker's chosen
  // backend and TF.js WASM (the fastest TF.js backend on a CPU-backed adapter).
  try {
    const tfWasm = await tfTrainer("wasm", batch);
    try {
      const [mine, theirs] = await bestRates([ourTrainer(sel.backend, batch), tfWasm], batch, steps);
      row(`grid worker (${chosen})`, mine ?? null, `${sel.backend.adapter}; chosen by measurement: ${JSON.stringify(sel.measuredMs)}; interleaved with tfjs-wasm`);
      row("tfjs-wasm", theirs ?? null, "interleaved with grid worker");
    } finally {
      tfWasm.dispose();
    }
  } catch (e) {
    row(`grid worker (${chosen})`, null, failed(e));
  }
  sel.backend.dispose();
  const short = Math.max(3, Math.round(steps / 4));
  for (const [impl, backend] of Object.entries(ours)) {
    if (impl === "wgsl-naive") continue;
    try {
      const [v] = await bestRates([ourTrainer(backend, batch)], batch, short);
      row(`grid ${impl}`, v ?? null);
    } catch (e) {
      row(`grid ${impl}`, null, failed(e));
    }
  }
  for (const b of ["webgl", "cpu", "webgpu"]) {
    try {
      const t = await tfTrainer(b, batch);
      try {
        const [v] = await bestRates([t], batch, short);
        row(`tfjs-${b}`, v ?? null);
      } finally {
        t.dispose();
      }
    } catch (e) {
      row(`tfjs-${b}`, null, failed(e));
    }
  }
}

declare global {
  interface Window {
    gridBench?: typeof gridBench;
  }
}

window.gridBench = gridBench;
const button = document.getElementById("run");
const out = document.getElementById("out");
if (button instanceof HTMLButtonElement && out !== null) {
  button.addEventListener("click", () => {
    button.disabled = true;
    out.textContent = "Running…";
    gridBench()
      .then((r) => {
        out.textContent = r.rows.map((x) => `${x.section}\t${x.case}\t${x.impl}\t${x.value?.toFixed(2) ?? "-"} ${x.unit}`).join("\n");
      })
      .catch((e: unknown) => {
        out.textContent = `failed: ${e instanceof Error ? e.message : String(e)}`;
      })
      .finally(() => {
        button.disabled = false;
      });
  });
}
