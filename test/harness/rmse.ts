/**
 * Jobs mf (model parallel) and mf-dp (the same problem, data parallel) on one
 * scale: test RMSE / σ, lower is better, target `--mf-target`. Job mf reports
 * its test RMSE ("rmse"); mf-dp reports σ / RMSE ("noise/rmse", higher is
 * better, so the data-parallel target rule applies to it unchanged).
 */
import type { TestPoint } from "./run.ts";

/** The value of one test point of metric `metric` as RMSE / σ (NaN when it cannot be read so). */
export function rmseOverFloor(metric: string, value: number, noise: number): number {
  if (metric === "rmse") return value / noise;
  if (metric === "noise/rmse") return value > 0 ? 1 / value : Number.POSITIVE_INFINITY;
  return Number.NaN;
}

/** `points` with their values as RMSE / σ. */
export function asRmseOverFloor(metric: string, points: readonly TestPoint[], noise: number): TestPoint[] {
  return points.map((p) => ({ ...p, value: rmseOverFloor(metric, p.value, noise) }));
}
