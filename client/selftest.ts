/**
 * Kernel self-test page (selftest.html).
 *
 * `window.gridSelfTest(options)` runs every kernel of the library — the three
 * matrix-multiply strategies with every transpose combination, fused
 * bias+activation, ReLU backward, fused softmax–cross-entropy, fused squared
 * error, column sums — on this adapter, and the same ops on the CPU path
 * (TF.js WASM), on seeded random inputs of awkward shapes, and compares each
 * with the TypeScript reference (gpu/kernels-ref.ts):
 * `max|got − ref| / max(max|ref|, 1e-6)`. It also compares whole gradient
 * steps of every job with the reference backend.
 *
 * `window.gridBackendTest` (selection and caching) and `window.gridDeviceLossTest`
 * (training through `device.destroy()`) and `window.gridTrainLocal` (a job
 * trained locally) serve the other e2e tests; `window.gridCpuProbe` runs the
 * CPU path in a worker of its own with a chosen WASM thread count
 * (client/cpu-probe.ts). A person opening the page gets a
 * "Run self-test" button and a table. DOM APIs only.
 */
import { withSession, type ComputeBackend, type Session, type Tensor } from "./gpu/backend.ts";
import type { AdapterDescription } from "./gpu/device.ts";
import { acquireDevice } from "./gpu/device.ts";
import { refAdam, refBiasAct, refColSum, refMatmul, refMomentum, refMseGrad, refReluBackward, refSoftmaxXent } from "./gpu/kernels-ref.ts";
import type { MatmulStrategy } from "./gpu/kernels.ts";
import { createRefBackend } from "./gpu/ref-backend.ts";
import { createResilientWgslBackend } from "./gpu/resilient.ts";
import { selectBackend } from "./gpu/select.ts";
import { createWasmBackend } from "./gpu/wasm-backend.ts";
import { distWasmPaths } from "./gpu/wasm-paths.ts";
import { createWgslBackend } from "./gpu/wgsl-backend.ts";
import type { Batch, JobDefinition } from "./jobs/job.ts";
import { JOBS } from "./jobs/registry.ts";
import { adam, momentum } from "./jobs/optimizers.ts";
import { clearBackendChoices, getBackendChoice } from "./store/db.ts";
import { cpuProbe } from "./cpu-probe.ts";

export type MatmulCase = readonly [m: number, n: number, k: number];

export interface SelfTestOptions {
  /** Matrix products `[M, N, K]`; each runs with every transpose combination. */
  readonly matmul?: readonly MatmulCase[];
  /** `[rows, cols]` for the elementwise and row kernels. */
  readonly rowShapes?: readonly (readonly [number, number])[];
  /** `[rows, cols]` for the optimizer updates (momentum, Adam). */
  readonly optimizerShapes?: readonly (readonly [number, number])[];
  /** Jobs whose whole gradient is compared (rows per batch given). */
  readonly jobs?: readonly { readonly name: string; readonly rows: number }[];
  readonly strategies?: readonly MatmulStrategy[];
  /** Also test the CPU path (TF.js WASM); default true. */
  readonly cpu?: boolean;
}

export interface SelfTestResult {
  /** e.g. "wgsl-vec4", "wasm-xnnpack". */
  readonly backend: string;
  /** e.g. "matmul TA TB" or "softmaxXent.grad" or "job mnist-mlp". */
  readonly kernel: string;
  readonly shape: string;
  readonly error: number;
  readonly ms: number;
  readonly failure?: string;
}

export interface SelfTestReport {
  readonly ok: boolean;
  readonly reason?: string;
  readonly adapter: AdapterDescription | null;
  readonly results: readonly SelfTestResult[];
}

export const DEFAULT_OPTIONS: Required<SelfTestOptions> = {
  matmul: [
    [1, 1, 1],
    [7, 13, 5],
    [13, 7, 31],
    [33, 65, 17],
    [255, 257, 19],
  ],
  rowShapes: [
    [1, 1],
    [7, 13],
    [255, 10],
    [65, 257],
  ],
  optimizerShapes: [
    [1, 1],
    [7, 13],
    [255, 257],
    [1, 203_530], // mnist-mlp's parameters
  ],
  jobs: [
    { name: "mnist-softmax", rows: 33 },
    { name: "mnist-mlp", rows: 64 },
    { name: "linreg", rows: 17 },
  ],
  strategies: ["naive", "vec4", "tiled"],
  cpu: true,
};

/** A small seeded generator (xorshift32) of floats in [0, 1). */
function randomSource(seed: number): () => number {
  let s = seed >>> 0 || 0x9e3779b9;
  return () => {
    s ^= s << 13;
    s >>>= 0;
    s ^= s >>> 17;
    s ^= s << 5;
    s >>>= 0;
    return s / 0x1_0000_0000;
  };
}

function uniform(random: () => number, n: number, lo = -1, hi = 1): Float32Array {
  const out = new Float32Array(n);
  for (let i = 0; i < n; i++) out[i] = lo + (hi - lo) * random();
  return out;
}

/** `max|a − b| / max(max|b|, 1e-6)`; Infinity on a length mismatch or a NaN. */
export function relativeError(actual: ArrayLike<number>, expected: ArrayLike<number>): number {
  if (actual.length !== expected.length) return Infinity;
  let diff = 0;
  let scale = 0;
  for (let i = 0; i < actual.length; i++) {
    const d = Math.abs((actual[i] ?? 0) - (expected[i] ?? 0));
    if (Number.isNaN(d)) return Infinity;
    diff = Math.max(diff, d);
    scale = Math.max(scale, Math.abs(expected[i] ?? 0));
  }
  return diff / Math.max(scale, 1e-6);
}

/** Runs one session on `backend`: `body` builds tensors, the results are read and compared with `refs`. */
async function check(
  backend: ComputeBackend,
  kernel: string,
  shape: string,
  body: (s: Session) => Tensor[],
  refs: Float32Array[],
  out: SelfTestResult[],
): Promise<void> {
  const t0 = performance.now();
  try {
    const got = await backend.session((s) => s.read(...body(s)));
    const error = Math.max(...refs.map((r, i) => relativeError(got[i] ?? [], r)));
    out.push({ backend: backend.kernel, kernel, shape, error, ms: performance.now() - t0 });
  } catch (e) {
    out.push({ backend: backend.kernel, kernel, shape, error: Number.NaN, ms: performance.now() - t0, failure: e instanceof Error ? e.message : String(e) });
  }
}

/** Every op of the library on `backend` against the references. */
async function testOps(backend: ComputeBackend, o: Required<SelfTestOptions>, out: SelfTestResult[]): Promise<void> {
  for (const [m, n, k] of o.matmul) {
    const random = randomSource(m * 7919 + n * 104729 + k);
    for (const transA of [false, true]) {
      for (const transB of [false, true]) {
        const a = uniform(random, m * k);
        const b = uniform(random, k * n);
        const alpha = transA ? -0.5 : 1;
        const ref = refMatmul(a, b, m, n, k, transA, transB, alpha);
        await check(
          backend,
          `matmul${transA ? " Aᵀ" : " A"}·${transB ? "Bᵀ" : "B"}`,
          `${m}×${n}×${k}`,
          (s) => [
            s.matmul(transA ? s.upload(a, k, m) : s.upload(a, m, k), transB ? s.upload(b, n, k) : s.upload(b, k, n), { transA, transB, alpha }),
          ],
          [ref],
          out,
        );
      }
    }
  }
  for (const [rows, cols] of o.rowShapes) {
    const random = randomSource(rows * 31 + cols);
    const x = uniform(random, rows * cols);
    const bias = uniform(random, cols);
    const shape = `${rows}×${cols}`;
    for (const act of ["none", "relu"] as const) {
      await check(backend, `biasAct ${act}`, shape, (s) => [s.biasAct(s.upload(x, rows, cols), s.upload(bias, 1, cols), act)], [refBiasAct(x, bias, rows, cols, act === "relu")], out);
    }
    const dy = uniform(random, rows * cols);
    await check(backend, "reluBackward", shape, (s) => [s.reluBackward(s.upload(dy, rows, cols), s.upload(x, rows, cols))], [refReluBackward(dy, x)], out);
    // Logits with large per-row offsets: exp() overflows float32 without the max subtraction.
    const logits = new Float32Array(rows * cols);
    for (let r = 0; r < rows; r++) {
      const offset = (random() * 2 - 1) * 200;
      for (let j = 0; j < cols; j++) logits[r * cols + j] = offset + 20 * (random() * 2 - 1);
    }
    const labels = new Uint32Array(rows);
    for (let r = 0; r < rows; r++) labels[r] = Math.min(cols - 1, Math.floor(random() * cols));
    const sx = refSoftmaxXent(logits, labels, rows, cols, 1 / rows);
    await check(backend, "softmaxXent", shape, (s) => {
      const r = s.softmaxXent(s.upload(logits, rows, cols), s.uploadLabels(labels), 1 / rows);
      return [r.grad, r.loss];
    }, [sx.grad, sx.loss], out);
    const tgt = uniform(random, rows * cols);
    const mse = refMseGrad(x, tgt, rows, cols, 0.5);
    await check(backend, "mseGrad", shape, (s) => {
      const r = s.mseGrad(s.upload(x, rows, cols), s.upload(tgt, rows, cols), 0.5);
      return [r.grad, r.loss];
    }, [mse.grad, mse.loss], out);
    await check(backend, "colSum", shape, (s) => [s.colSum(s.upload(x, rows, cols), -0.25)], [refColSum(x, rows, cols, -0.25)], out);
  }
  for (const [rows, cols] of o.optimizerShapes) {
    const random = randomSource(rows * 17 + cols);
    const n = rows * cols;
    const shape = `${rows}×${cols}`;
    const g = uniform(random, n);
    const vel = uniform(random, n);
    const mo = refMomentum(g, vel, 0.05, 0.9);
    await check(backend, "momentum", shape, (s) => {
      const r = s.momentum(s.upload(g, rows, cols), s.upload(vel, rows, cols), { lr: 0.05, mu: 0.9 });
      return [r.delta, r.velocity];
    }, [mo.delta, mo.velocity], out);
    // Moments as after a few steps (v ≥ 0), at step 1 (largest bias correction) and step 7.
    const m = uniform(random, n, -0.1, 0.1);
    const v = uniform(random, n, 0, 0.01);
    for (const step of [1, 7]) {
      const hyper = { lr: 0.01, beta1: 0.9, beta2: 0.999, eps: 1e-8, step };
      const ad = refAdam(g, m, v, hyper);
      await check(backend, `adam step ${step}`, shape, (s) => {
        const r = s.adam(s.upload(g, rows, cols), s.upload(m, rows, cols), s.upload(v, rows, cols), hyper);
        return [r.delta, r.m, r.v];
      }, [ad.delta, ad.m, ad.v], out);
    }
  }
}

/** A random batch for `job` (seeded). */
function randomBatch(job: JobDefinition, rows: number, seed: number): Batch {
  const random = randomSource(seed);
  const x = new Float32Array(rows * job.inputDim);
  for (let i = 0; i < x.length; i++) x[i] = random() < 0.25 ? random() : 0;
  const labels = new Uint32Array(rows);
  for (let r = 0; r < rows; r++) labels[r] = Math.min(job.classes - 1, Math.floor(random() * job.classes));
  return { x, labels, size: rows };
}

async function testJobs(backend: ComputeBackend, o: Required<SelfTestOptions>, out: SelfTestResult[]): Promise<void> {
  const ref = createRefBackend();
  for (const { name, rows } of o.jobs) {
    const job = JOBS[name];
    if (job === undefined) continue;
    const batch = randomBatch(job, rows, rows * 13 + name.length);
    const params = job.init(7);
    const random = randomSource(99);
    for (let i = 0; i < params.length; i++) params[i] = (params[i] ?? 0) + 0.01 * (random() - 0.5);
    const t0 = performance.now();
    try {
      const want = await job.meanGradient(ref, params, batch);
      const got = await job.meanGradient(backend, params, batch);
      const error = Math.max(relativeError(got.grad, want.grad), relativeError([got.loss], [want.loss]));
      out.push({ backend: backend.kernel, kernel: `job ${name}`, shape: `${rows} rows`, error, ms: performance.now() - t0 });
    } catch (e) {
      out.push({ backend: backend.kernel, kernel: `job ${name}`, shape: `${rows} rows`, error: Number.NaN, ms: performance.now() - t0, failure: e instanceof Error ? e.message : String(e) });
    }
  }
}

/**
 * Two optimizer steps through `Optimizer.apply` on `backend` (the path a
 * job's step takes: upload, kernel, read back, state kept on the host)
 * against the host reference `delta`, on a gradient of `n` parameters.
 */
async function testOptimizerSteps(backend: ComputeBackend, n: number, out: SelfTestResult[]): Promise<void> {
  const random = randomSource(n);
  const grads = [uniform(random, n), uniform(random, n)];
  for (const make of [() => momentum(0.9), () => adam()]) {
    const onBackend = make();
    const onHost = make();
    const sb = onBackend.createState(n);
    const sh = onHost.createState(n);
    const t0 = performance.now();
    try {
      let error = 0;
      for (const g of grads) {
        const got = await onBackend.apply(backend, g, 0.01, sb);
        const want = onHost.delta(g, 0.01, sh);
        error = Math.max(error, relativeError(got, want), ...sb.slots.map((s, i) => relativeError(s, sh.slots[i] ?? [])));
      }
      out.push({ backend: backend.kernel, kernel: `optimizer ${onBackend.kind}`, shape: `2 steps × ${n}`, error, ms: performance.now() - t0 });
    } catch (e) {
      out.push({ backend: backend.kernel, kernel: `optimizer ${onBackend.kind}`, shape: `2 steps × ${n}`, error: Number.NaN, ms: performance.now() - t0, failure: e instanceof Error ? e.message : String(e) });
    }
  }
}

/** Runs the self-test (see the file comment). */
export async function gridSelfTest(options: SelfTestOptions = {}): Promise<SelfTestReport> {
  const o: Required<SelfTestOptions> = { ...DEFAULT_OPTIONS, ...options };
  const acquired = await acquireDevice({ label: "grid self-test" });
  if (!acquired.ok) return { ok: false, reason: acquired.reason, adapter: null, results: [] };
  const results: SelfTestResult[] = [];
  for (const strategy of o.strategies) {
    const backend = await createWgslBackend(acquired.device, { strategy, adapter: acquired.info.name, fallback: acquired.info.isFallback });
    try {
      await testOps(backend, o, results);
      await testJobs(backend, o, results);
      await testOptimizerSteps(backend, 203_530, results);
    } finally {
      backend.dispose();
    }
  }
  if (o.cpu) {
    const wasm = await createWasmBackend(distWasmPaths());
    await testOps(wasm, o, results);
    await testJobs(wasm, o, results);
    await testOptimizerSteps(wasm, 203_530, results);
    wasm.dispose();
  }
  acquired.device.destroy();
  return { ok: true, adapter: acquired.info, results };
}

export interface BackendTestReport {
  /** Each call: the kernel chosen, whether it came from the cache, what was measured. */
  readonly runs: readonly { force: string; kernel: string; backend: string; cached: boolean; measuredMs: Record<string, number>; ms: number; phases: Record<string, number> }[];
  /** The IndexedDB record after the first (unforced) call. */
  readonly stored: { kernel: string; measuredMs: Record<string, number> } | null;
}

/** Selection twice unforced (measured, then cached), then forced cpu and forced webgpu. */
export async function gridBackendTest(jobName: string, maxBatch: number): Promise<BackendTestReport> {
  const job = JOBS[jobName];
  if (job === undefined) throw new Error(`unknown job ${jobName}`);
  await clearBackendChoices();
  const runs: BackendTestReport["runs"][number][] = [];
  let stored: BackendTestReport["stored"] = null;
  for (const force of [null, null, "cpu", "webgpu"] as const) {
    const t0 = performance.now();
    const sel = await selectBackend(job, force, maxBatch, { wasmPaths: distWasmPaths() });
    runs.push({ force: force ?? "none", kernel: sel.backend.kernel, backend: sel.backend.backend, cached: sel.cached, measuredMs: { ...sel.measuredMs }, ms: performance.now() - t0, phases: { ...sel.phases } });
    sel.backend.dispose();
    if (runs.length === 1) {
      const dev = await acquireDevice();
      const i = dev.ok ? dev.info : null;
      const key = i ? [i.name, i.vendor, i.architecture, i.device, i.description].join("|") : "no-webgpu";
      const rec = await getBackendChoice(key, job.name);
      stored = rec === null ? null : { kernel: rec.kernel, measuredMs: { ...rec.measuredMs } };
      if (dev.ok) dev.device.destroy();
    }
  }
  return { runs, stored };
}

export interface TrainReport {
  readonly kernel: string;
  readonly losses: number[];
  readonly metric: number;
  readonly recoveries: number;
  readonly events: readonly string[];
  readonly ms: number;
}

/** Two fixed synthetic batches, alternated (the page has no shards; a fixed set is learnable, so the loss must fall). */
function batches(job: JobDefinition, rows: number, seed: number): () => Batch {
  const set = [randomBatch(job, rows, seed), randomBatch(job, rows, seed + 1)];
  let n = 0;
  return () => set[n++ % set.length] ?? set[0]!;
}

/**
 * Trains `jobName` locally for `steps` steps on a WGSL backend (strategy
 * `strategy`), destroying the device before step `destroyAt` (if ≥ 0), and
 * reports the losses and the recoveries. linreg's metric (R² on a held-out
 * synthetic batch) is computed with the job's own `evaluate`.
 */
export async function gridTrainLocal(jobName: string, steps: number, rows: number, destroyAt: number, strategy: MatmulStrategy | "wasm"): Promise<TrainReport> {
  const job = JOBS[jobName];
  if (job === undefined) throw new Error(`unknown job ${jobName}`);
  let backend: ComputeBackend;
  let destroy: () => void = () => {};
  let recoveries = (): number => 0;
  let events = (): readonly string[] => [];
  if (strategy === "wasm") {
    backend = await createWasmBackend(distWasmPaths());
  } else {
    const acq = await acquireDevice({ label: "grid train-local" });
    if (!acq.ok) throw new Error(acq.reason);
    const r = await createResilientWgslBackend(acq.device, acq.info.name, acq.info.isFallback, strategy, rows);
    backend = r;
    destroy = () => r.device.destroy();
    recoveries = () => r.recoveries;
    events = () => r.events;
  }
  const next = batches(job, rows, 1000);
  const params = job.init(1);
  const losses: number[] = [];
  const t0 = performance.now();
  for (let i = 0; i < steps; i++) {
    if (i === destroyAt) destroy();
    const { update, loss } = await job.step(backend, params, next(), job.learningRate);
    for (let j = 0; j < params.length; j++) params[j] = (params[j] ?? 0) + (update[j] ?? 0);
    losses.push(loss);
  }
  const ms = performance.now() - t0;
  // Held-out data in the evaluate() format: uint8 pixels.
  const test = randomBatch(job, 500, 424242);
  const pixels = Uint8Array.from(test.x, (v) => Math.round(v * 255));
  const metric = job.evaluate(params, pixels, Uint8Array.from(test.labels), test.size).value;
  const report = { kernel: backend.kernel, losses, metric, recoveries: recoveries(), events: [...events()], ms };
  backend.dispose();
  return report;
}

export interface OomReport {
  readonly adapter: string;
  /** Bytes of the allocation that provokes the error (the device's maxBufferSize). */
  readonly ballastBytes: number;
  /** The out-of-memory errors the backend's sessions rejected with (class: message). */
  readonly errors: readonly string[];
  readonly rowsBefore: number;
  readonly rowsAfter: number;
  /** The step's update and loss against the reference backend's. */
  readonly error: number;
  /** Errors that escaped every error scope (the device's uncapturederror events). */
  readonly uncaptured: readonly string[];
  /** A plain session on the same backend afterwards (nothing broken kept in its buffer pool). */
  readonly afterError: number;
}

/**
 * A real out-of-memory error from the driver, caught by the WGSL backend's
 * error scopes and answered by halving the rows per session. On SwiftShader a
 * buffer of exactly the device's maxBufferSize (1 GiB) fails with
 * VK_ERROR_OUT_OF_DEVICE_MEMORY at once, without committing memory (2^30 − 16
 * bytes succeeds), and nothing in a job is that large at a sane batch, so the
 * test models a device that holds sessions of at most `fits` rows: while the
 * backend's rows per session exceed `fits`, each session also allocates one
 * maxBufferSize tensor (as the output of an outer product it never runs).
 * Then one step of `jobName` at `rows` rows on the WGSL backend is compared
 * with the reference backend's.
 */
export async function gridOomTest(jobName: string, rows: number, fits: number): Promise<OomReport> {
  const job = JOBS[jobName];
  if (job === undefined) throw new Error(`unknown job ${jobName}`);
  const acq = await acquireDevice({ label: "grid oom test" });
  if (!acq.ok) throw new Error(acq.reason);
  const uncaptured: string[] = [];
  acq.device.addEventListener("uncapturederror", (ev) => uncaptured.push((ev as GPUUncapturedErrorEvent).error.message));
  const ballastBytes = acq.device.limits.maxBufferSize;
  const side = 1 << 14;
  const other = ballastBytes / 4 / side;
  if (!Number.isInteger(other)) throw new Error(`maxBufferSize ${ballastBytes} is not 4 × ${side} × an integer`);
  const inner = await createWgslBackend(acq.device, { strategy: "vec4", adapter: acq.info.name, fallback: acq.info.isFallback, maxRows: rows });
  const errors: string[] = [];
  const pressured = withSession(inner, async <T>(body: (s: Session) => Promise<T>): Promise<T> => {
    try {
      return await inner.session(async (s) => {
        if (inner.maxRows > fits) s.matmul(s.upload(new Float32Array(side), side, 1), s.upload(new Float32Array(other), 1, other));
        return body(s);
      });
    } catch (e) {
      if (e instanceof Error) errors.push(`${e.name}: ${e.message}`);
      throw e;
    }
  });
  const rowsBefore = inner.maxRows;
  const batch = randomBatch(job, rows, 515);
  const params = job.init(3);
  const want = await job.step(createRefBackend(rows), params, batch, job.learningRate);
  const got = await job.step(pressured, params, batch, job.learningRate);
  const error = Math.max(relativeError(got.update, want.update), relativeError([got.loss], [want.loss]));
  const rowsAfter = inner.maxRows;
  // A plain session afterwards: a 7×13·13×5 product against the reference.
  const random = randomSource(5);
  const a = uniform(random, 7 * 13);
  const b = uniform(random, 13 * 5);
  const [c] = await inner.session((s) => s.read(s.matmul(s.upload(a, 7, 13), s.upload(b, 13, 5))));
  const afterError = relativeError(c ?? new Float32Array(0), refMatmul(a, b, 7, 5, 13));
  inner.dispose();
  acq.device.destroy();
  return { adapter: acq.info.name, ballastBytes, errors, rowsBefore, rowsAfter, error, uncaptured, afterError };
}

declare global {
  interface Window {
    gridOomTest?: typeof gridOomTest;
    gridSelfTest?: typeof gridSelfTest;
    gridBackendTest?: typeof gridBackendTest;
    gridTrainLocal?: typeof gridTrainLocal;
  }
}

const TOLERANCE = 1e-4;

function cell(row: HTMLTableRowElement, text: string, tag: "td" | "th" = "td", bad = false): void {
  const el = document.createElement(tag);
  el.textContent = text;
  if (bad) el.className = "bad";
  row.appendChild(el);
}

function renderReport(report: SelfTestReport, status: HTMLElement, table: HTMLTableElement): void {
  table.replaceChildren();
  if (!report.ok) {
    status.textContent = `No WebGPU device: ${report.reason ?? "unknown reason"}`;
    return;
  }
  const a = report.adapter;
  const failures = report.results.filter((r) => !(r.error <= TOLERANCE)).length;
  status.textContent = `Adapter: ${a?.name ?? "?"}${a?.isFallback === true ? " (fallback)" : ""}. ${report.results.length - failures}/${report.results.length} checks within ${TOLERANCE}.`;
  const head = table.createTHead().insertRow();
  for (const title of ["backend", "kernel", "shape", "rel. error", "ms"]) cell(head, title, "th");
  const body = table.createTBody();
  for (const r of report.results) {
    const row = body.insertRow();
    cell(row, r.backend);
    cell(row, r.kernel);
    cell(row, r.shape);
    cell(row, r.failure ?? r.error.toExponential(2), "td", !(r.error <= TOLERANCE));
    cell(row, r.ms.toFixed(1));
  }
}

function setUpPage(): void {
  const button = document.getElementById("run");
  const status = document.getElementById("status");
  const table = document.getElementById("results");
  if (!(button instanceof HTMLButtonElement) || status === null || !(table instanceof HTMLTableElement)) return;
  status.textContent = "gpu" in navigator ? "Ready." : "This browser has no navigator.gpu: WebGPU is unavailable.";
  button.addEventListener("click", () => {
    button.disabled = true;
    status.textContent = "Running…";
    gridSelfTest()
      .then((report) => renderReport(report, status, table))
      .catch((err: unknown) => {
        status.textContent = `Self-test failed: ${err instanceof Error ? err.message : String(err)}`;
      })
      .finally(() => {
        button.disabled = false;
      });
  });
}

window.gridSelfTest = gridSelfTest;
window.gridBackendTest = gridBackendTest;
window.gridTrainLocal = gridTrainLocal;
window.gridOomTest = gridOomTest;
window.gridCpuProbe = cpuProbe();
setUpPage();
