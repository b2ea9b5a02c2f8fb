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
import { OutOfMemoryError, type ComputeBackend, type Session, type StepResult, type Tensor } from "../gpu/backend.ts";
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
  /**
   * "accuracy" (classification), "r2" (regression: 1 − SSE/SST) or
   * "noise/rmse" (job mf-dp: the noise floor over the test RMSE); higher is better for all.
   */
  readonly name: "accuracy" | "r2" | "noise/rmse";
  readonly value: number;
  readonly loss: number;
}

/** A mean gradient in the parameter layout and the mean loss, over some rows. */
export interface Gradient {
  readonly grad: Float32Array;
  readonly loss: number;
}

/**
 * What a job's `gradient` returns: tensors of the session, not yet read.
 * `grads` are the gradient's blocks in the order of the parameter layout
 * (block i starts where block i − 1 ends; their sizes add up to
 * `parameters`); `loss` is the mean loss, a 1×1 tensor. The step reads them
 * (or runs the optimizer on them first, in the same session).
 */
export interface GradientTensors {
  readonly grads: readonly Tensor[];
  readonly loss: Tensor;
}

/** What a job file declares. */
export interface JobSpec {
  readonly name: string;
  /** Where the training data comes from: MNIST shards, or the rating records of job mf-dp (mf-dp.ts). */
  readonly dataset: "mnist" | "mf-ratings";
  readonly inputDim: number;
  readonly classes: number;
  readonly parameters: number;
  /** Default minibatch size per step. */
  readonly batch: number;
  readonly learningRate: number;
  /**
   * Step-size decay (default none): a worker in its e-th pass over its own
   * shards steps with lr / (1 + lrDecay · e).
   */
  readonly lrDecay?: number;
  /** Default test metric value at which the job is done. */
  readonly targetAccuracy: number;
  readonly optimizer: Optimizer;
  /** Initial parameters; every replica starts from the same ones (a pure function of `seed`). */
  init(seed: number): Float32Array;
  /**
   * The mean gradient and mean loss of rows `[0, batch.size)` of `batch` at
   * `params`, as ops of session `s` (see `GradientTensors`); does not read.
   * Must be a pure function of (params, batch).
   */
  gradient(s: Session, params: Float32Array, batch: Batch): GradientTensors;
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
   * One step: the optimizer's update from the mean gradient of `batch`, and
   * the mean loss. The optimizer (`optimizer`, default the job's own) runs on
   * the backend's kernels (see optimizers.ts); its state (momentum, Adam
   * moments) lives on the host per backend object and optimizer, i.e. per
   * worker. When the batch fits in one session (`backend.maxRows`) the
   * gradient and the optimizer run in that one session and read straight
   * into the update and the state (no other host copy). Otherwise the batch
   * is split into chunks of at most `maxRows` rows whose gradients are
   * averaged weighted by rows (the result does not depend on the split), then
   * the optimizer runs in a session of its own. On an out-of-memory error the
   * backend's `maxRows` is halved and the work retried. With `into` (of
   * `parameters` values) the update is written there and `into` returned: a
   * caller that keeps one such buffer allocates nothing per step.
   */
  step(backend: ComputeBackend, params: Float32Array, batch: Batch, lr: number, optimizer?: Optimizer, into?: Float32Array): Promise<StepResult>;
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

/** Where each of `grads` starts in the parameter layout; throws unless they tile it exactly. */
function blockOffsets(job: string, grads: readonly Tensor[], parameters: number): number[] {
  const offsets: number[] = [];
  let at = 0;
  for (const g of grads) {
    if (g.dtype !== "f32") throw new Error(`${job}: gradient blocks must be f32 tensors`);
    offsets.push(at);
    at += g.rows * g.cols;
  }
  if (at !== parameters) throw new Error(`${job}: the gradient's ${grads.length} blocks hold ${at} values, expected ${parameters}`);
  return offsets;
}

function checkLoss(job: string, loss: Tensor): void {
  if (loss.rows !== 1 || loss.cols !== 1 || loss.dtype !== "f32") throw new Error(`${job}: the gradient's loss must be a 1×1 f32 tensor, got ${loss.rows}×${loss.cols}`);
}

/** Builds a job from its declaration (see `JobDefinition` for the contracts `defineJob` adds). */
export function defineJob(spec: JobSpec): JobDefinition {
  const states = new WeakMap<ComputeBackend, Map<string, OptimizerState>>();
  function checkBatch(params: Float32Array, batch: Batch): void {
    if (params.length !== spec.parameters) throw new Error(`${spec.name}: params has ${params.length}, expected ${spec.parameters}`);
    if (batch.size < 1 || batch.x.length !== batch.size * spec.inputDim || batch.labels.length !== batch.size) {
      throw new Error(`${spec.name}: malformed batch of ${batch.size} rows`);
    }
  }
  /** The gradient of `batch` (one session) read into `into` (the parameter layout); returns the mean loss. */
  function gradientInto(backend: ComputeBackend, params: Float32Array, batch: Batch, into: Float32Array): Promise<number> {
    return backend.session(async (s) => {
      const g = spec.gradient(s, params, batch);
      checkLoss(spec.name, g.loss);
      const offsets = blockOffsets(spec.name, g.grads, spec.parameters);
      const loss = new Float32Array(1);
      await s.readInto([...g.grads, g.loss], [...g.grads.map((t, i) => into.subarray(offsets[i], (offsets[i] ?? 0) + t.rows * t.cols)), loss]);
      return loss[0] ?? Number.NaN;
    });
  }
  async function meanGradient(backend: ComputeBackend, params: Float32Array, batch: Batch): Promise<Gradient> {
    checkBatch(params, batch);
    const total = new Float32Array(spec.parameters);
    let part: Float32Array | null = null;
    let loss = 0;
    let from = 0;
    while (from < batch.size) {
      const n = Math.min(backend.maxRows, batch.size - from);
      const whole = n === batch.size;
      const into = whole ? total : (part ??= new Float32Array(spec.parameters));
      let chunkLoss: number;
      try {
        chunkLoss = await gradientInto(backend, params, sliceBatch(batch, spec.inputDim, from, n), into);
      } catch (e) {
        if (e instanceof OutOfMemoryError && backend.shrink()) continue;
        throw e;
      }
      if (whole) return { grad: total, loss: chunkLoss };
      const w = n / batch.size;
      for (let i = 0; i < total.length; i++) total[i] = (total[i] as number) + w * (into[i] as number);
      loss += w * chunkLoss;
      from += n;
    }
    return { grad: total, loss };
  }
  function stateFor(backend: ComputeBackend, optimizer: Optimizer): OptimizerState {
    let byName = states.get(backend);
    if (byName === undefined) states.set(backend, (byName = new Map()));
    let state = byName.get(optimizer.name);
    if (state === undefined) byName.set(optimizer.name, (state = optimizer.createState(spec.parameters)));
    return state;
  }
  /** Gradient and optimizer in one session of `backend` (the batch fits in one). */
  async function fusedStep(backend: ComputeBackend, params: Float32Array, batch: Batch, lr: number, optimizer: Optimizer, state: OptimizerState, update: Float32Array): Promise<StepResult> {
    const ops = optimizer.ops;
    if (ops === undefined) {
      const g = new Float32Array(spec.parameters);
      const loss = await gradientInto(backend, params, batch, g);
      update.set(optimizer.delta(g, lr, state));
      return { update, loss };
    }
    const loss = new Float32Array(1);
    await backend.session(async (s) => {
      const g = spec.gradient(s, params, batch);
      checkLoss(spec.name, g.loss);
      const offsets = blockOffsets(spec.name, g.grads, spec.parameters);
      const reads: Tensor[] = [g.loss];
      const into: Float32Array[] = [loss];
      g.grads.forEach((grad, i) => {
        const from = offsets[i] ?? 0;
        const to = from + grad.rows * grad.cols;
        const slots = state.slots.map((slot) => slot.subarray(from, to));
        const r = ops(s, grad, slots, lr, state.step + 1);
        reads.push(r.delta, ...r.slots);
        into.push(update.subarray(from, to), ...slots);
      });
      await s.readInto(reads, into);
    });
    state.step++;
    return { update, loss: loss[0] ?? Number.NaN };
  }
  return {
    ...spec,
    meanGradient,
    async step(backend, params, batch, lr, optimizer = spec.optimizer, into) {
      checkBatch(params, batch);
      if (into !== undefined && into.length !== spec.parameters) throw new Error(`${spec.name}: the update buffer holds ${into.length} values, expected ${spec.parameters}`);
      const update = into ?? new Float32Array(spec.parameters);
      const state = stateFor(backend, optimizer);
      while (batch.size <= backend.maxRows) {
        try {
          return await fusedStep(backend, params, batch, lr, optimizer, state, update);
        } catch (e) {
          if (!(e instanceof OutOfMemoryError) || !backend.shrink()) throw e;
        }
      }
      const { grad, loss } = await meanGradient(backend, params, batch);
      update.set(await optimizer.apply(backend, grad, lr, state));
      return { update, loss };
    },
  };
}
