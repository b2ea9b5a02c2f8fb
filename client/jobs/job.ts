/**
 * A job, declared in one file under client/jobs/: its parameters and their
 * initialization, its gradient written against the kernel library's ops
 * (gpu/backend.ts `Session`), its optimizer and its test metric. `defineJob`
 * turns that declaration into the `JobDefinition` the worker and the
 * coordinator use; the grid distributes it unchanged.
 *
 * Job files import only types from the GPU layer (and optimizers.ts), so the
 * Node coordinator imports them to evaluate the same metric the pages train for.
 */
import { OutOfMemoryError, type ComputeBackend, type Session, type StepResult } from "../gpu/backend.ts";
import type { Optimizer, OptimizerState } from "./optimizers.ts";

export type { StepResult } from "../gpu/backend.ts";

export interface Batch {
  /** `size * inputDim` floats in [0, 1] (MNIST pixels / 255). */
  readonly x: Float32Array;
  /** `size` class indices. */
  readonly labels: Uint32Array;
  readonly size: number;
}

export interface Metric {
  /** "accuracy" (classification) or "r2" (regression: 1 − SSE/SST); higher is better for both. */
  readonly name: "accuracy" | "r2";
  readonly value: number;
  readonly loss: number;
}

/** A mean gradient in the parameter layout and the mean loss, over some rows. */
export interface Gradient {
  readonly grad: Float32Array;
  readonly loss: number;
}

/** What a job file declares. */
export interface JobSpec {
  readonly name: string;
  /** Where the training data comes from; the coordinator serves MNIST shards. */
  readonly dataset: "mnist";
  readonly inputDim: number;
  readonly classes: number;
  readonly parameters: number;
  /** Default minibatch size per step. */
  readonly batch: number;
  readonly learningRate: number;
  /** Default test metric value at which the job is done. */
  readonly targetAccuracy: number;
  readonly optimizer: Optimizer;
  /** Initial parameters; every replica starts from the same ones (a pure function of `seed`). */
  init(seed: number): Float32Array;
  /**
   * The mean gradient and mean loss of rows `[0, batch.size)` of `batch` at
   * `params`, computed with the ops of session `s`; ends with `s.read(...)`.
   * Must be a pure function of (params, batch).
   */
  gradient(s: Session, params: Float32Array, batch: Batch): Promise<Gradient>;
  /** Test metric over `count` images (uint8 pixels, one label byte each). */
  evaluate(params: Float32Array, pixels: Uint8Array, labels: Uint8Array, count: number): Metric;
  /**
   * The matrix products of one gradient at `rows` rows, `[m, n, k]` each,
   * for benchmarks and backend timing (FLOPs = 2·m·n·k).
   */
  matmulShapes(rows: number): readonly (readonly [number, number, number])[];
}

export interface JobDefinition extends JobSpec {
  /**
   * One step: the optimizer's update from the mean gradient of `batch` (split
   * into chunks of at most `backend.maxRows` rows; their gradients are
   * averaged weighted by rows, so the result does not depend on the split).
   * On an out-of-memory error the backend's `maxRows` is halved and the chunk
   * retried. The optimizer (`optimizer`, default the job's own) runs on the
   * backend's kernels (see optimizers.ts). Its state (momentum, Adam moments)
   * lives per backend object and optimizer, i.e. per worker.
   */
  step(backend: ComputeBackend, params: Float32Array, batch: Batch, lr: number, optimizer?: Optimizer): Promise<StepResult>;
  /** The mean gradient of `batch` alone (chunked like `step`), without touching optimizer state. */
  meanGradient(backend: ComputeBackend, params: Float32Array, batch: Batch): Promise<Gradient>;
}

/** Rows `[from, from + n)` of `batch`, without copying. */
export function sliceBatch(batch: Batch, inputDim: number, from: number, n: number): Batch {
  return {
    x: batch.x.subarray(from * inputDim, (from + n) * inputDim),
    labels: batch.labels.subarray(from, from + n),
    size: n,
  };
}

/** Builds a job from its declaration (see `JobDefinition` for the contracts `defineJob` adds). */
export function defineJob(spec: JobSpec): JobDefinition {
  const states = new WeakMap<ComputeBackend, Map<string, OptimizerState>>();
  async function meanGradient(backend: ComputeBackend, params: Float32Array, batch: Batch): Promise<Gradient> {
    if (params.length !== spec.parameters) throw new Error(`${spec.name}: params has ${params.length}, expected ${spec.parameters}`);
    if (batch.size < 1 || batch.x.length !== batch.size * spec.inputDim || batch.labels.length !== batch.size) {
      throw new Error(`${spec.name}: malformed batch of ${batch.size} rows`);
    }
    const total = new Float32Array(spec.parameters);
    let loss = 0;
    let from = 0;
    while (from < batch.size) {
      const n = Math.min(backend.maxRows, batch.size - from);
      let g: Gradient;
      try {
        g = await backend.session((s) => spec.gradient(s, params, sliceBatch(batch, spec.inputDim, from, n)));
      } catch (e) {
        if (e instanceof OutOfMemoryError && backend.shrink()) continue;
        throw e;
      }
      const w = n / batch.size;
      for (let i = 0; i < total.length; i++) total[i] = (total[i] ?? 0) + w * (g.grad[i] ?? 0);
      loss += w * g.loss;
      from += n;
    }
    return { grad: total, loss };
  }
  return {
    ...spec,
    meanGradient,
    async step(backend, params, batch, lr, optimizer = spec.optimizer) {
      const { grad, loss } = await meanGradient(backend, params, batch);
      let byName = states.get(backend);
      if (byName === undefined) states.set(backend, (byName = new Map()));
      let state = byName.get(optimizer.name);
      if (state === undefined) byName.set(optimizer.name, (state = optimizer.createState(spec.parameters)));
      return { update: await optimizer.apply(backend, grad, lr, state), loss };
    },
  };
}
