/**
 * How long a worker idles after a step (pure): the page parameters
 * `?slowdown=F` and `?steptime=MS` and the volunteer's throttle.
 *
 * - `?steptime=MS`: every step takes at least MS ms, the worker sleeping the
 *   rest after its compute. The step time is then the same on every page
 *   whatever its compute speed, so experiments on one shared machine can
 *   measure the protocol, not the contention (K paced pages should make K×
 *   the clock rate of one).
 * - `?slowdown=F` alone: after every step the worker waits (F − 1) × its
 *   unslowed step time as measured at join (a page-relative delay).
 * - Both: a step takes at least F × MS (a page F× slower than its paced peers).
 * - A throttle share below 1 adds idle time so that the step (compute plus the
 *   delay above) is that share of the time.
 */

export interface Pace {
  /** ≥ 1; 1: no slowdown. */
  readonly slowdown: number;
  /** Least time per step in ms; 0: none. */
  readonly stepTimeMs: number;
}

export const NO_PACE: Pace = { slowdown: 1, stepTimeMs: 0 };

/** Largest `?steptime` accepted (one minute per step). */
export const MAX_STEP_TIME_MS = 60_000;

/**
 * The pace from a page's URL parameters. Missing, malformed or out-of-range
 * values mean "none" (a volunteer's odd URL must not stop the page).
 */
export function paceFromParams(params: URLSearchParams): Pace {
  const f = Number(params.get("slowdown") ?? "1");
  const ms = Number(params.get("steptime") ?? "0");
  return {
    slowdown: Number.isFinite(f) && f >= 1 && f <= 1000 ? f : 1,
    stepTimeMs: Number.isFinite(ms) && ms > 0 && ms <= MAX_STEP_TIME_MS ? ms : 0,
  };
}

/**
 * Idle time after a step, in ms.
 * `elapsedMs`: the step so far (compute and hand-off), `computeMs`: its
 * compute, `baseStepMs`: the unslowed step time measured at join, `throttle`:
 * the share of the time the volunteer allows (0 < share ≤ 1).
 */
export function idleAfterStep(pace: Pace, elapsedMs: number, computeMs: number, baseStepMs: number, throttle: number): number {
  let idle: number;
  if (pace.stepTimeMs > 0) idle = Math.max(0, pace.slowdown * pace.stepTimeMs - elapsedMs);
  else idle = pace.slowdown > 1 ? (pace.slowdown - 1) * baseStepMs : 0;
  if (throttle < 1) idle += (computeMs + idle) * (1 / throttle - 1);
  return idle;
}
