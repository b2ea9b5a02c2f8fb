export type { JobDefinition, JobSpec, Batch, Metric, Gradient } from "./job.ts";
export { defineJob, sliceBatch } from "./job.ts";
export { sgd, momentum, adam, optimizerByName, OPTIMIZER_NAMES, type Optimizer, type OptimizerName, type OptimizerState } from "./optimizers.ts";
export { mnistSoftmax } from "./mnist-softmax.ts";
export { mnistMlp } from "./mnist-mlp.ts";
export { linreg } from "./linreg.ts";
export { JOBS } from "./registry.ts";
