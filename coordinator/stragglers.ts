/**
 * Liveness and straggler detection, pure functions over what the coordinator
 * knows of each worker (no I/O, time passed in).
 *
 * - A worker whose last message is older than `heartbeatTimeoutMs` has left.
 * - A worker is a straggler when the fast ones would have to wait for it: its
 *   step time (what it needs per step, gate waiting excluded, as reported and
 *   smoothed) exceeds `slowFactor` × the median and the median plus
 *   `slowMarginMs`, continuously for `graceMs`. Clock lag is not used: under
 *   SSP the gate keeps lag at most s, and reported clocks are up to one report
 *   interval stale, so lag says more about timing than about speed.
 */
export interface StragglerPolicy {
  readonly heartbeatTimeoutMs: number;
  readonly slowFactor: number;
  /** A slow step must also exceed the median by this many ms (noise on tiny steps). */
  readonly slowMarginMs: number;
  readonly graceMs: number;
}

export const DEFAULT_POLICY: StragglerPolicy = {
  heartbeatTimeoutMs: 5000,
  slowFactor: 3,
  slowMarginMs: 15,
  graceMs: 5000,
};

export interface WorkerHealth {
  readonly id: string;
  readonly clock: number;
  readonly stepMs: number;
  readonly lastSeen: number;
  /** When the worker first looked slow in the current spell, or null. */
  readonly slowSince: number | null;
  readonly paused: boolean;
}

export interface Verdict {
  readonly id: string;
  readonly verdict: "ok" | "straggler" | "gone";
  readonly slowSince: number | null;
  readonly reason: string;
}

export function median(xs: readonly number[]): number {
  if (xs.length === 0) return 0;
  const s = [...xs].sort((a, b) => a - b);
  const mid = s.length >> 1;
  return s.length % 2 === 1 ? (s[mid] as number) : ((s[mid - 1] as number) + (s[mid] as number)) / 2;
}

/** Classify every active worker. `staleness` is Infinity for ASP. */
export function assess(
  workers: readonly WorkerHealth[],
  staleness: number,
  now: number,
  policy: StragglerPolicy = DEFAULT_POLICY,
): Verdict[] {
  const live = workers.filter((w) => now - w.lastSeen <= policy.heartbeatTimeoutMs);
  const maxClock = live.reduce((m, w) => Math.max(m, w.clock), 0);
  const med = median(live.filter((w) => w.stepMs > 0).map((w) => w.stepMs));
  return workers.map((w): Verdict => {
    if (now - w.lastSeen > policy.heartbeatTimeoutMs) {
      return { id: w.id, verdict: "gone", slowSince: null, reason: `silent for ${now - w.lastSeen} ms` };
    }
    if (w.paused) return { id: w.id, verdict: "ok", slowSince: null, reason: "paused by its volunteer" };
    const slow = med > 0 && live.length > 1 && w.stepMs > policy.slowFactor * med && w.stepMs > med + policy.slowMarginMs;
    if (!slow) return { id: w.id, verdict: "ok", slowSince: null, reason: "" };
    const since = w.slowSince ?? now;
    const lag = maxClock - w.clock;
    const reason = `step ${Math.round(w.stepMs)} ms vs median ${Math.round(med)} ms${Number.isFinite(staleness) && lag > 0 ? `, ${lag} clocks behind` : ""}`;
    return { id: w.id, verdict: now - since >= policy.graceMs ? "straggler" : "ok", slowSince: since, reason };
  });
}

export interface DropPolicy {
  /** Never drop below this many active workers. */
  readonly minActive: number;
  /** Drops per assessment at most. */
  readonly maxDropsAtOnce: number;
  /** Back-off before a dropped straggler may join again: base × 2^(drops − 1), capped. */
  readonly rejoinBaseMs: number;
  readonly rejoinMaxMs: number;
}

export const DEFAULT_DROP: DropPolicy = { minActive: 1, maxDropsAtOnce: 1, rejoinBaseMs: 10_000, rejoinMaxMs: 120_000 };

/**
 * Which stragglers to drop now: the slowest first (largest step time), at
 * most `maxDropsAtOnce`, never leaving fewer than `minActive` active workers.
 * In ASP nobody waits for anybody, so nobody is dropped.
 */
export function chooseDrops(
  verdicts: readonly Verdict[],
  stepMs: ReadonlyMap<string, number>,
  activeCount: number,
  asp: boolean,
  policy: DropPolicy = DEFAULT_DROP,
): string[] {
  if (asp) return [];
  const room = Math.max(0, Math.min(policy.maxDropsAtOnce, activeCount - policy.minActive));
  return verdicts
    .filter((v) => v.verdict === "straggler")
    .sort((a, b) => (stepMs.get(b.id) ?? 0) - (stepMs.get(a.id) ?? 0))
    .slice(0, room)
    .map((v) => v.id);
}

export function rejoinDelayMs(drops: number, policy: DropPolicy = DEFAULT_DROP): number {
  return Math.min(policy.rejoinMaxMs, policy.rejoinBaseMs * 2 ** Math.max(0, drops - 1));
}
