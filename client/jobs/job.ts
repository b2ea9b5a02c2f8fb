/**
 * A job, declared in one file under client/jobs/: its parameters and their
 * initialization, its data, the gradient step it dispatches, its optimizer
 * settings and its test metric. Job files import nothing from the DOM or the
 * GPU layer, so the coordinator (Node) evaluates the same metric the pages
 * train for.
 */
import type { SoftmaxBackend, StepResult } from "../gpu/backend.ts";

export interface Batch {
  /** `size * inputDim` floats in [0, 1]. */
  readonly x: Float32Array;
  /** `size` class indices. */
  readonly labels: Uint32Array;
  readonly size: number;
}

export interface Metric {
  readonly name: "accuracy";
  readonly value: number;
  readonly loss: number;
}

export interface JobDefinition {
  readonly name: string;
  readonly dataset: "mnist";
  readonly inputDim: number;
  readonly classes: number;
  readonly parameters: number;
  /** Default minibatch size per step. */
  readonly batch: number;
  readonly learningRate: number;
  /** Default test accuracy at which the job is done. */
  readonly targetAccuracy: number;
  /** Initial parameters; every replica starts from the same ones. */
  init(seed: number): Float32Array;
  /** One SGD step's update on the given backend. */
  step(backend: SoftmaxBackend, params: Float32Array, batch: Batch, lr: number): Promise<StepResult>;
  /** Test metric over `count` images (uint8 pixels, one label byte each). */
  evaluate(params: Float32Array, pixels: Uint8Array, labels: Uint8Array, count: number): Metric;
}
