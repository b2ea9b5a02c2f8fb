/**
 * What a job's gradient step needs from a compute backend. One implementation
 * runs WGSL kernels on a WebGPU device; the other is the TypeScript CPU
 * reference (the test oracle, and the fallback for pages without WebGPU).
 *
 * Parameter layout of a dense softmax-regression layer with `inDim` inputs and
 * `outDim` classes: `W` row-major `[inDim][outDim]`, then `b` `[outDim]`.
 */
export interface StepResult {
  /** The delta the optimizer applies, `-lr * grad`, in the parameter layout. */
  readonly update: Float32Array;
  /** Mean softmax cross-entropy loss over the minibatch, before the step. */
  readonly loss: number;
}

export interface BackendInfo {
  readonly backend: "webgpu" | "cpu";
  /** Kernel variant, e.g. "wgsl-naive" or "cpu-reference". */
  readonly kernel: string;
  /** Adapter description, e.g. "swiftshader"; "cpu" for the CPU path. */
  readonly adapter: string;
}

export interface SoftmaxBackend extends BackendInfo {
  /**
   * One SGD step's update for softmax regression.
   * @param params  `inDim * outDim + outDim` floats (layout above); not modified.
   * @param x       `batch * inDim` inputs, row-major.
   * @param labels  `batch` class indices in `[0, outDim)`.
   */
  softmaxStep(
    params: Float32Array,
    x: Float32Array,
    labels: Uint32Array,
    batch: number,
    lr: number,
  ): Promise<StepResult>;
  dispose(): void;
}
