/**
 * The page side of client/cpu-probe-worker.ts: `window.gridCpuProbe` (on the
 * self-test page) starts one probe worker per call of `start` and forwards
 * the other calls to the last one started. Serves test/e2e/wasm-threads.spec.ts
 * and the kernels benchmark (thread rows).
 */
import * as Comlink from "comlink";
import type { CpuProbeApi, ProbeStart } from "./cpu-probe-worker.ts";

export interface CpuProbe {
  start(threads: number | null, boundMs?: number): Promise<ProbeStart>;
  gradient(jobName: string, rows: number): Promise<Float32Array>;
  train(jobName: string, rows: number, steps: number): Promise<number>;
  matmul(m: number, n: number, k: number, reps: number): Promise<number>;
  stop(): void;
}

export function cpuProbe(): CpuProbe {
  let worker: Worker | null = null;
  let api: Comlink.Remote<CpuProbeApi> | null = null;
  const remote = (): Comlink.Remote<CpuProbeApi> => {
    if (api === null) throw new Error("start the probe first");
    return api;
  };
  return {
    start(threads, boundMs) {
      worker?.terminate();
      worker = new Worker(new URL("./cpu-probe-worker.ts", import.meta.url), { type: "module" });
      api = Comlink.wrap<CpuProbeApi>(worker);
      return api.start(threads, boundMs);
    },
    gradient: (jobName, rows) => remote().gradient(jobName, rows),
    train: (jobName, rows, steps) => remote().train(jobName, rows, steps),
    matmul: (m, n, k, reps) => remote().matmul(m, n, k, reps),
    stop() {
      worker?.terminate();
      worker = null;
      api = null;
    },
  };
}

declare global {
  interface Window {
    gridCpuProbe?: CpuProbe;
  }
}
