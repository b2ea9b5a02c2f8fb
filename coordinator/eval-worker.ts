/**
 * Test-set evaluation in a worker thread, so that evaluating a replica on
 * thousands of images never holds up the coordinator's event loop (clock
 * reports, acks, views, shard downloads).
 *
 * The thread gets the job's name and the test set once (workerData); then one
 * request at a time: `{ clock, params }` in, `{ clock, name, value, ms }` or
 * `{ clock, error }` out.
 */
import { parentPort, workerData } from "node:worker_threads";
import { JOBS } from "../client/jobs/registry.ts";
import { timed } from "./evaluator.ts";

interface Setup {
  readonly job: string;
  readonly pixels: Uint8Array;
  readonly labels: Uint8Array;
  readonly count: number;
}

const setup = workerData as Setup;
const job = JOBS[setup.job];

parentPort?.on("message", (req: { clock: number; params: Float32Array }) => {
  if (!job) {
    parentPort?.postMessage({ clock: req.clock, error: `unknown job ${setup.job}` });
    return;
  }
  try {
    const { value: m, ms, cpuMs } = timed(() => job.evaluate(req.params, setup.pixels, setup.labels, setup.count));
    parentPort?.postMessage({ clock: req.clock, name: m.name, value: m.value, ms, ...(cpuMs !== undefined ? { cpuMs } : {}) });
  } catch (e) {
    parentPort?.postMessage({ clock: req.clock, error: e instanceof Error ? e.message : String(e) });
  }
});
