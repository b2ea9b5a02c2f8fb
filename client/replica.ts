/**
 * One worker's replica of the parameters and its consistency bookkeeping,
 * pure (no I/O): the vector clock, exactly-once application of updates in any
 * order, retained updates for re-sending and reverting, cuts, the SSP gate and
 * the end digest. The Web Worker drives it; unit tests drive it directly.
 */
import { AppliedClocks, blockers, compareWorkerIds, gateOpen } from "../coordinator/ssp.ts";
import type { Consistency, Digest, ViewMember } from "../coordinator/protocol.ts";
import { aggregate, isRobust, MEAN, type Aggregation } from "./aggregate.ts";

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

/**
 * Robust aggregation (client/aggregate.ts) changes what "applied" means. With
 * `mean` an update is added to the parameters when it arrives, as always. With
 * a robust rule an update is *held*: it counts in the vector clock and is
 * retained, but reaches the parameters only when its clock is *finalized*:
 *
 *   - the frontier F: clocks 1..F are finalized, in order; clock F+1 is
 *     finalized once every active worker outside syncing, and every cut worker
 *     below its cut, has V[j] ≥ F+1;
 *   - the contributors of a finalized clock c are the senders j with c ≤ V[j]
 *     that hold an update at c (clocks up to a sender's start are empty), in
 *     worker-id order; `committed` gains aggregate(contributors) once;
 *   - an update that arrives for a clock already finalized (a replica that saw
 *     a view late), or one a cut takes back, re-aggregates that clock: the old
 *     aggregate out, the new one in (possible while the clock's updates are
 *     retained, i.e. above `prunedThrough`);
 *   - `params`, what the next step computes on, is `committed` plus this
 *     worker's own updates not finalized yet (read-your-writes); other
 *     workers' updates never reach it before their clock is aggregated;
 *   - at the end (`finalizeAll`, after the drain) every clock up to the
 *     highest held one is finalized with what is held, the same set on every
 *     replica by then, so the replicas end equal.
 */
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
  private readonly robust: boolean;
  /** Robust mode: the parameters holding the finalized clocks' aggregates (null with `mean`). */
  private readonly committed: Float32Array | null;
  /** Robust mode: clocks 1..frontier are finalized. */
  private frontier = 0;
  /** Robust mode: at or below this clock a clock's updates may be incomplete (pruned), so it cannot be re-aggregated. */
  private prunedThrough = 0;
  /** Start clock of each sender seen in a view (its clocks up to it are empty). */
  private readonly starts = new Map<string, number>();
  /** Robust mode: late updates or cuts of a finalized clock that could not be folded in (the replica may then differ). */
  lateUnfolded = 0;

  constructor(
    readonly self: string,
    initial: Float32Array,
    view: ReplicaView,
    readonly aggregation: Aggregation = MEAN,
  ) {
    this.params = Float32Array.from(initial);
    this.robust = isRobust(aggregation);
    this.committed = this.robust ? Float32Array.from(initial) : null;
    this.view = view;
    for (const m of view.active) this.clocksOf(m.id, m.startClock);
  }

  private clocksOf(id: string, start = 0): AppliedClocks {
    if (start > 0 && start > (this.starts.get(id) ?? 0)) this.starts.set(id, start);
    let a = this.applied.get(id);
    if (!a) {
      a = new AppliedClocks(start);
      this.applied.set(id, a);
    } else {
      const before = a.prefix;
      a.advanceTo(start);
      if (a.prefix > before) this.prefixMoved(id, before);
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
    const before = a.prefix;
    if (!a.add(clock)) return "duplicate";
    this.appliedCount++;
    let r = this.retained.get(sender);
    if (!r) {
      r = new Map();
      this.retained.set(sender, r);
    }
    r.set(clock, update);
    if (this.committed) {
      if (a.prefix > before) this.prefixMoved(sender, before);
      if (!this.advance() && sender === this.self) {
        // Read-your-writes: the working parameters gain the own update at once.
        const p = this.params;
        for (let i = 0; i < p.length; i++) p[i] = (p[i] as number) + (update[i] as number);
      }
      return "applied";
    }
    const p = this.params;
    for (let i = 0; i < p.length; i++) p[i] = (p[i] as number) + (update[i] as number);
    this.prune(sender);
    return "applied";
  }

  // ------------------------------------------------------------ robust mode

  /** Robust mode: the finalized clocks (1..frontier). */
  get finalized(): number {
    return this.frontier;
  }

  /** The clock up to which every worker that counts has its updates held here (robust mode's next finalization bound). */
  private ready(): number {
    let min = Infinity;
    for (const m of this.view.active) if (!m.syncing) min = Math.min(min, this.vector(m.id));
    for (const c of this.view.cuts) {
      const v = this.vector(c.id);
      if (v < c.clock) min = Math.min(min, v);
    }
    return Number.isFinite(min) ? min : this.frontier;
  }

  /** Senders whose update at `clock` is held within their prefix, in worker-id order (`except` left out). */
  private contributors(clock: number, except?: string): string[] {
    const ids: string[] = [];
    for (const [id, a] of this.applied) {
      if (id === except || a.prefix < clock) continue;
      if (this.retained.get(id)?.has(clock)) ids.push(id);
    }
    return ids.sort(compareWorkerIds);
  }

  private aggregateOf(clock: number, ids: readonly string[]): Float32Array {
    const ups = ids.map((id) => this.retained.get(id)?.get(clock) as Float32Array);
    return aggregate(ups, this.aggregation, this.params.length);
  }

  /** Finalize every clock the held updates allow, then recompute the working parameters; false when none was. */
  private advance(): boolean {
    if (!this.committed) return false;
    const upTo = this.ready();
    if (upTo <= this.frontier) return false;
    for (let c = this.frontier + 1; c <= upTo; c++) this.finalizeClock(c);
    this.rebuild();
    return true;
  }

  private finalizeClock(c: number): void {
    const committed = this.committed as Float32Array;
    const ids = this.contributors(c);
    if (ids.length > 0) {
      const agg = this.aggregateOf(c, ids);
      for (let i = 0; i < committed.length; i++) committed[i] = (committed[i] as number) + (agg[i] as number);
    }
    this.frontier = c;
  }

  /** Working parameters: the committed ones plus this worker's own updates not finalized yet, in clock order. */
  private rebuild(): void {
    const committed = this.committed;
    if (!committed) return;
    const p = this.params;
    p.set(committed);
    const own = this.retained.get(this.self);
    if (!own) return;
    const pending = [...own.keys()].filter((c) => c > this.frontier).sort((a, b) => a - b);
    for (const c of pending) {
      const u = own.get(c) as Float32Array;
      for (let i = 0; i < p.length; i++) p[i] = (p[i] as number) + (u[i] as number);
    }
  }

  /**
   * Replace finalized clock `clock`'s aggregate over `before` by the one over
   * `after` (a late update, or a cut). False when the clock's updates are no
   * longer all retained.
   */
  private refold(clock: number, before: readonly string[], after: readonly string[]): boolean {
    const committed = this.committed as Float32Array;
    if (clock <= this.prunedThrough || [...before, ...after].some((id) => !this.retained.get(id)?.has(clock))) {
      this.lateUnfolded++;
      return false;
    }
    const old = this.aggregateOf(clock, before);
    const now = this.aggregateOf(clock, after);
    for (let i = 0; i < committed.length; i++) committed[i] = (committed[i] as number) - (old[i] as number) + (now[i] as number);
    return true;
  }

  /** Sender `id`'s prefix moved up from `before`: finalized clocks it now covers gain its updates there. */
  private prefixMoved(id: string, before: number): void {
    if (!this.committed) return;
    const a = this.applied.get(id);
    const r = this.retained.get(id);
    if (!a || !r) return;
    const top = Math.min(a.prefix, this.frontier);
    let changed = false;
    for (let c = before + 1; c <= top; c++) {
      if (!r.has(c)) continue;
      this.refold(c, this.contributors(c, id), this.contributors(c));
      changed = true;
    }
    if (changed) this.rebuild();
  }

  /**
   * Robust mode, at the end of the job (after the drain: every replica holds
   * the same updates): finalize every clock up to the highest one held.
   */
  finalizeAll(): void {
    if (!this.committed) return;
    let top = this.frontier;
    for (const a of this.applied.values()) top = Math.max(top, a.prefix);
    for (let c = this.frontier + 1; c <= top; c++) this.finalizeClock(c);
    this.rebuild();
  }

  /** The parameters every replica agrees on: with a robust rule the committed ones, else `params`. */
  model(): Float32Array {
    return this.committed ?? this.params;
  }

  /** Start from given parameters (a restarted coordinator's checkpoint) before anything was applied. */
  setBase(params: Float32Array): void {
    this.params.set(params);
    this.committed?.set(params);
    this.rebuild();
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
    // Robust mode: clocks not finalized keep their updates whatever the stable point says.
    const below = (this.committed ? Math.min(stable, this.frontier) : stable) - RETAIN_MIN;
    if (this.committed) this.prunedThrough = Math.max(this.prunedThrough, below);
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
      const beyond = a.appliedAbove(k);
      if (this.committed) {
        // Robust mode: finalized clocks that counted an update beyond the cut
        // are aggregated again without it (before anything is removed, so the
        // contributor lists are those of the finalization); then the held
        // updates beyond the cut are dropped.
        for (const c of beyond) {
          if (c > this.frontier || c > a.prefix) continue;
          const before = this.contributors(c);
          if (!r?.has(c) || !this.refold(c, before, before.filter((x) => x !== id))) unrevertable++;
        }
        for (const c of beyond) {
          a.remove(c);
          if (r?.delete(c)) this.appliedCount--;
        }
        const lack = a.missingUpTo(k);
        if (lack.length > 0) missing.push({ id, clocks: lack });
        continue;
      }
      for (const c of beyond) {
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
    if (this.committed) {
      this.rebuild();
      this.advance();
    }
    return { missing, unrevertable };
  }

  /**
   * A consistent snapshot for a joiner: the parameters holding exactly the
   * updates the vector clock names. Updates applied out of order above a
   * prefix are subtracted (they are always retained: they are recent), so the
   * joiner can receive them again without counting them twice.
   */
  snapshot(): { params: Float32Array; vector: Record<string, number>; retained: RetainedUpdate[]; frontier: number } {
    if (this.committed) return this.robustSnapshot(this.committed);
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
    return { params, vector: this.vectorClock(), retained, frontier: 0 };
  }

  /**
   * Robust mode: a snapshot at level L = `prunedThrough` (the highest clock
   * whose updates may no longer all be retained here): the committed
   * parameters minus the aggregates of clocks L+1..frontier, which hold, of
   * each sender j, exactly its updates up to min(V[j], L), or up to its start
   * when that is higher (those clocks are empty); that is the vector clock
   * sent, with L as the snapshot's frontier. The joiner receives every update
   * above it from its peers like any other and finalizes those clocks itself,
   * knowing their contributors, so it can re-aggregate them as any replica.
   */
  private robustSnapshot(committed: Float32Array): { params: Float32Array; vector: Record<string, number>; retained: RetainedUpdate[]; frontier: number } {
    const level = Math.min(this.prunedThrough, this.frontier);
    const params = Float32Array.from(committed);
    for (let c = this.frontier; c > level; c--) {
      const agg = this.aggregateOf(c, this.contributors(c));
      for (let i = 0; i < params.length; i++) params[i] = (params[i] as number) - (agg[i] as number);
    }
    const vector: Record<string, number> = {};
    for (const [id, a] of this.applied) vector[id] = Math.max(Math.min(a.prefix, level), this.starts.get(id) ?? 0);
    return { params, vector, retained: [], frontier: level };
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

  /**
   * Replace the replica with a peer's snapshot (a joiner's first step).
   * Robust mode: `frontier` is the snapshot's level (the SNAPSHOT frame's
   * clock, see robustSnapshot): clocks up to it are finalized and, as on the
   * peer, can no longer be re-aggregated.
   */
  loadSnapshot(params: Float32Array, vector: Record<string, number>, frontier = 0): void {
    if (params.length !== this.params.length) throw new Error("snapshot of the wrong size");
    this.params.set(params);
    this.applied.clear();
    this.retained.clear();
    for (const [id, c] of Object.entries(vector)) this.applied.set(id, new AppliedClocks(c));
    if (this.committed) {
      this.committed.set(params);
      this.frontier = frontier;
      this.prunedThrough = frontier;
      // An entry above the frontier is a start clock (see robustSnapshot).
      for (const [id, c] of Object.entries(vector)) if (c > frontier && c > (this.starts.get(id) ?? 0)) this.starts.set(id, c);
    }
    for (const m of this.view.active) this.clocksOf(m.id, m.startClock);
    this.advance();
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
    return replicaDigest(this.model());
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
