/**
 * Stale synchronous parallel bookkeeping, pure (no I/O, no clocks of the wall).
 * Used by the coordinator (views, clock bounds) and by every volunteer's replica
 * (vector clock, the SSP gate, cuts).
 *
 * Terms: the clock of worker i is the number of iterations it has completed.
 * Update u(i, c) is what iteration c of worker i produced. A replica's vector
 * clock entry V[j] is the highest c such that u(j, 1..c) are all applied.
 */
import type { Consistency, ViewMember } from "./protocol.ts";

/**
 * Which clocks of one sender a replica has applied: a contiguous prefix
 * `1..prefix` plus a sparse set above it (updates may arrive in any order).
 * Updates `1..start` are empty by definition (the sender joined mid-job).
 */
export class AppliedClocks {
  private prefixValue: number;
  private readonly above = new Set<number>();

  constructor(start = 0) {
    this.prefixValue = start;
  }

  /** V[j]: the highest c such that 1..c are all applied. */
  get prefix(): number {
    return this.prefixValue;
  }

  has(clock: number): boolean {
    return clock <= this.prefixValue || this.above.has(clock);
  }

  /** Record `clock` as applied; false when it already was (apply nothing then). */
  add(clock: number): boolean {
    if (!Number.isInteger(clock) || clock < 1 || this.has(clock)) return false;
    this.above.add(clock);
    while (this.above.delete(this.prefixValue + 1)) this.prefixValue++;
    return true;
  }

  /** Treat `1..start` as applied (the sender joined mid-job at `start`). */
  advanceTo(start: number): void {
    if (start <= this.prefixValue) return;
    for (const c of this.above) if (c <= start) this.above.delete(c);
    this.prefixValue = start;
    while (this.above.delete(this.prefixValue + 1)) this.prefixValue++;
  }

  /** Forget `clock` (its update was reverted by a cut). Returns whether it was applied. */
  remove(clock: number): boolean {
    if (this.above.delete(clock)) return true;
    if (clock >= 1 && clock <= this.prefixValue) {
      for (let c = clock + 1; c <= this.prefixValue; c++) this.above.add(c);
      this.prefixValue = clock - 1;
      return true;
    }
    return false;
  }

  /** Applied clocks above `clock`, ascending. */
  appliedAbove(clock: number): number[] {
    const out: number[] = [];
    for (let c = clock + 1; c <= this.prefixValue; c++) out.push(c);
    for (const c of this.above) if (c > clock) out.push(c);
    return out.sort((a, b) => a - b);
  }

  /** Clocks in `1..upTo` not applied yet, ascending. */
  missingUpTo(upTo: number): number[] {
    const out: number[] = [];
    for (let c = this.prefixValue + 1; c <= upTo; c++) if (!this.above.has(c)) out.push(c);
    return out;
  }
}

/** Effective staleness bound: BSP is 0, ASP is unbounded. */
export function stalenessBound(c: Consistency): number {
  switch (c.mode) {
    case "bsp":
      return 0;
    case "ssp":
    case "auto":
      return c.staleness;
    case "asp":
      return Number.POSITIVE_INFINITY;
  }
}

/**
 * The SSP gate: may a worker whose clock is `clock` start iteration
 * `clock + 1`? Only when `V[j] ≥ clock − s` for every active worker j.
 * `vector(j)` is the replica's V[j] (its own entry included).
 */
export function gateOpen(
  clock: number,
  active: readonly Pick<ViewMember, "id" | "syncing">[],
  vector: (id: string) => number,
  consistency: Consistency,
): boolean {
  const s = stalenessBound(consistency);
  if (!Number.isFinite(s)) return true;
  for (const m of active) if (!m.syncing && vector(m.id) < clock - s) return false;
  return true;
}

/** The worker ids that hold a replica at `clock` back (for status and logs). */
export function blockers(
  clock: number,
  active: readonly Pick<ViewMember, "id" | "syncing">[],
  vector: (id: string) => number,
  consistency: Consistency,
): string[] {
  const s = stalenessBound(consistency);
  if (!Number.isFinite(s)) return [];
  return active.filter((m) => !m.syncing && vector(m.id) < clock - s).map((m) => m.id);
}

export interface ClockRange {
  readonly min: number;
  readonly max: number;
}

export function clockRange(clocks: readonly number[]): ClockRange {
  if (clocks.length === 0) return { min: 0, max: 0 };
  let min = Infinity;
  let max = -Infinity;
  for (const c of clocks) {
    if (c < min) min = c;
    if (c > max) max = c;
  }
  return { min, max };
}

/** Numeric order of worker ids "w1" < "w2" < "w10". */
export function compareWorkerIds(a: string, b: string): number {
  return Number(a.slice(1)) - Number(b.slice(1));
}

/**
 * Lower the cut of `id` to `clock` (never raise it): used when an update at
 * or below the cut turns out to be held by no surviving replica, so every
 * replica can still end with exactly u(id, 1..cut).
 */
export function lowerCut(
  cuts: readonly { id: string; clock: number }[],
  id: string,
  clock: number,
): { id: string; clock: number }[] {
  return cuts.map((c) => (c.id === id && clock < c.clock ? { id, clock: Math.max(0, clock) } : c));
}
