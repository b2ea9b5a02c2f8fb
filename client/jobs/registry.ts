import type { JobDefinition } from "./job.ts";
import { linreg } from "./linreg.ts";
import { MF_DP_NAME, mfDpJob } from "./mf-dp.ts";
import { mnistMlp } from "./mnist-mlp.ts";
import { mnistSoftmax } from "./mnist-softmax.ts";
import type { MfConfig } from "../mf/problem.ts";

/** Every job the grid can run, by the name given to `--job`. */
export const JOBS: Readonly<Record<string, JobDefinition>> = {
  [mnistSoftmax.name]: mnistSoftmax,
  [mnistMlp.name]: mnistMlp,
  [linreg.name]: linreg,
};

/** Data-parallel jobs built per problem (their sizes come from flags). */
export const PROBLEM_JOBS: readonly string[] = [MF_DP_NAME];

/**
 * A small stand-in problem for mf-dp before the welcome names the real one:
 * the page's backend timing runs the job's (host) gradient on it.
 */
const PLACEHOLDER_MF: MfConfig = { users: 8, items: 8, rank: 2, density: 0.5, noise: 0.1, blocks: 1, seed: 1, lr: 0.04, lrDecay: 0, lambda: 0, initStd: 0.3 };

/**
 * The job `name` runs: a registered one, or mf-dp built for problem `mf`
 * (the welcome's; a placeholder when absent). Undefined for unknown names.
 */
export function jobFor(name: string, mf?: MfConfig): JobDefinition | undefined {
  if (name === MF_DP_NAME) return mfDpJob(mf ?? PLACEHOLDER_MF);
  return JOBS[name];
}
