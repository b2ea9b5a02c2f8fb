/**
 * Spot-checks with adaptive replication (as BOINC does), pure: the
 * coordinator's bookkeeping of trust per worker, which worker to check next
 * and who verifies it, and the verdict on a task's results.
 *
 * A task names a reference model (a replica the coordinator holds: the newest
 * evaluation upload) and a minibatch (shard, first example, count). The target
 * and its verifiers each compute the job's update for exactly that batch at
 * exactly those parameters (the mean gradient through their own backend, then
 * a fresh optimizer state at the job's learning rate) and report its digest.
 * Results that agree within a relative tolerance form groups; a group holding
 * more than half of the results is the majority, and every worker outside it
 * failed the check. With no majority the task says nothing.
 *
 * Trust starts at 0.5. Agreeing raises it a little (t += (1 − t)/10); failing
 * halves it and counts a failure. The next target is the worker that has gone
 * longest without a check, that time weighted by (1.25 − trust): a worker that
 * failed is checked several times as often as a trusted one. Verifiers are the
 * most trusted other workers. After `maxFailures` failures a worker is dropped.
 */
import { digestsAgree } from "../client/replica.ts";
import type { Digest, SpotMessage, SpotResultMessage } from "./protocol.ts";

export interface SpotPolicy {
  /** Least ms between two tasks (0: spot-checks off). */
  readonly everyMs: number;
  /** Relative tolerance of two digests (scaled by their L2 norm). */
  readonly tolerance: number;
  /** Failures after which a worker is dropped. */
  readonly maxFailures: number;
  /** A task's results are judged after this long even if some are missing. */
  readonly timeoutMs: number;
  /** Workers that compute the task besides its target. */
  readonly verifiers: number;
}

export const DEFAULT_SPOT: SpotPolicy = { everyMs: 5000, tolerance: 1e-3, maxFailures: 3, timeoutMs: 20_000, verifiers: 2 };

export interface Trust {
  readonly trust: number;
  readonly checks: number;
  readonly failures: number;
  /** When it last took part in a task (its join time before that). */
  readonly lastCheckedAt: number;
}

export function newTrust(now: number): Trust {
  return { trust: 0.5, checks: 0, failures: 0, lastCheckedAt: now };
}

export function agreed(t: Trust, now: number): Trust {
  return { trust: t.trust + (1 - t.trust) / 10, checks: t.checks + 1, failures: t.failures, lastCheckedAt: now };
}

export function failed(t: Trust, now: number): Trust {
  return { trust: t.trust / 2, checks: t.checks + 1, failures: t.failures + 1, lastCheckedAt: now };
}

/** Took part without a verdict (no majority, or no result in time). */
export function unjudged(t: Trust, now: number): Trust {
  return { ...t, lastCheckedAt: now };
}

/**
 * Target and verifiers of the next task among `candidates` (workers able to
 * compute one now), or null when there are too few for a majority.
 * `rand` breaks ties (a seeded generator in tests).
 */
export function chooseTask(
  candidates: readonly { id: string; trust: Trust }[],
  now: number,
  policy: SpotPolicy,
  rand: () => number,
): { target: string; verifiers: string[] } | null {
  const k = Math.max(2, policy.verifiers);
  if (candidates.length < k + 1) return null;
  const jitter = new Map(candidates.map((c) => [c.id, rand()]));
  const due = (c: { id: string; trust: Trust }): number => (now - c.trust.lastCheckedAt + 1) * (1.25 - c.trust.trust) * (1 + 0.01 * (jitter.get(c.id) ?? 0));
  const target = [...candidates].sort((a, b) => due(b) - due(a))[0];
  if (!target) return null;
  const verifiers = candidates
    .filter((c) => c.id !== target.id)
    .sort((a, b) => b.trust.trust - a.trust.trust || (jitter.get(a.id) ?? 0) - (jitter.get(b.id) ?? 0))
    .slice(0, k)
    .map((c) => c.id);
  return { target: target.id, verifiers };
}

/**
 * The verdict on a task's results: who is in the majority and who failed;
 * null when no group of agreeing results holds more than half of them.
 */
export function judge(results: readonly { id: string; digest: Digest }[], tolerance: number): { agree: string[]; disagree: string[] } | null {
  const n = results.length;
  if (n < 2) return null;
  let best: string[] = [];
  for (const r of results) {
    const group = results.filter((o) => digestsAgree(r.digest, o.digest, tolerance)).map((o) => o.id);
    if (group.length > best.length) best = group;
  }
  if (best.length * 2 <= n) return null;
  const agree = new Set(best);
  return { agree: [...agree], disagree: results.map((r) => r.id).filter((id) => !agree.has(id)) };
}

/** What a running job lends the spot-checker (coordinator/job.ts). */
export interface SpotHost {
  /** Workers that can compute a task now (active, in the gate, not paused), sorted by id. */
  candidates(): string[];
  /** The reference model: the newest replica uploaded for evaluation. */
  model(): { clock: number; params: Float32Array } | null;
  /** Number of training shards and the examples in shard `i`. */
  shards(): number;
  shardCount(i: number): number;
  /** Minibatch size of a task (the job's). */
  batch(): number;
  send(id: string, msg: SpotMessage): void;
  /** A `flagged` or `spot-check` event. */
  event(kind: string, worker: string | undefined, detail: string): void;
  /** Drop a worker that failed too often. */
  drop(id: string, detail: string): void;
  shardRef(i: number): SpotMessage["shard"];
}

interface OpenTask {
  readonly id: string;
  readonly clock: number;
  readonly params: Float32Array;
  readonly target: string;
  readonly startedAt: number;
  /** Result per member; undefined until it answers, null when it could not compute the task. */
  readonly results: Map<string, Digest | null | undefined>;
}

/** Spot-checks of one job: one task open at a time, trust per worker (see the top of this file). */
export class SpotChecker {
  private readonly trust = new Map<string, Trust>();
  private open: OpenTask | null = null;
  private seq = 0;
  private lastTaskAt = -Infinity;
  private readonly counts = { tasks: 0, agreed: 0, failed: 0, undecided: 0 };

  constructor(
    private readonly host: SpotHost,
    readonly policy: SpotPolicy,
    private readonly rand: () => number = Math.random,
  ) {}

  private trustOf(id: string, now: number): Trust {
    let t = this.trust.get(id);
    if (!t) {
      t = newTrust(now);
      this.trust.set(id, t);
    }
    return t;
  }

  /** Periodic: judge a task that timed out, start the next one when due. */
  tick(now: number): void {
    if (this.policy.everyMs <= 0) return;
    if (this.open && now - this.open.startedAt >= this.policy.timeoutMs) this.conclude(now);
    if (this.open || now - this.lastTaskAt < this.policy.everyMs) return;
    const model = this.host.model();
    const shards = this.host.shards();
    if (!model || shards === 0) return;
    const ids = this.host.candidates();
    const pick = chooseTask(ids.map((id) => ({ id, trust: this.trustOf(id, now) })), now, this.policy, this.rand);
    if (!pick) return;
    const shard = Math.floor(this.rand() * shards);
    const size = this.host.shardCount(shard);
    const count = Math.max(1, Math.min(this.host.batch(), size));
    const offset = Math.floor(this.rand() * Math.max(1, size - count + 1));
    const id = `s${++this.seq}`;
    const members = [pick.target, ...pick.verifiers];
    this.open = { id, clock: model.clock, params: model.params, target: pick.target, startedAt: now, results: new Map(members.map((m) => [m, undefined])) };
    this.lastTaskAt = now;
    this.counts.tasks++;
    const msg: SpotMessage = { type: "spot", task: id, clock: model.clock, shard: this.host.shardRef(shard), offset, count };
    for (const m of members) this.host.send(m, msg);
  }

  /** The reference parameters of an open task (GET /api/spot/TASK), or null. */
  model(task: string): { clock: number; params: Float32Array } | null {
    return this.open && this.open.id === task ? { clock: this.open.clock, params: this.open.params } : null;
  }

  /** A member's answer. Answers from non-members or to closed tasks are ignored. */
  onResult(id: string, msg: SpotResultMessage, now: number): void {
    const t = this.open;
    if (!t || t.id !== msg.task || !t.results.has(id) || t.results.get(id) !== undefined) return;
    t.results.set(id, msg.digest ?? null);
    if ([...t.results.values()].every((r) => r !== undefined)) this.conclude(now);
  }

  /** A worker left the view: it no longer counts in the open task. */
  forget(id: string): void {
    this.open?.results.delete(id);
  }

  private conclude(now: number): void {
    const t = this.open;
    if (!t) return;
    this.open = null;
    const results = [...t.results].filter((e): e is [string, Digest] => e[1] !== undefined && e[1] !== null).map(([id, digest]) => ({ id, digest }));
    const verdict = results.length >= 3 ? judge(results, this.policy.tolerance) : null;
    if (!verdict) {
      this.counts.undecided++;
      for (const id of t.results.keys()) this.trust.set(id, unjudged(this.trustOf(id, now), now));
      this.host.event("spot-check", t.target, `task ${t.id}: no majority among ${results.length} results`);
      return;
    }
    for (const id of verdict.agree) this.trust.set(id, agreed(this.trustOf(id, now), now));
    for (const id of [...t.results.keys()].filter((x) => !verdict.agree.includes(x) && !verdict.disagree.includes(x))) {
      this.trust.set(id, unjudged(this.trustOf(id, now), now));
    }
    if (verdict.disagree.length === 0) {
      this.counts.agreed++;
      return;
    }
    this.counts.failed++;
    const ref = results.find((r) => r.id === verdict.agree[0])?.digest;
    for (const id of verdict.disagree) {
      const next = failed(this.trustOf(id, now), now);
      this.trust.set(id, next);
      const mine = results.find((r) => r.id === id)?.digest;
      const off = ref && mine ? ` (update L2 ${mine.l2.toPrecision(3)} against ${ref.l2.toPrecision(3)})` : "";
      this.host.event("flagged", id, `disagrees with ${verdict.agree.join(", ")} on spot-check ${t.id}${off}; trust ${next.trust.toFixed(2)}, ${next.failures} failed`);
      if (next.failures >= this.policy.maxFailures) this.host.drop(id, `failed ${next.failures} spot-checks`);
    }
  }

  /** The status of one worker: trust and its record. */
  workerStatus(id: string): { trust: number; checks: number; failures: number } | null {
    const t = this.trust.get(id);
    return t ? { trust: Math.round(t.trust * 1000) / 1000, checks: t.checks, failures: t.failures } : null;
  }

  status(): Record<string, unknown> {
    return { everyMs: this.policy.everyMs, tolerance: this.policy.tolerance, ...this.counts, open: this.open?.id ?? null };
  }
}
