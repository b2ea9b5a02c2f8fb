/**
 * `npm run bench -- mf`: job mf in one Node process (coordinator/mf/sim.ts:
 * the real schedule, block SGD and checkpoints). Baseline measured in the
 * same run: the same problem trained by one worker holding the whole model
 * (K = 1, plain SGD over all ratings). Ratios:
 * - `rmse_over_floor`: test RMSE of the 4-worker run / the noise σ (target ≤ 1.05);
 * - `epochs_vs_single`: epochs to 1.05 × σ with 4 workers and K = 4 / with one worker;
 * - `worker_model_share`: the most model one worker held at once / the whole model
 *   (the single worker's is 1);
 * - `worker_model_over_bound`: that / (1/K of the whole + one column block), target ≤ 1.
 * `MF_BENCH_FLAGS="--mf-density 0.06"` adds the flags to both runs (default: a small problem).
 */
import { MF_DEFAULTS, mfConfigFromValues } from "../../coordinator/mf/config.ts";
import { simulate } from "../../coordinator/mf/sim.ts";
import type { SuiteResult } from "./main.ts";

export async function run(): Promise<SuiteResult> {
  const extra = (process.env["MF_BENCH_FLAGS"] ?? "").split(/\s+/).filter(Boolean);
  const values: Record<string, string> = { "mf-users": "2000", "mf-items": "800", "mf-rank": "4", "mf-density": "0.2" };
  for (let i = 0; i + 1 < extra.length; i += 2) values[extra[i]!.replace(/^--/, "")] = extra[i + 1]!;
  const cfg = mfConfigFromValues((k) => values[k], MF_DEFAULTS.seed, null);
  const p = cfg.problem;
  const rows = [];
  const four = simulate(p, { workers: 4, maxEpochs: 40, target: cfg.target });
  const one = simulate({ ...p, blocks: 1 }, { workers: 1, maxEpochs: 40, target: cfg.target });
  for (const [name, r, k] of [["4 workers, K = 4", four, 4], ["1 worker, K = 1", one, 1]] as const) {
    rows.push({
      run: name,
      blocks: k,
      epochs_to_target: r.epochsToTarget,
      rmse_over_floor: r.finalRmse / p.noise,
      seconds: r.ms / 1000,
      worker_model_share: r.maxWorkerFloats / r.wholeFloats,
      bound_share: r.boundFloats / r.wholeFloats,
      peer_mb: (r.peerFloats * 4) / 1e6,
      checkpoint_mb: (r.checkpointFloats * 4) / 1e6,
    });
  }
  return {
    ratios: {
      rmse_over_floor: four.finalRmse / p.noise,
      epochs_vs_single: (four.epochsToTarget ?? NaN) / (one.epochsToTarget ?? NaN),
      worker_model_share: four.maxWorkerFloats / four.wholeFloats,
      worker_model_over_bound: four.maxWorkerFloats / four.boundFloats,
    },
    table: rows,
    problem: p,
  };
}
