/**
 * Kernel self-test page (selftest.html).
 *
 * Exposes `window.gridSelfTest(cases)` for the Playwright tests: for every case
 * it draws seeded random inputs of the given shape, runs each WGSL kernel on
 * its own (fed the CPU reference's intermediates, so kernels are judged one at
 * a time) and the full GPU step, and reports the relative error of each
 * against reference.ts: `max|gpu − cpu| / max(max|cpu|, 1e-6)`.
 * A person opening the page gets a "Run self-test" button and a table.
 * DOM APIs only.
 */
import type { AdapterDescription, DeviceAcquisition } from "./gpu/device.ts";
import { acquireDevice } from "./gpu/device.ts";
import {
  biasGrad,
  cpuSoftmaxStep,
  linearForward,
  meanLoss,
  softmaxParamCount,
  softmaxXentGrad,
  weightGrad,
} from "./gpu/reference.ts";
import { createGpuSoftmaxBackend, createGpuSoftmaxProbe } from "./gpu/softmax.ts";

export interface SelfTestCase {
  readonly batch: number;
  readonly inDim: number;
  readonly outDim: number;
  /** Learning rate; default 0.1. */
  readonly lr?: number;
  /** PRNG seed; default derived from the shape. */
  readonly seed?: number;
  /** Logits for the softmax kernel are `offset + logitScale · u`, u in [-1, 1), |offset| ≤ 200; default 20. */
  readonly logitScale?: number;
  /** The kernels' `WG` override; default 64. */
  readonly workgroupSize?: number;
}

/** Relative errors (see the file comment) of each kernel and of the full step. */
export interface SelfTestErrors {
  readonly linearForward: number;
  readonly softmaxGrad: number;
  readonly softmaxLoss: number;
  readonly weightGrad: number;
  readonly biasGrad: number;
  readonly meanLoss: number;
  readonly stepUpdate: number;
  readonly stepLoss: number;
}

export interface SelfTestCaseResult {
  readonly case: Required<SelfTestCase>;
  /** Absent when the case threw; then `error` says why. */
  readonly errors?: SelfTestErrors;
  readonly error?: string;
  /** Largest of `errors`, or NaN when the case threw. */
  readonly maxError: number;
  /** Wall time of the whole case (all kernels, both backends' setup). */
  readonly ms: number;
  /** Wall time of one full GPU step (after a warm-up step). */
  readonly stepMs: number;
  /** Workgroup size actually used (after clamping to the device limits). */
  readonly workgroupSize: number;
}

export interface SelfTestReport {
  readonly ok: boolean;
  /** Why there is no device, when `ok` is false. */
  readonly reason?: string;
  readonly adapter: AdapterDescription | null;
  readonly results: readonly SelfTestCaseResult[];
}

declare global {
  interface Window {
    gridSelfTest?: (cases: readonly SelfTestCase[]) => Promise<SelfTestReport>;
  }
}

/** Cases the button runs: small, awkward and MNIST-sized shapes. */
export const DEFAULT_CASES: readonly SelfTestCase[] = [
  { batch: 1, inDim: 1, outDim: 1 },
  { batch: 2, inDim: 3, outDim: 2 },
  { batch: 7, inDim: 13, outDim: 5 },
  { batch: 255, inDim: 13, outDim: 3, workgroupSize: 48 },
  { batch: 64, inDim: 784, outDim: 10 },
];

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

function uniform(random: () => number, n: number, lo: number, hi: number): Float32Array {
  const out = new Float32Array(n);
  for (let i = 0; i < n; i++) out[i] = lo + (hi - lo) * random();
  return out;
}

function maxAbs(values: ArrayLike<number>): number {
  let m = 0;
  for (let i = 0; i < values.length; i++) m = Math.max(m, Math.abs(values[i] ?? 0));
  return m;
}

/** `max|a − b| / max(max|b|, 1e-6)`; Infinity on a length mismatch or a NaN. */
export function relativeError(actual: ArrayLike<number>, expected: ArrayLike<number>): number {
  if (actual.length !== expected.length) return Infinity;
  let diff = 0;
  for (let i = 0; i < actual.length; i++) {
    const d = Math.abs((actual[i] ?? 0) - (expected[i] ?? 0));
    if (Number.isNaN(d)) return Infinity;
    diff = Math.max(diff, d);
  }
  return diff / Math.max(maxAbs(expected), 1e-6);
}

function complete(c: SelfTestCase): Required<SelfTestCase> {
  return {
    batch: c.batch,
    inDim: c.inDim,
    outDim: c.outDim,
    lr: c.lr ?? 0.1,
    seed: c.seed ?? ((c.batch * 7919 + c.inDim * 104729 + c.outDim * 1299709) >>> 0),
    logitScale: c.logitScale ?? 20,
    workgroupSize: c.workgroupSize ?? 64,
  };
}

async function runCase(device: GPUDevice, adapterName: string, c: Required<SelfTestCase>): Promise<SelfTestCaseResult> {
  const started = performance.now();
  const { batch, inDim, outDim, lr } = c;
  const random = randomSource(c.seed);
  const params = uniform(random, softmaxParamCount(inDim, outDim), -0.5, 0.5);
  const x = uniform(random, batch * inDim, -1, 1);
  const labels = new Uint32Array(batch);
  for (let r = 0; r < batch; r++) labels[r] = Math.min(outDim - 1, Math.floor(random() * outDim));
  // Logits with large per-row offsets: exp() overflows float32 without the max subtraction.
  const logits = new Float32Array(batch * outDim);
  for (let r = 0; r < batch; r++) {
    const offset = (random() * 2 - 1) * 200;
    for (let j = 0; j < outDim; j++) logits[r * outDim + j] = offset + c.logitScale * (random() * 2 - 1);
  }

  const options = { workgroupSize: c.workgroupSize };
  const probe = await createGpuSoftmaxProbe(device, inDim, outDim, batch, options);
  const backend = await createGpuSoftmaxBackend(device, adapterName, inDim, outDim, batch, options);
  try {
    const refLogits = linearForward(params, x, batch, inDim, outDim);
    const refXent = softmaxXentGrad(logits, labels, batch, outDim);
    const refWeight = weightGrad(x, refXent.grad, batch, lr, inDim, outDim);
    const refBias = biasGrad(refXent.grad, batch, lr, outDim);
    const refMean = meanLoss(refXent.loss, batch);
    const refStep = cpuSoftmaxStep(params, x, labels, batch, lr, inDim, outDim);

    const gpuLogits = await probe.linearForward(params, x, batch);
    const gpuXent = await probe.softmaxXentGrad(logits, labels, batch);
    const gpuWeight = await probe.weightGrad(x, refXent.grad, batch, lr);
    const gpuBias = await probe.biasGrad(refXent.grad, batch, lr);
    const gpuMean = await probe.meanLoss(refXent.loss, batch);
    await backend.softmaxStep(params, x, labels, batch, lr); // warm-up
    const stepStarted = performance.now();
    const gpuStep = await backend.softmaxStep(params, x, labels, batch, lr);
    const stepMs = performance.now() - stepStarted;

    const errors: SelfTestErrors = {
      linearForward: relativeError(gpuLogits, refLogits),
      softmaxGrad: relativeError(gpuXent.grad, refXent.grad),
      softmaxLoss: relativeError(gpuXent.loss, refXent.loss),
      weightGrad: relativeError(gpuWeight, refWeight),
      biasGrad: relativeError(gpuBias, refBias),
      meanLoss: relativeError([gpuMean], [refMean]),
      stepUpdate: relativeError(gpuStep.update, refStep.update),
      stepLoss: relativeError([gpuStep.loss], [refStep.loss]),
    };
    return {
      case: c,
      errors,
      maxError: Math.max(...Object.values(errors)),
      ms: performance.now() - started,
      stepMs,
      workgroupSize: probe.workgroupSize,
    };
  } finally {
    probe.dispose();
    backend.dispose();
  }
}

let acquisition: Promise<DeviceAcquisition> | undefined;

/** Runs `cases` one after another on the page's device (acquired once). */
export async function gridSelfTest(cases: readonly SelfTestCase[]): Promise<SelfTestReport> {
  acquisition ??= acquireDevice({ label: "grid self-test" });
  const acquired = await acquisition;
  if (!acquired.ok) return { ok: false, reason: acquired.reason, adapter: null, results: [] };
  const results: SelfTestCaseResult[] = [];
  for (const raw of cases) {
    const c = complete(raw);
    const started = performance.now();
    try {
      results.push(await runCase(acquired.device, acquired.info.name, c));
    } catch (err) {
      results.push({
        case: c,
        error: err instanceof Error ? err.message : String(err),
        maxError: Number.NaN,
        ms: performance.now() - started,
        stepMs: Number.NaN,
        workgroupSize: c.workgroupSize,
      });
    }
  }
  return { ok: true, adapter: acquired.info, results };
}

const ERROR_COLUMNS: readonly (keyof SelfTestErrors)[] = [
  "linearForward",
  "softmaxGrad",
  "softmaxLoss",
  "weightGrad",
  "biasGrad",
  "meanLoss",
  "stepUpdate",
  "stepLoss",
];

/** Threshold the table highlights against (the e2e test asserts the same). */
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
  const failures = report.results.filter((r) => !(r.maxError <= TOLERANCE)).length;
  status.textContent =
    `Adapter: ${a?.name ?? "?"} (vendor "${a?.vendor ?? ""}", architecture "${a?.architecture ?? ""}", ` +
    `description "${a?.description ?? ""}"${a?.isFallback === true ? ", fallback" : ""}). ` +
    `${report.results.length - failures}/${report.results.length} cases within ${TOLERANCE}.`;
  const head = table.createTHead().insertRow();
  for (const title of ["batch", "inDim", "outDim", "WG", ...ERROR_COLUMNS, "step ms", "case ms"]) cell(head, title, "th");
  const body = table.createTBody();
  for (const r of report.results) {
    const row = body.insertRow();
    cell(row, String(r.case.batch));
    cell(row, String(r.case.inDim));
    cell(row, String(r.case.outDim));
    cell(row, String(r.workgroupSize));
    if (r.errors === undefined) {
      const el = document.createElement("td");
      el.colSpan = ERROR_COLUMNS.length + 2;
      el.className = "bad";
      el.textContent = r.error ?? "failed";
      row.appendChild(el);
      continue;
    }
    for (const column of ERROR_COLUMNS) {
      const e = r.errors[column];
      cell(row, e.toExponential(2), "td", !(e <= TOLERANCE));
    }
    cell(row, r.stepMs.toFixed(1));
    cell(row, r.ms.toFixed(0));
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
    gridSelfTest(DEFAULT_CASES)
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
setUpPage();
