/**
 * One worker's replica of the parameters and its consistency bookkeeping,
 * pure (no I/O): the vector clock, exactly-once application of updates in any
 * order, retained updates for re-sending and reverting, cuts, the SSP gate and
 * the end digest. The Web Worker drives it; unit tests drive it directly.
 */
import { AppliedClocks, blockers, gateOpen, stalenessBound } from "../coordinator/ssp.ts";
import type { Consistency, Digest, ViewMember } from "../coordinator/protocol.ts";

export type ReceiveResult = "applied" | "duplicate" | "cut" | "bad-length";

export interface ReplicaView {
  readonly active: readonly ViewMember[];
  readonly cuts: readonly { id: string; clock: number }[];
  readonly consistency: Consistency;
}

/** Number of extra clocks kept beyond the staleness window (design: s + 2). */
const RETAIN_SLACK = 2;
/** Retain at least this many clocks per sender (covers joins and cuts). */
const RETAIN_MIN = 8;

export class Replica {
  readonly params: Float32Array;
  private readonly applied = new Map<string, AppliedClocks>();
  /** Retained updates by sender, then clock. */
  private readonly retained = new Map<string, Map<number, Float32Array>>();
  private readonly cutAt = new Map<string, number>();
  private view: ReplicaView;
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

  /** The smallest V[j] over the active workers. */
  minActive(): number {
    let min = Infinity;
    for (const m of this.view.active) min = Math.min(min, this.vector(m.id));
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

  private retainWindow(): number {
    const s = stalenessBound(this.view.consistency);
    return Math.max(RETAIN_MIN, (Number.isFinite(s) ? s : RETAIN_MIN) + RETAIN_SLACK);
  }

  private prune(sender: string): void {
    const r = this.retained.get(sender);
    if (!r) return;
    const keepFrom = this.vector(sender) - this.retainWindow() * 2;
    for (const c of r.keys()) if (c < keepFrom) r.delete(c);
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
    for (const [id, c] of Object.entries(target)) if (this.vector(id) < c) return false;
    return true;
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
