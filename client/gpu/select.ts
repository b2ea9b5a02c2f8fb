/**
 * Chooses the compute backend a volunteer trains with, by measurement.
 *
 * Candidates: the CPU path ("wasm-xnnpack", TF.js WASM SIMD) and the WGSL
 * kernel library with each matrix-multiply strategy ("wgsl-vec4",
 * "wgsl-tiled") when a WebGPU device is there, timed in that order on the
 * job's own gradient at the job's batch, each built and then timed alone (a
 * build overlapping another's timing made the CPU path measure ~40 % slower,
 * README "Kernels" benchmark notes): one warm-up, then repeats within a
 * per-candidate budget (250 ms); no more
 * than one timed run for a candidate whose first run is over twice the best
 * median so far (it cannot win), and none after a warm-up over `HOPELESS`
 * times it. The fastest median wins. The choice and every candidate's
 * time are cached in IndexedDB per (adapter, job), so a reload builds the
 * winner without timing. `force` (from `?backend=webgpu|cpu`) restricts the
 * candidates to one side; a forced side is never cached as the overall choice.
 * The TypeScript reference ("cpu-reference") is used only when neither WebGPU
 * nor WASM works.
 */
import type { ComputeBackend } from "./backend.ts";
import { acquireDevice, type AcquiredDevice } from "./device.ts";
import type { MatmulStrategy } from "./kernels.ts";
import { createRefBackend } from "./ref-backend.ts";
import { createResilientWgslBackend } from "./resilient.ts";
import { createWasmBackend, type WasmPaths } from "./wasm-backend.ts";
import type { Batch, JobDefinition } from "../jobs/job.ts";
import type { BackendChoiceRecord } from "../store/db.ts";

export interface SelectedBackend {
  readonly backend: ComputeBackend;
  /** Why WebGPU is not used, when it is not. */
  readonly fallbackReason: string | null;
  /** Milliseconds per gradient step of each candidate (measured now or cached). */
  readonly measuredMs: Readonly<Record<string, number>>;
  /** The choice came from the cache (no timing ran). */
  readonly cached: boolean;
  /** Where the selection's time went, ms: "store", "device", "cache", "build <kernel>", "time <kernel>". */
  readonly phases: Readonly<Record<string, number>>;
}

/** Where choices are cached; the default is IndexedDB (client/store/db.ts). */
export interface ChoiceStore {
  get(adapterKey: string, job: string): Promise<BackendChoiceRecord | null>;
  put(record: BackendChoiceRecord): Promise<void>;
}

export interface SelectOptions {
  /** Where the TF.js WASM binaries are; default: dist/ (gpu/wasm-paths.ts). */
  readonly wasmPaths?: WasmPaths | string;
  /** null disables caching. */
  readonly store?: ChoiceStore | null;
  /** Timing budget per candidate after its warm-up step, ms; default 250. */
  readonly budgetMs?: number;
  /** The CPU path's `?threads=N` (gpu/wasm-threads.ts); default the thread rule. */
  readonly wasmThreads?: number | null;
}

const GPU_STRATEGIES: readonly MatmulStrategy[] = ["vec4", "tiled"];

async function defaultStore(): Promise<ChoiceStore | null> {
  if (typeof indexedDB === "undefined") return null;
  const db = await import("../store/db.ts");
  return { get: db.getBackendChoice, put: db.putBackendChoice };
}

async function defaultWasmPaths(): Promise<WasmPaths> {
  return (await import("./wasm-paths.ts")).distWasmPaths();
}

/** A batch of `rows` random rows shaped for `job` (pixels in [0, 1), ~20 % nonzero, valid labels). */
export function syntheticBatch(job: JobDefinition, rows: number): Batch {
  const x = new Float32Array(rows * job.inputDim);
  let s = 12345;
  const next = (): number => {
    s = (s * 1103515245 + 12345) >>> 0;
    return s / 0x1_0000_0000;
  };
  for (let i = 0; i < x.length; i++) x[i] = next() < 0.2 ? next() : 0;
  const labels = new Uint32Array(rows);
  for (let r = 0; r < rows; r++) labels[r] = Math.floor(next() * job.classes) % job.classes;
  return { x, labels, size: rows };
}

/** A candidate whose warm-up step is over this many times the best median so far is not timed further. */
export const HOPELESS = 8;

/**
 * Median ms per gradient step of `backend` on `batch`: one warm-up, then ≥ 2
 * runs within `budgetMs` (at most 10), or a single run when that one is over
 * twice `beat` (the best time so far: this candidate cannot win). When the
 * warm-up alone is over `HOPELESS` × `beat`, no run follows and the warm-up's
 * time stands for the candidate (first steps are the slowest: an upper bound
 * in practice; it only has to show that the candidate loses).
 */
export async function timeBackend(backend: ComputeBackend, job: JobDefinition, batch: Batch, budgetMs: number, beat = Number.POSITIVE_INFINITY): Promise<number> {
  const params = job.init(1);
  const w0 = performance.now();
  await job.meanGradient(backend, params, batch);
  const warm = performance.now() - w0;
  if (warm > HOPELESS * beat) return warm;
  const times: number[] = [];
  const start = performance.now();
  for (;;) {
    const t0 = performance.now();
    await job.meanGradient(backend, params, batch);
    times.push(performance.now() - t0);
    if (times.length === 1 && (times[0] ?? 0) > 2 * beat) break;
    if (times.length >= 10 || (times.length >= 2 && performance.now() - start >= budgetMs)) break;
  }
  times.sort((a, b) => a - b);
  return times[Math.floor(times.length / 2)] ?? Number.POSITIVE_INFINITY;
}

function adapterKey(acq: AcquiredDevice | null): string {
  if (acq === null) return "no-webgpu";
  const i = acq.info;
  return [i.name, i.vendor, i.architecture, i.device, i.description].join("|");
}

type Candidate = { readonly kernel: string; build(): Promise<ComputeBackend> };

/**
 * Picks the backend for `job` (see the file comment). Never rejects for lack
 * of WebGPU or WASM: the reference backend is the last resort.
 */
export async function selectBackend(
  job: JobDefinition,
  force: "webgpu" | "cpu" | null,
  maxBatch: number,
  options: SelectOptions = {},
): Promise<SelectedBackend> {
  const rows = Math.max(1, Math.min(maxBatch, job.batch));
  const phases: Record<string, number> = {};
  let mark = performance.now();
  const phase = (name: string): void => {
    const now = performance.now();
    phases[name] = (phases[name] ?? 0) + (now - mark);
    mark = now;
  };
  const store = options.store === undefined ? await defaultStore().catch(() => null) : options.store;
  phase("store");
  const acq = force === "cpu" ? null : await acquireDevice({ label: "grid-worker" });
  phase("device");
  const device = acq?.ok === true ? acq : null;
  let fallbackReason: string | null = force === "cpu" ? "CPU forced by ?backend=cpu" : acq?.ok === false ? acq.reason : null;

  const candidates: Candidate[] = [];
  if (force !== "webgpu" || device === null) {
    candidates.push({
      kernel: "wasm-xnnpack",
      build: async () => createWasmBackend(options.wasmPaths ?? (await defaultWasmPaths()), Math.max(maxBatch, 1), { threads: options.wasmThreads ?? null }),
    });
  }
  if (device !== null) {
    for (const strategy of GPU_STRATEGIES) {
      candidates.push({
        kernel: `wgsl-${strategy}`,
        build: () => createResilientWgslBackend(device.device, device.info.name, device.info.isFallback, strategy, Math.max(maxBatch, 1)),
      });
    }
  }

  const key = adapterKey(device);
  const cachedRecord = store ? await store.get(key, job.name).catch(() => null) : null;
  phase("cache");
  // A cached overall winner, or (when one side is forced) the best cached time on that side.
  if (cachedRecord !== null) {
    const allowed = candidates.filter((c) => cachedRecord.measuredMs[c.kernel] !== undefined);
    allowed.sort((a, b) => (cachedRecord.measuredMs[a.kernel] ?? Infinity) - (cachedRecord.measuredMs[b.kernel] ?? Infinity));
    const pick = allowed[0];
    if (pick !== undefined) {
      try {
        const backend = await pick.build();
        phase(`build ${pick.kernel}`);
        return { backend, fallbackReason: backend.backend === "cpu" ? (fallbackReason ?? `measured faster: ${pick.kernel}`) : fallbackReason, measuredMs: cachedRecord.measuredMs, cached: true, phases };
      } catch {
        /* measure again below */
      }
    }
  }

  const batch = syntheticBatch(job, rows);
  const measuredMs: Record<string, number> = {};
  const failures: string[] = [];
  let best: { backend: ComputeBackend; ms: number } | null = null;
  for (const c of candidates) {
    let backend: ComputeBackend | null = null;
    try {
      backend = await c.build();
      phase(`build ${c.kernel}`);
      const ms = await timeBackend(backend, job, batch, options.budgetMs ?? 250, best?.ms);
      phase(`time ${c.kernel}`);
      measuredMs[c.kernel] = ms;
      if (best === null || ms < best.ms) {
        best?.backend.dispose();
        best = { backend, ms };
        backend = null;
      }
    } catch (e) {
      failures.push(`${c.kernel}: ${e instanceof Error ? e.message : String(e)}`);
    } finally {
      backend?.dispose();
    }
  }
  if (best === null) {
    return {
      backend: createRefBackend(Math.max(maxBatch, 1)),
      fallbackReason: `no fast backend works (${failures.join("; ") || "none tried"})`,
      measuredMs,
      cached: false,
      phases,
    };
  }
  if (best.backend.backend === "cpu" && fallbackReason === null) {
    fallbackReason = `the CPU path measured faster (${Object.entries(measuredMs).map(([k, v]) => `${k} ${v.toFixed(1)} ms`).join(", ")})`;
  }
  if (store && force === null) {
    await store
      .put({ adapterKey: key, job: job.name, kernel: best.backend.kernel, measuredMs, rows, storedAt: Date.now() })
      .catch(() => undefined);
  }
  return { backend: best.backend, fallbackReason, measuredMs, cached: false, phases };
}
