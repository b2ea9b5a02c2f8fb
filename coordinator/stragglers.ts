/**
 * Liveness and straggler detection, pure functions over what the coordinator
 * knows of each worker (no I/O, time passed in).
 *
 * - A worker whose last message is older than `heartbeatTimeoutMs` has left,
 *   except when every worker holding a replica (all but syncing joiners) is
 *   silent at once: then they are `suspect` and stay in the view for up to
 *   `lastReplicaTimeoutMs`. Such a spell is far more likely a stall of the
 *   machine or the network than every volunteer leaving in the same seconds,
 *   and marking them all left would leave no replica of the model anywhere: the
 *   first page back would start over from the initial parameters (every cut
 *   lowered to what it could still reach). As soon as one of them is heard
 *   again, the ones still silent are gone as usual.
 * - A worker is a straggler when the fast ones would have to wait for it: its
 *   step time (what it needs per step, gate waiting excluded, as reported and
 *   smoothed) exceeds `slowFactor` × the median and the median plus
 *   `slowMarginMs`, continuously for `graceMs`. Clock lag is not used: under
 *   SSP the gate keeps lag at most s, and reported clocks are up to one report
 *   interval stale, so lag says more about timing than about speed. A joiner
 *   still syncing is never slow: it is in nobody's gate until it is ready.
 */
export interface StragglerPolicy {
  readonly heartbeatTimeoutMs: number;
  /** How long the last replica holders may all be silent before they are gone anyway. */
  readonly lastReplicaTimeoutMs: number;
  readonly slowFactor: number;
  /** A slow step must also exceed the median by this many ms (noise on tiny steps). */
  readonly slowMarginMs: number;
  readonly graceMs: number;
}

export const DEFAULT_POLICY: StragglerPolicy = {
  heartbeatTimeoutMs: 5000,
  lastReplicaTimeoutMs: 60_000,
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
  /** A joiner still loading its snapshot: it holds no replica yet. */
  readonly syncing: boolean;
}

export interface Verdict {
  readonly id: string;
  /** `suspect`: silent, but kept in the view (every replica holder is silent; see above). */
  readonly verdict: "ok" | "straggler" | "suspect" | "gone";
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
  const silent = (w: WorkerHealth): boolean => now - w.lastSeen > policy.heartbeatTimeoutMs;
  const live = workers.filter((w) => !silent(w));
  const holders = workers.filter((w) => !w.syncing);
  const lastHolders = holders.length > 0 && holders.every(silent);
  // Only workers in the gate can hold others up: a syncing joiner is in nobody's
  // gate, and the step time it reports is its page's from before (a rejoin).
  const gated = live.filter((w) => !w.syncing);
  const maxClock = gated.reduce((m, w) => Math.max(m, w.clock), 0);
  const med = median(gated.filter((w) => w.stepMs > 0).map((w) => w.stepMs));
  return workers.map((w): Verdict => {
    if (silent(w)) {
      const quiet = now - w.lastSeen;
      if (lastHolders && !w.syncing && quiet <= policy.lastReplicaTimeoutMs) {
        return { id: w.id, verdict: "suspect", slowSince: w.slowSince, reason: `silent for ${quiet} ms, as is every worker holding a replica` };
      }
      return { id: w.id, verdict: "gone", slowSince: null, reason: `silent for ${quiet} ms` };
    }
    if (w.paused) return { id: w.id, verdict: "ok", slowSince: null, reason: "paused by its volunteer" };
    if (w.syncing) return { id: w.id, verdict: "ok", slowSince: null, reason: "" };
    const slow = med > 0 && gated.length > 1 && w.stepMs > policy.slowFactor * med && w.stepMs > med + policy.slowMarginMs;
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
