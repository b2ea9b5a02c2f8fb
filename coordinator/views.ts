/**
 * Views as deltas. The coordinator publishes a view epoch at most once per
 * batch window; a worker that already holds epoch e − 1 gets only what changed
 * (members added, changed or removed, cuts added or lowered, and the small
 * job-wide fields), a joiner or a worker that asked (`view-request`) gets the
 * whole view. A page rebuilds the full view from its previous one with
 * `applyViewDelta`, so everything downstream (replica, gate, peers) still sees
 * complete views with the same meaning.
 *
 * Cost per membership change: one delta of ~100 bytes per worker, instead of
 * a full view of ~80 bytes per member per worker (N² bytes per change).
 */
import type { ViewDeltaMessage, ViewMember, ViewMessage } from "./protocol.ts";
import { compareWorkerIds } from "./ssp.ts";

type Cut = { id: string; clock: number };
/** What a view says, without its type and epoch. */
export type ViewContent = Omit<ViewMessage, "type" | "epoch">;

function sameMember(a: ViewMember, b: ViewMember): boolean {
  return a.id === b.id && a.peerId === b.peerId && a.startClock === b.startClock && (a.syncing === true) === (b.syncing === true);
}

/**
 * The coordinator's side: remembers the last published view and turns the
 * next one into a delta against it.
 */
export class ViewBook {
  private epochValue = 0;
  private members = new Map<string, ViewMember>();
  private cutsById = new Map<string, number>();
  private current: ViewMessage | null = null;

  /** `startEpoch`: the last epoch an earlier run of the job published (after a restart). */
  constructor(startEpoch = 0) {
    this.epochValue = startEpoch;
  }

  get epoch(): number {
    return this.epochValue;
  }

  /** The last published view in full (null before the first). */
  full(): ViewMessage | null {
    return this.current;
  }

  /**
   * Publish `next` (active members sorted by id). Returns the full view and the
   * delta from the previous epoch, or a null delta when nothing changed (the
   * epoch then stays). O(members + cuts) per call, once per batch window.
   */
  publish(next: ViewContent, force = false): { full: ViewMessage; delta: ViewDeltaMessage | null } {
    const upsert: ViewMember[] = [];
    const remove: string[] = [];
    const seen = new Set<string>();
    for (const m of next.active) {
      seen.add(m.id);
      const before = this.members.get(m.id);
      if (!before || !sameMember(before, m)) upsert.push(m);
    }
    for (const id of this.members.keys()) if (!seen.has(id)) remove.push(id);
    const cuts: Cut[] = [];
    for (const c of next.cuts) if (this.cutsById.get(c.id) !== c.clock) cuts.push({ id: c.id, clock: c.clock });
    const prev = this.current;
    const metaSame =
      prev !== null &&
      prev.state === next.state &&
      prev.evaluator === next.evaluator &&
      prev.consistency.mode === next.consistency.mode &&
      prev.consistency.staleness === next.consistency.staleness;
    if (prev !== null && !force && metaSame && upsert.length === 0 && remove.length === 0 && cuts.length === 0) {
      return { full: prev, delta: null };
    }
    const base = this.epochValue;
    this.epochValue++;
    this.members = new Map(next.active.map((m) => [m.id, m]));
    this.cutsById = new Map(next.cuts.map((c) => [c.id, c.clock]));
    this.current = { type: "view", epoch: this.epochValue, ...next };
    const delta: ViewDeltaMessage = {
      type: "view-delta",
      epoch: this.epochValue,
      base,
      upsert,
      remove,
      cuts,
      consistency: next.consistency,
      state: next.state,
      evaluator: next.evaluator,
    };
    return { full: this.current, delta };
  }
}

/**
 * The page's side: the full view of epoch `delta.epoch`, built from the full
 * view of epoch `delta.base`; null when `view` is not that epoch (the page
 * missed one and must ask for the full view). Members stay sorted by id; cuts
 * keep their order, new ones are appended.
 */
export function applyViewDelta(view: ViewMessage, delta: ViewDeltaMessage): ViewMessage | null {
  if (view.epoch !== delta.base) return null;
  const removed = new Set(delta.remove);
  const changed = new Map(delta.upsert.map((m) => [m.id, m]));
  const active: ViewMember[] = [];
  for (const m of view.active) {
    if (removed.has(m.id)) continue;
    const c = changed.get(m.id);
    if (c) changed.delete(m.id);
    active.push(c ?? m);
  }
  let sorted = true;
  for (const m of changed.values()) {
    const last = active[active.length - 1];
    if (last && compareWorkerIds(last.id, m.id) > 0) sorted = false;
    active.push(m);
  }
  if (!sorted) active.sort((a, b) => compareWorkerIds(a.id, b.id));
  const lowered = new Map(delta.cuts.map((c) => [c.id, c.clock]));
  const cuts: Cut[] = view.cuts.map((c) => {
    const k = lowered.get(c.id);
    if (k === undefined) return c;
    lowered.delete(c.id);
    return { id: c.id, clock: k };
  });
  for (const [id, clock] of lowered) cuts.push({ id, clock });
  return {
    type: "view",
    epoch: delta.epoch,
    active,
    cuts,
    consistency: delta.consistency,
    state: delta.state,
    evaluator: delta.evaluator,
  };
}
