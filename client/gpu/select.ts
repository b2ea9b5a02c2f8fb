/**
 * Chooses the compute backend a volunteer trains with: WebGPU kernels when an
 * adapter is there and works, else the CPU path. `force` comes from
 * `?backend=webgpu|cpu`.
 */
import { acquireDevice } from "./device.ts";
import type { SoftmaxBackend } from "./backend.ts";
import { createGpuSoftmaxBackend } from "./softmax.ts";
import { createCpuSoftmaxBackend } from "./reference.ts";
import type { JobDefinition } from "../jobs/job.ts";

export interface SelectedBackend {
  readonly backend: SoftmaxBackend;
  /** Why WebGPU is not used, when it is not. */
  readonly fallbackReason: string | null;
}

export async function selectBackend(job: JobDefinition, force: "webgpu" | "cpu" | null, maxBatch: number): Promise<SelectedBackend> {
  if (force === "cpu") {
    return { backend: createCpuSoftmaxBackend(job.inputDim, job.classes), fallbackReason: "CPU forced by ?backend=cpu" };
  }
  const acq = await acquireDevice({ label: "grid-worker" });
  if (!acq.ok) return { backend: createCpuSoftmaxBackend(job.inputDim, job.classes), fallbackReason: acq.reason };
  try {
    const backend = await createGpuSoftmaxBackend(acq.device, acq.info.name, job.inputDim, job.classes, maxBatch);
    return { backend, fallbackReason: null };
  } catch (e) {
    return {
      backend: createCpuSoftmaxBackend(job.inputDim, job.classes),
      fallbackReason: `WebGPU kernels failed: ${e instanceof Error ? e.message : String(e)}`,
    };
  }
}
