/**
 * A Web Worker that runs the CPU path (TF.js WASM) as the trainer worker
 * does, for the self-test page's thread checks and the kernels benchmark
 * (client/cpu-probe.ts drives it). In its own realm, so each probe starts
 * TF.js with its own build and thread count.
 */
import * as Comlink from "comlink";
import type { ComputeBackend } from "./gpu/backend.ts";
import { syntheticBatch } from "./gpu/select.ts";
import { createWasmBackend, wasmStartInfo } from "./gpu/wasm-backend.ts";
import { distWasmPaths } from "./gpu/wasm-paths.ts";
import { jobFor } from "./jobs/registry.ts";
import type { JobDefinition } from "./jobs/job.ts";
import { noiseInputs } from "./jobs/random.ts";

export interface ProbeStart {
  readonly isolated: boolean;
  readonly cores: number;
  readonly threaded: boolean;
  readonly threads: number;
  readonly adapter: string;
  readonly why: string;
  readonly note: string | null;
  readonly ms: number;
}

let backend: ComputeBackend | null = null;

function job(name: string): JobDefinition {
  const j = jobFor(name);
  if (!j) throw new Error(`unknown job ${name}`);
  return j;
}

function started(): ComputeBackend {
  if (backend === null) throw new Error("probe not started");
  return backend;
}

const api = {
  /** Start the CPU path (`threads`: `?threads=` or null for the rule; `boundMs`: the threaded start's bound). */
  async start(threads: number | null, boundMs?: number): Promise<ProbeStart> {
    backend ??= await createWasmBackend(distWasmPaths(), 4096, { threads, ...(boundMs !== undefined ? { boundMs } : {}) });
    const info = wasmStartInfo();
    if (info === null) throw new Error("TF.js WASM did not report its start");
    return {
      isolated: self.crossOriginIsolated,
      cores: navigator.hardwareConcurrency,
      threaded: info.threaded,
      threads: info.threads,
      adapter: backend.adapter,
      why: info.plan.why,
      note: info.note,
      ms: info.ms,
    };
  },
  /** The job's mean gradient at its seed-1 initial parameters on `rows` synthetic rows. */
  async gradient(jobName: string, rows: number): Promise<Float32Array> {
    const j = job(jobName);
    const { grad } = await j.meanGradient(started(), j.init(1), syntheticBatch(j, rows));
    return grad;
  },
  /** Examples/s of `steps` training steps (job.step into one update buffer, added to the parameters), after one warm-up. */
  async train(jobName: string, rows: number, steps: number): Promise<number> {
    const j = job(jobName);
    const b = started();
    const params = j.init(1);
    const batch = syntheticBatch(j, rows);
    const buffer = new Float32Array(params.length);
    const one = async (): Promise<void> => {
      const { update } = await j.step(b, params, batch, j.learningRate, j.optimizer, buffer);
      for (let i = 0; i < params.length; i++) params[i] = params[i]! + update[i]!;
    };
    await one();
    const t0 = performance.now();
    for (let i = 0; i < steps; i++) await one();
    return (steps * rows * 1000) / (performance.now() - t0);
  },
  /** GFLOP/s of `reps` products `m×k · k×n` in one session (inputs uploaded once, the last product read), after a warm-up. */
  async matmul(m: number, n: number, k: number, reps: number): Promise<number> {
    const b = started();
    const a = noiseInputs(m * k, 1);
    const c = noiseInputs(k * n, 2);
    const run = (r: number): Promise<unknown> =>
      b.session((s) => {
        const ta = s.upload(a, m, k);
        const tc = s.upload(c, k, n);
        let out = s.matmul(ta, tc);
        for (let i = 1; i < r; i++) out = s.matmul(ta, tc);
        return s.read(out);
      });
    await run(1);
    const t0 = performance.now();
    await run(reps);
    return (2 * m * n * k * reps) / ((performance.now() - t0) * 1e6);
  },
};

export type CpuProbeApi = typeof api;

Comlink.expose(api);
