import type { JobDefinition } from "./job.ts";
import { linreg } from "./linreg.ts";
import { mnistMlp } from "./mnist-mlp.ts";
import { mnistSoftmax } from "./mnist-softmax.ts";

/** Every job the grid can run, by the name given to `--job`. */
export const JOBS: Readonly<Record<string, JobDefinition>> = {
  [mnistSoftmax.name]: mnistSoftmax,
  [mnistMlp.name]: mnistMlp,
  [linreg.name]: linreg,
};
