/**
 * One worker's replica of the parameters and its consistency bookkeeping,
 * pure (no I/O): the vector clock, exactly-once application of updates in any
 * order, retained updates for re-sending and reverting, cuts, the SSP gate and
 * the end digest. The Web Worker drives it; unit tests drive it directly.
 */
import { AppliedClocks, blockers, gateOpen, stalenessBound } from "../coordinator/ssp.ts";
import type { Consistency, Digest, ViewMember } from "../coordinator/protocol.ts";

export type ReceiveResult = "applied" | "duplicate" | "cut" | "bad-length";

export interface RetainedUpdate {
  readonly author: string;
  readonly clock: number;
  readonly update: Float32Array;
}

export interface ReplicaView {
  readonly active: readonly ViewMember[];
  readonly cuts: readonly { id: string; clock: number }[];
  readonly consistency: Consistency;
}

/** Number of extra clocks kept beyond the staleness window (design: s + 2). */
const RETAIN_SLACK = 2;
/** Clocks kept below the stable point (slack for reports in flight). */
const RETAIN_MIN = 8;
/**
 * Hard cap on retained updates per sender (memory): beyond it the oldest go
 * even above the stable point. Only a replica lagging by more than this many
 * clocks of one sender (possible under ASP) can then miss an update; it is
 * handled by lowering that sender's cut, or by a fresh snapshot.
 */
const RETAIN_CAP = 256;

export class Replica {
  readonly params: Float32Array;
  private readonly applied = new Map<string, AppliedClocks>();
  /** Retained updates by sender, then clock. */
  private readonly retained = new Map<string, Map<number, Float32Array>>();
  private readonly cutAt = new Map<string, number>();
  private view: ReplicaView;
  private stable = 0;
  /** Updates applied, counted once each (duplicates are not counted). */
  appliedCount = 0;

  constructor(
    readonly self: string,
    initial: Float32Array,
    view: ReplicaView,
  ) {
    this.params = Float32Array.from(initial);
    this.view = view;
    for (const m of view.active) this.clocksOf(m.id, m.startClock);
  }

  private clocksOf(id: string, start = 0): AppliedClocks {
    let a = this.applied.get(id);
    if (!a) {
      a = new AppliedClocks(start);
      this.applied.set(id, a);
    } else {
      a.advanceTo(start);
    }
    return a;
  }

  /** V[id]. */
  vector(id: string): number {
    return this.applied.get(id)?.prefix ?? 0;
  }

  /** The vector clock over every sender this replica knows. */
  vectorClock(): Record<string, number> {
    const out: Record<string, number> = {};
    for (const [id, a] of this.applied) out[id] = a.prefix;
    return out;
  }

  /**
   * The smallest V[j] over the active workers and the cut ones (capped at
   * their cut): this replica holds u(j, 1..minActive) of every j that counts.
   */
  minActive(): number {
    let min = Infinity;
    for (const m of this.view.active) min = Math.min(min, this.vector(m.id));
    for (const c of this.view.cuts) min = Math.min(min, Math.min(this.vector(c.id), c.clock) + (this.vector(c.id) >= c.clock ? Infinity : 0));
    return Number.isFinite(min) ? min : 0;
  }

  get clock(): number {
    return this.vector(this.self);
  }

  get consistency(): Consistency {
    return this.view.consistency;
  }

  /** May this worker start its next iteration? */
  canStep(): boolean {
    return gateOpen(this.clock, this.view.active, (id) => this.vector(id), this.view.consistency);
  }

  /** The smallest V[j] over the workers in the gate (active, not syncing). */
  gateMin(): number {
    let min = Infinity;
    for (const m of this.view.active) if (!m.syncing) min = Math.min(min, this.vector(m.id));
    return Number.isFinite(min) ? min : 0;
  }

  /** Active workers that hold this replica's next step back. */
  blockers(): string[] {
    return blockers(this.clock, this.view.active, (id) => this.vector(id), this.view.consistency);
  }

  /** Apply this worker's own update for its next clock (read-your-writes). */
  applyOwn(update: Float32Array): number {
    const c = this.clock + 1;
    const r = this.receive(this.self, c, update);
    if (r !== "applied") throw new Error(`own update ${c} not applied: ${r}`);
    return c;
  }

  /** Apply u(sender, clock) unless it was already applied or lies beyond a cut. */
  receive(sender: string, clock: number, update: Float32Array): ReceiveResult {
    if (update.length !== this.params.length) return "bad-length";
    const cut = this.cutAt.get(sender);
    if (cut !== undefined && clock > cut) return "cut";
    const member = this.view.active.find((m) => m.id === sender);
    const a = this.clocksOf(sender, member?.startClock ?? 0);
    if (!a.add(clock)) return "duplicate";
    const p = this.params;
    for (let i = 0; i < p.length; i++) p[i] = (p[i] as number) + (update[i] as number);
    this.appliedCount++;
    let r = this.retained.get(sender);
    if (!r) {
      r = new Map();
      this.retained.set(sender, r);
    }
    r.set(clock, update);
    this.prune(sender);
    return "applied";
  }

  private prune(sender: string): void {
    const r = this.retained.get(sender);
    if (!r || r.size <= RETAIN_CAP) return;
    const clocks = [...r.keys()].sort((a, b) => a - b);
    for (const c of clocks.slice(0, r.size - RETAIN_CAP)) r.delete(c);
  }

  /**
   * The stable point: every replica has applied u(j, 1..stable) for every j
   * (the coordinator takes the minimum of the workers' reported `minApplied`).
   * Updates at or below it are never needed again, apart from a little slack.
   */
  setStable(stable: number): void {
    if (stable <= this.stable) return;
    this.stable = stable;
    const below = stable - RETAIN_MIN;
    for (const r of this.retained.values()) for (const c of r.keys()) if (c <= below) r.delete(c);
  }

  /** Retained updates of `sender` with clock > `after`, ascending (for re-sending). */
  retainedAfter(sender: string, after: number): { clock: number; update: Float32Array }[] {
    const r = this.retained.get(sender);
    if (!r) return [];
    return [...r.entries()]
      .filter(([c]) => c > after)
      .sort((a, b) => a[0] - b[0])
      .map(([clock, update]) => ({ clock, update }));
  }

  /**
   * Adopt a new view. For each cut (id, k): revert applied updates of id beyond
   * k and ignore later ones. Returns, per cut worker, the clocks ≤ k this replica
   * still lacks (to fetch from peers) and any revert it could not do because the
   * update was no longer retained (which would leave the replica inconsistent).
   */
  setView(view: ReplicaView): { missing: { id: string; clocks: number[] }[]; unrevertable: number } {
    this.view = view;
    for (const m of view.active) this.clocksOf(m.id, m.startClock);
    const missing: { id: string; clocks: number[] }[] = [];
    let unrevertable = 0;
    for (const { id, clock: k } of view.cuts) {
      const prev = this.cutAt.get(id);
      if (prev !== undefined && prev <= k) continue;
      this.cutAt.set(id, k);
      const a = this.clocksOf(id);
      const r = this.retained.get(id);
      for (const c of a.appliedAbove(k)) {
        const u = r?.get(c);
        if (!u) {
          unrevertable++;
          continue;
        }
        const p = this.params;
        for (let i = 0; i < p.length; i++) p[i] = (p[i] as number) - (u[i] as number);
        a.remove(c);
        r?.delete(c);
        this.appliedCount--;
      }
      const lack = a.missingUpTo(k);
      if (lack.length > 0) missing.push({ id, clocks: lack });
    }
    return { missing, unrevertable };
  }

  /**
   * A consistent snapshot for a joiner: the parameters holding exactly the
   * updates the vector clock names. Updates applied out of order above a
   * prefix are subtracted (they are always retained: they are recent), so the
   * joiner can receive them again without counting them twice.
   */
  snapshot(): { params: Float32Array; vector: Record<string, number>; retained: RetainedUpdate[] } {
    const params = Float32Array.from(this.params);
    const retained: RetainedUpdate[] = [];
    for (const [id, a] of this.applied) {
      const r = this.retained.get(id);
      for (const c of a.appliedAbove(a.prefix)) {
        const u = r?.get(c);
        if (!u) throw new Error(`snapshot: u(${id},${c}) applied out of order but not retained`);
        for (let i = 0; i < params.length; i++) params[i] = (params[i] as number) - (u[i] as number);
      }
      for (const [c, u] of r ?? []) if (c <= a.prefix) retained.push({ author: id, clock: c, update: u });
    }
    return { params, vector: this.vectorClock(), retained };
  }

  /**
   * Keep a copy of u(author, clock) that the loaded snapshot already counts,
   * so this replica can re-send it and revert it after a cut like any other.
   */
  importRetained(author: string, clock: number, update: Float32Array): boolean {
    if (update.length !== this.params.length || !this.clocksOf(author).has(clock)) return false;
    let r = this.retained.get(author);
    if (!r) {
      r = new Map();
      this.retained.set(author, r);
    }
    if (!r.has(clock)) r.set(clock, update);
    return true;
  }

  /** Replace the replica with a peer's snapshot (a joiner's first step). */
  loadSnapshot(params: Float32Array, vector: Record<string, number>): void {
    if (params.length !== this.params.length) throw new Error("snapshot of the wrong size");
    this.params.set(params);
    this.applied.clear();
    this.retained.clear();
    for (const [id, c] of Object.entries(vector)) this.applied.set(id, new AppliedClocks(c));
    for (const m of this.view.active) this.clocksOf(m.id, m.startClock);
  }

  /** Has the vector clock reached `target` (every entry ≥)? */
  reached(target: Record<string, number>): boolean {
    for (const [id, c] of Object.entries(target)) if (this.vector(id) < Math.min(c, this.cutAt.get(id) ?? c)) return false;
    return true;
  }

  /** Cut workers whose updates up to the cut this replica still lacks: [id, first missing clock]. */
  lacking(): [string, number][] {
    const out: [string, number][] = [];
    for (const [id, k] of this.cutAt) if (this.vector(id) < k) out.push([id, this.vector(id) + 1]);
    return out;
  }

  digest(): Digest {
    return replicaDigest(this.params);
  }
}

/**
 * Digest of a parameter vector: sum, L2 norm and four fixed pseudo-random ±1
 * projections (same on every replica). Compare with a relative tolerance: sums
 * taken in different orders differ in the last bits.
 */
export function replicaDigest(p: Float32Array): Digest {
  let sum = 0;
  let sq = 0;
  const proj = [0, 0, 0, 0];
  let state = 0x9e3779b9;
  for (let i = 0; i < p.length; i++) {
    const v = p[i] as number;
    sum += v;
    sq += v * v;
    // xorshift32: four sign bits per coordinate.
    state ^= state << 13;
    state ^= state >>> 17;
    state ^= state << 5;
    for (let k = 0; k < 4; k++) proj[k] = (proj[k] as number) + ((state >>> k) & 1 ? v : -v);
  }
  return { sum, l2: Math.sqrt(sq), proj };
}

/** Whether two digests agree within a relative tolerance (scaled by the L2 norm). */
export function digestsAgree(a: Digest, b: Digest, rel = 1e-4): boolean {
  const scale = Math.max(a.l2, b.l2, 1e-12);
  const close = (x: number, y: number): boolean => Math.abs(x - y) <= rel * scale;
  if (!close(a.sum, b.sum) || !close(a.l2, b.l2) || a.proj.length !== b.proj.length) return false;
  return a.proj.every((v, i) => close(v, b.proj[i] as number));
}
