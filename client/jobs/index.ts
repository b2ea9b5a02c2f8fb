export type { JobDefinition, Batch, Metric } from "./job.ts";
export { mnistSoftmax } from "./mnist-softmax.ts";
export { JOBS } from "./registry.ts";
