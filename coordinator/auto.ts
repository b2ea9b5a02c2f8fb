/**
 * Consistency mode `auto`: the coordinator picks the staleness bound `s` from
 * what the workers measure, pure (no I/O, time passed in).
 *
 * The goal is the smallest `s` that keeps the fast workers from waiting at the
 * SSP gate more than `targetWaitShare` of their time: a small `s` gives fresher
 * parameters (better statistical efficiency), a large one absorbs jitter in
 * step times (better hardware efficiency). Persistent slowness is not what `s`
 * is for (SSP only delays the wait); that is the straggler policy's job, so the
 * controller looks at the workers at or above the median speed only.
 *
 * A feedback rule with hysteresis: every `windowMs`, with W the median wait
 * share of the fast workers over the window, `s + 1` when W > target (up to
 * `maxStaleness`), `s − 1` when W < target / 4 (down to 0), else unchanged.
 */
export interface AutoPolicy {
  readonly targetWaitShare: number;
  readonly windowMs: number;
  readonly maxStaleness: number;
}

export const DEFAULT_AUTO: AutoPolicy = { targetWaitShare: 0.1, windowMs: 4000, maxStaleness: 16 };

export interface AutoSample {
  readonly id: string;
  /** Cumulative gate-wait time reported by the worker, ms. */
  readonly waitMs: number;
  /** Its steps per second (speed). */
  readonly stepsPerSec: number;
}

export interface AutoState {
  readonly staleness: number;
  readonly windowStart: number;
  /** Cumulative waitMs of each worker at the window start. */
  readonly baseline: ReadonlyMap<string, number>;
  /** Median wait share of the fast workers in the last closed window. */
  readonly lastWaitShare: number | null;
}

export function initialAutoState(staleness: number, now: number): AutoState {
  return { staleness, windowStart: now, baseline: new Map(), lastWaitShare: null };
}

function medianOf(xs: number[]): number {
  const s = [...xs].sort((a, b) => a - b);
  const m = s.length >> 1;
  return s.length % 2 ? (s[m] as number) : ((s[m - 1] as number) + (s[m] as number)) / 2;
}

/** Advance the controller; returns the new state (same `staleness` when unchanged). */
export function stepAuto(state: AutoState, samples: readonly AutoSample[], now: number, policy: AutoPolicy = DEFAULT_AUTO): AutoState {
  const elapsed = now - state.windowStart;
  if (elapsed < policy.windowMs) return state;
  const baseline = new Map(samples.map((w) => [w.id, w.waitMs]));
  const withHistory = samples.filter((w) => state.baseline.has(w.id));
  if (withHistory.length < 2) return { ...state, windowStart: now, baseline };
  const speedMedian = medianOf(withHistory.map((w) => w.stepsPerSec));
  const fast = withHistory.filter((w) => w.stepsPerSec >= speedMedian);
  const shares = fast.map((w) => Math.max(0, Math.min(1, (w.waitMs - (state.baseline.get(w.id) ?? w.waitMs)) / elapsed)));
  const W = medianOf(shares);
  let s = state.staleness;
  if (W > policy.targetWaitShare && s < policy.maxStaleness) s++;
  else if (W < policy.targetWaitShare / 4 && s > 0) s--;
  return { staleness: s, windowStart: now, baseline, lastWaitShare: W };
}
