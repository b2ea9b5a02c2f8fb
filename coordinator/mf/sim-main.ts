/**
 * `npx tsx coordinator/mf/sim-main.ts [--mf-users N ...] [--workers 4] [--leave w3@T]`:
 * runs the in-process simulation of job mf (sim.ts) and prints its numbers
 * as JSON: test RMSE per epoch (as a multiple of the noise floor), time,
 * the largest model share one worker held, and the floats exchanged.
 */
import { parseArgs } from "node:util";
import { MF_FLAGS, mfConfigFromValues } from "./config.ts";
import { simulate } from "./sim.ts";

const { values } = parseArgs({
  options: { ...MF_FLAGS, seed: { type: "string" }, lr: { type: "string" }, workers: { type: "string" }, leave: { type: "string", multiple: true } },
  strict: true,
});
const str = (k: string): string | undefined => {
  const v = (values as Record<string, unknown>)[k];
  return typeof v === "string" ? v : undefined;
};
const run = mfConfigFromValues(str, Number(str("seed") ?? 1), str("lr") === undefined ? null : Number(str("lr")));
const leaves = (values.leave ?? []).map((l) => {
  const [worker, t] = l.split("@");
  return { worker: worker ?? "", t: Number(t) };
});
const r = simulate(run.problem, { workers: Number(str("workers") ?? 4), maxEpochs: run.maxEpochs, target: run.target, leaves });
const f = run.problem.noise;
process.stdout.write(
  JSON.stringify(
    {
      problem: run.problem,
      workers: Number(str("workers") ?? 4),
      leaves,
      epochsToTarget: r.epochsToTarget,
      finalRmse: r.finalRmse,
      finalRatio: r.finalRmse / f,
      seconds: Math.round(r.ms) / 1000,
      rmseOverFloor: r.series.map(([e, x]) => [e, Math.round((x / f) * 10000) / 10000]),
      maxWorkerModelShare: r.maxWorkerFloats / r.wholeFloats,
      boundShare: r.boundFloats / r.wholeFloats,
      peerMB: (r.peerFloats * 4) / 1e6,
      checkpointMB: (r.checkpointFloats * 4) / 1e6,
      violations: r.violations,
    },
    null,
    1,
  ) + "\n",
);
