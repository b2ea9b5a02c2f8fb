/**
 * Softmax regression on WebGPU: the `SoftmaxBackend` that runs the WGSL
 * kernels of `shaders/`, and a test-only probe that runs one kernel at a time
 * on given inputs (the self-test page compares both against reference.ts).
 *
 * Contract:
 * - Buffers are allocated once, for `maxBatch` rows; a step writes its inputs
 *   with `queue.writeBuffer`, encodes every kernel in one command encoder and
 *   reads the update (dW, then db, the backend.ts layout) and the mean loss
 *   back with a single `mapAsync`.
 * - Inputs are validated before anything is written: a shape mismatch throws
 *   (rejects) with an Error that names it.
 * - Calls are serialized (the buffers are shared); after `dispose()` they reject.
 * - A validation error in the submitted work rejects the call instead of
 *   returning stale bytes; a lost device rejects through `mapAsync`.
 */
import type { SoftmaxBackend, StepResult } from "./backend.ts";
import { workgroupSize1D } from "./device.ts";
import { pipelineCacheFor } from "./pipelines.ts";
import { softmaxParamCount, validateStepInputs } from "./reference.ts";
import linearForwardWgsl from "../../shaders/linear_forward.wgsl?raw";
import softmaxXentGradWgsl from "../../shaders/softmax_xent_grad.wgsl?raw";
import weightGradWgsl from "../../shaders/weight_grad.wgsl?raw";
import biasGradWgsl from "../../shaders/bias_grad.wgsl?raw";

/** Kernel variant reported in `BackendInfo.kernel`. */
export const SOFTMAX_KERNEL_NAME = "wgsl-naive";

export interface GpuSoftmaxOptions {
  /** Invocations per workgroup (the `WG` override); default 64, clamped to the device limits. */
  readonly workgroupSize?: number;
}

/** Single-kernel runs on given inputs, for tests. Outputs use the kernels' layouts. */
export interface SoftmaxKernelProbe {
  readonly workgroupSize: number;
  /** `logits = X · W + b`, `batch × outDim`. */
  linearForward(params: Float32Array, x: Float32Array, batch: number): Promise<Float32Array>;
  /** Per row: `grad = softmax − onehot`, `loss = −log p[label]`. */
  softmaxXentGrad(
    logits: Float32Array,
    labels: Uint32Array,
    batch: number,
  ): Promise<{ grad: Float32Array; loss: Float32Array }>;
  /** `dW = −(lr / batch) · Xᵀ · G`, `inDim × outDim`. */
  weightGrad(x: Float32Array, grad: Float32Array, batch: number, lr: number): Promise<Float32Array>;
  /** `db = −(lr / batch) · Σ_rows G`, `outDim`. */
  biasGrad(grad: Float32Array, batch: number, lr: number): Promise<Float32Array>;
  /** Mean of the first `batch` per-row losses (the column-sum kernel with one column). */
  meanLoss(rowLoss: Float32Array, batch: number): Promise<number>;
  dispose(): void;
}

const F32 = 4;

function checkPositiveInteger(name: string, value: number): void {
  if (!Number.isInteger(value) || value < 1) throw new Error(`${name} must be a positive integer, got ${value}`);
}

function checkLength(name: string, array: ArrayLike<number>, expected: number): void {
  if (array.length !== expected) throw new Error(`${name} has ${array.length} elements, expected ${expected}`);
}

/** A slice of a storage buffer to read back, in floats. */
interface ReadRange {
  readonly buffer: GPUBuffer;
  readonly offset: number;
  readonly count: number;
}

type Stage = "forward" | "xent" | "weight" | "bias" | "loss";

/** Buffers, pipelines and bind groups of one `inDim → outDim` layer, shared by the backend and the probe. */
class SoftmaxKernels {
  readonly paramCount: number;
  private readonly dims: GPUBuffer;
  private readonly biasSum: GPUBuffer;
  private readonly lossSum: GPUBuffer;
  readonly x: GPUBuffer;
  readonly params: GPUBuffer;
  readonly labels: GPUBuffer;
  readonly logits: GPUBuffer;
  readonly grad: GPUBuffer;
  readonly rowLoss: GPUBuffer;
  /** dW (inDim·outDim), db (outDim), mean loss (1). */
  readonly out: GPUBuffer;
  private readonly staging: GPUBuffer;
  private readonly buffers: GPUBuffer[];
  private readonly passes: Record<Stage, { pipeline: GPUComputePipeline; bindGroup: GPUBindGroup; workgroups: () => number }>;
  private batch = 0;
  private queueTail: Promise<unknown> = Promise.resolve();
  private disposed = false;

  private constructor(
    readonly device: GPUDevice,
    readonly inDim: number,
    readonly outDim: number,
    readonly maxBatch: number,
    readonly workgroupSize: number,
    pipelines: Record<"forward" | "xent" | "weight" | "colsum", GPUComputePipeline>,
  ) {
    this.paramCount = softmaxParamCount(inDim, outDim);
    const storage = GPUBufferUsage.STORAGE | GPUBufferUsage.COPY_DST | GPUBufferUsage.COPY_SRC;
    const uniform = GPUBufferUsage.UNIFORM | GPUBufferUsage.COPY_DST;
    const make = (label: string, floats: number, usage: number): GPUBuffer =>
      device.createBuffer({ label: `softmax ${label}`, size: Math.max(1, floats) * F32, usage });
    this.dims = make("dims", 4, uniform);
    this.biasSum = make("bias colsum", 4, uniform);
    this.lossSum = make("loss colsum", 4, uniform);
    this.x = make("x", maxBatch * inDim, storage);
    this.params = make("params", this.paramCount, storage);
    this.labels = make("labels", maxBatch, storage);
    this.logits = make("logits", maxBatch * outDim, storage);
    this.grad = make("grad", maxBatch * outDim, storage);
    this.rowLoss = make("row loss", maxBatch, storage);
    this.out = make("out", this.paramCount + 1, storage);
    const stagingFloats = Math.max(this.paramCount + 1, maxBatch * outDim + maxBatch);
    this.staging = make("staging", stagingFloats, GPUBufferUsage.MAP_READ | GPUBufferUsage.COPY_DST);
    this.buffers = [
      this.dims, this.biasSum, this.lossSum, this.x, this.params, this.labels,
      this.logits, this.grad, this.rowLoss, this.out, this.staging,
    ];

    const bind = (pipeline: GPUComputePipeline, label: string, resources: GPUBuffer[]): GPUBindGroup =>
      device.createBindGroup({
        label: `softmax ${label}`,
        layout: pipeline.getBindGroupLayout(0),
        entries: resources.map((buffer, binding) => ({ binding, resource: { buffer } })),
      });
    const wg = workgroupSize;
    const groups = (invocations: number): number => Math.ceil(invocations / wg);
    this.passes = {
      forward: {
        pipeline: pipelines.forward,
        bindGroup: bind(pipelines.forward, "forward", [this.dims, this.x, this.params, this.logits]),
        workgroups: () => groups(this.batch * outDim),
      },
      xent: {
        pipeline: pipelines.xent,
        bindGroup: bind(pipelines.xent, "xent", [this.dims, this.logits, this.labels, this.grad, this.rowLoss]),
        workgroups: () => groups(this.batch),
      },
      weight: {
        pipeline: pipelines.weight,
        bindGroup: bind(pipelines.weight, "weight", [this.dims, this.x, this.grad, this.out]),
        workgroups: () => groups(inDim * outDim),
      },
      bias: {
        pipeline: pipelines.colsum,
        bindGroup: bind(pipelines.colsum, "bias", [this.biasSum, this.grad, this.out]),
        workgroups: () => outDim,
      },
      loss: {
        pipeline: pipelines.colsum,
        bindGroup: bind(pipelines.colsum, "loss", [this.lossSum, this.rowLoss, this.out]),
        workgroups: () => 1,
      },
    };
  }

  static async create(
    device: GPUDevice,
    inDim: number,
    outDim: number,
    maxBatch: number,
    options: GpuSoftmaxOptions,
  ): Promise<SoftmaxKernels> {
    checkPositiveInteger("inDim", inDim);
    checkPositiveInteger("outDim", outDim);
    checkPositiveInteger("maxBatch", maxBatch);
    const wg = workgroupSize1D(device, options.workgroupSize ?? 64);
    const limit = device.limits.maxStorageBufferBindingSize;
    const largest = Math.max(maxBatch * inDim, maxBatch * outDim, softmaxParamCount(inDim, outDim) + 1) * F32;
    if (largest > limit || largest > device.limits.maxBufferSize) {
      throw new Error(
        `softmax ${inDim}→${outDim} with maxBatch ${maxBatch} needs a ${largest}-byte buffer; ` +
          `the device allows ${Math.min(limit, device.limits.maxBufferSize)}`,
      );
    }
    const cache = pipelineCacheFor(device);
    const constants = { WG: wg };
    const [forward, xent, weight, colsum] = await Promise.all([
      cache.get({ code: linearForwardWgsl, constants, label: "linear_forward" }),
      cache.get({ code: softmaxXentGradWgsl, constants, label: "softmax_xent_grad" }),
      cache.get({ code: weightGradWgsl, constants, label: "weight_grad" }),
      cache.get({ code: biasGradWgsl, constants, label: "bias_grad" }),
    ]);
    device.pushErrorScope("out-of-memory");
    device.pushErrorScope("validation");
    const kernels = new SoftmaxKernels(device, inDim, outDim, maxBatch, wg, { forward, xent, weight, colsum });
    const validation = await device.popErrorScope();
    const memory = await device.popErrorScope();
    const failure = validation ?? memory;
    if (failure !== null) {
      kernels.destroy();
      throw new Error(`creating softmax buffers failed: ${failure.message}`);
    }
    return kernels;
  }

  /** Runs `task` after every earlier one has settled; rejects after `destroy()`. */
  exclusive<T>(task: () => Promise<T>): Promise<T> {
    const run = this.queueTail.then(() => {
      if (this.disposed) throw new Error("GPU softmax backend is disposed");
      return task();
    });
    this.queueTail = run.catch(() => undefined);
    return run;
  }

  /** Writes the shape uniforms for a batch of `batch` rows and learning rate `lr`. */
  setBatch(batch: number, lr: number): void {
    checkPositiveInteger("batch", batch);
    if (batch > this.maxBatch) throw new Error(`batch ${batch} exceeds the backend's maxBatch ${this.maxBatch}`);
    if (!Number.isFinite(lr)) throw new Error(`lr must be finite, got ${lr}`);
    this.batch = batch;
    const scale = -lr / batch;
    const queue = this.device.queue;
    queue.writeBuffer(this.dims, 0, uniformWords(batch, this.inDim, this.outDim, scale));
    queue.writeBuffer(this.biasSum, 0, uniformWords(batch, this.outDim, this.inDim * this.outDim, scale));
    queue.writeBuffer(this.lossSum, 0, uniformWords(batch, 1, this.paramCount, 1 / batch));
  }

  write(buffer: GPUBuffer, data: Float32Array | Uint32Array): void {
    this.device.queue.writeBuffer(buffer, 0, data.buffer, data.byteOffset, data.byteLength);
  }

  /**
   * Encodes `stages` in one compute pass, copies `reads` into the staging
   * buffer back to back, submits, and returns a copy of each read.
   */
  async run(stages: readonly Stage[], reads: readonly ReadRange[]): Promise<Float32Array[]> {
    const device = this.device;
    device.pushErrorScope("validation");
    const encoder = device.createCommandEncoder({ label: "softmax step" });
    const pass = encoder.beginComputePass({ label: "softmax kernels" });
    for (const stage of stages) {
      const p = this.passes[stage];
      pass.setPipeline(p.pipeline);
      pass.setBindGroup(0, p.bindGroup);
      const [gx, gy] = grid(p.workgroups(), device.limits.maxComputeWorkgroupsPerDimension);
      pass.dispatchWorkgroups(gx, gy);
    }
    pass.end();
    let offset = 0;
    for (const r of reads) {
      encoder.copyBufferToBuffer(r.buffer, r.offset * F32, this.staging, offset * F32, r.count * F32);
      offset += r.count;
    }
    device.queue.submit([encoder.finish()]);
    const scope = device.popErrorScope();
    const bytes = offset * F32;
    await this.staging.mapAsync(GPUMapMode.READ, 0, bytes);
    try {
      const error = await scope;
      if (error !== null) throw new Error(`softmax kernels failed validation: ${error.message}`);
      const all = new Float32Array(this.staging.getMappedRange(0, bytes));
      const results: Float32Array[] = [];
      let at = 0;
      for (const r of reads) {
        results.push(all.slice(at, at + r.count));
        at += r.count;
      }
      return results;
    } finally {
      this.staging.unmap();
    }
  }

  destroy(): void {
    this.disposed = true;
    for (const buffer of this.buffers) buffer.destroy();
  }
}

/** `[batch, a, b]` as u32 then `scale` as f32: the 16-byte uniform structs of the shaders. */
function uniformWords(a: number, b: number, c: number, scale: number): ArrayBuffer {
  const words = new ArrayBuffer(16);
  const view = new DataView(words);
  view.setUint32(0, a, true);
  view.setUint32(4, b, true);
  view.setUint32(8, c, true);
  view.setFloat32(12, scale, true);
  return words;
}

/** Splits `workgroups` over x (up to `maxPerDim`) and y; shaders number them `x + y · nx`. */
function grid(workgroups: number, maxPerDim: number): [number, number] {
  if (workgroups <= maxPerDim) return [workgroups, 1];
  const y = Math.ceil(workgroups / maxPerDim);
  if (y > maxPerDim) throw new Error(`${workgroups} workgroups exceed the device's dispatch limit`);
  return [Math.ceil(workgroups / y), y];
}

/**
 * The WebGPU `SoftmaxBackend` for an `inDim → outDim` layer and batches of up
 * to `maxBatch` rows. Rejects if the shapes do not fit the device or a kernel
 * does not compile.
 */
export async function createGpuSoftmaxBackend(
  device: GPUDevice,
  adapterName: string,
  inDim: number,
  outDim: number,
  maxBatch: number,
  options: GpuSoftmaxOptions = {},
): Promise<SoftmaxBackend> {
  const k = await SoftmaxKernels.create(device, inDim, outDim, maxBatch, options);
  const steps: readonly Stage[] = ["forward", "xent", "weight", "bias", "loss"];
  return {
    backend: "webgpu",
    kernel: SOFTMAX_KERNEL_NAME,
    adapter: adapterName,
    softmaxStep(params, x, labels, batch, lr): Promise<StepResult> {
      return k.exclusive(async () => {
        validateStepInputs(params, x, labels, batch, lr, inDim, outDim, maxBatch);
        k.setBatch(batch, lr);
        k.write(k.params, params);
        k.write(k.x, x);
        k.write(k.labels, labels);
        const [out] = await k.run(steps, [{ buffer: k.out, offset: 0, count: k.paramCount + 1 }]);
        if (out === undefined) throw new Error("softmax step read nothing back");
        return { update: out.slice(0, k.paramCount), loss: out[k.paramCount] ?? Number.NaN };
      });
    },
    dispose() {
      k.destroy();
    },
  };
}

/** Test-only: runs the kernels one at a time on given inputs (see `SoftmaxKernelProbe`). */
export async function createGpuSoftmaxProbe(
  device: GPUDevice,
  inDim: number,
  outDim: number,
  maxBatch: number,
  options: GpuSoftmaxOptions = {},
): Promise<SoftmaxKernelProbe> {
  const k = await SoftmaxKernels.create(device, inDim, outDim, maxBatch, options);
  const one = async (stage: Stage, read: ReadRange): Promise<Float32Array> => {
    const [result] = await k.run([stage], [read]);
    if (result === undefined) throw new Error(`${stage} read nothing back`);
    return result;
  };
  return {
    workgroupSize: k.workgroupSize,
    linearForward(params, x, batch) {
      return k.exclusive(() => {
        k.setBatch(batch, 0);
        checkLength("params", params, k.paramCount);
        checkLength("x", x, batch * inDim);
        k.write(k.params, params);
        k.write(k.x, x);
        return one("forward", { buffer: k.logits, offset: 0, count: batch * outDim });
      });
    },
    softmaxXentGrad(logits, labels, batch) {
      return k.exclusive(async () => {
        k.setBatch(batch, 0);
        checkLength("logits", logits, batch * outDim);
        checkLength("labels", labels, batch);
        if (labels.some((label) => label >= outDim)) throw new Error(`a label is outside [0, ${outDim})`);
        k.write(k.logits, logits);
        k.write(k.labels, labels);
        const [grad, loss] = await k.run(["xent"], [
          { buffer: k.grad, offset: 0, count: batch * outDim },
          { buffer: k.rowLoss, offset: 0, count: batch },
        ]);
        if (grad === undefined || loss === undefined) throw new Error("xent read nothing back");
        return { grad, loss };
      });
    },
    weightGrad(x, grad, batch, lr) {
      return k.exclusive(() => {
        k.setBatch(batch, lr);
        checkLength("x", x, batch * inDim);
        checkLength("grad", grad, batch * outDim);
        k.write(k.x, x);
        k.write(k.grad, grad);
        return one("weight", { buffer: k.out, offset: 0, count: inDim * outDim });
      });
    },
    biasGrad(grad, batch, lr) {
      return k.exclusive(() => {
        k.setBatch(batch, lr);
        checkLength("grad", grad, batch * outDim);
        k.write(k.grad, grad);
        return one("bias", { buffer: k.out, offset: inDim * outDim, count: outDim });
      });
    },
    meanLoss(rowLoss, batch) {
      return k.exclusive(async () => {
        k.setBatch(batch, 0);
        checkLength("rowLoss", rowLoss, batch);
        k.write(k.rowLoss, rowLoss);
        const mean = await one("loss", { buffer: k.out, offset: k.paramCount, count: 1 });
        return mean[0] ?? Number.NaN;
      });
    },
    dispose() {
      k.destroy();
    },
  };
}
