/**
 * The data-plane topology (client/peer/overlay.ts): for random memberships the
 * link graph is symmetric and connected, every update reaches every member
 * exactly once along links, fan-out and links stay logarithmic; and in a
 * simulated network where members learn of joins and leaves at different
 * times (two trees at once), forwarding with (worker, clock) de-duplication
 * never loops, delivers exactly once whenever views agree, and, with the
 * replicas' chase from neighbours, leaves every member with every update.
 */
import { describe, expect, it } from "vitest";
import fc from "fast-check";
import { broadcastCost, buildTopology, SeenClocks, type Topology } from "../../client/peer/overlay.ts";
import { uniformSource } from "../../client/jobs/random.ts";

const log2 = (n: number): number => Math.ceil(Math.log2(Math.max(2, n)));

/** Distinct worker numbers, 1..size of them. */
const membership = (max: number) => fc.uniqueArray(fc.integer({ min: 1, max: 100_000 }), { minLength: 1, maxLength: max });

function connected(t: Topology): boolean {
  const [first] = t.members;
  if (first === undefined) return true;
  const seen = new Set([first]);
  const todo = [first];
  while (todo.length > 0) {
    const x = todo.pop() as number;
    for (const y of t.neighbours(x)) if (!seen.has(y)) (seen.add(y), todo.push(y));
  }
  return seen.size === t.members.length;
}

describe("topology of one view", () => {
  it("is symmetric, connected, reaches every member exactly once, with logarithmic fan-out and links", () => {
    fc.assert(
      fc.property(membership(200), fc.integer({ min: 0, max: 24 }), (ids, meshMax) => {
        const t = buildTopology(ids, meshMax);
        const n = ids.length;
        expect(t.kind).toBe(n <= meshMax ? "mesh" : "overlay");
        expect([...t.members].sort((a, b) => a - b)).toEqual([...ids].sort((a, b) => a - b));
        expect(connected(t)).toBe(true);
        for (const x of ids) {
          const nb = t.neighbours(x);
          expect(nb).not.toContain(x);
          for (const y of nb) expect(t.neighbours(y)).toContain(x);
          if (t.kind === "overlay") expect(nb.length).toBeLessThanOrEqual(2 * log2(n));
        }
        // Every origin's tree: each edge is a link, each member gets it once, parents agree.
        for (const origin of ids.slice(0, 12)) {
          const got = new Map<number, number>();
          const todo = [origin];
          let sends = 0;
          while (todo.length > 0) {
            const x = todo.pop() as number;
            const kids = t.forwardTo(origin, x);
            if (t.kind === "overlay") expect(kids.length).toBeLessThanOrEqual(log2(n));
            for (const y of kids) {
              expect(t.neighbours(x)).toContain(y);
              expect(t.parentOf(origin, y)).toBe(x);
              got.set(y, (got.get(y) ?? 0) + 1);
              todo.push(y);
              expect(++sends).toBeLessThan(n);
            }
          }
          expect(t.parentOf(origin, origin)).toBeNull();
          for (const m of ids) expect(got.get(m) ?? 0).toBe(m === origin ? 0 : 1);
        }
      }),
      { numRuns: 150 },
    );
  });

  it("non-members have no links and forward nothing", () => {
    const t = buildTopology([3, 5, 9, 11, 20], 2);
    expect(t.neighbours(4)).toEqual([]);
    expect(t.forwardTo(3, 4)).toEqual([]);
    expect(t.forwardTo(4, 3)).toEqual([]);
    expect(t.parentOf(3, 4)).toBeNull();
  });

  it("costs per clock: own fan-out and links ceil(log2 N) and 2 ceil(log2 N), upload N - 1 for everybody", () => {
    for (const n of [8, 16, 32, 64, 128]) {
      const ids = Array.from({ length: n }, (_, i) => 3 * i + 1);
      const overlay = broadcastCost(buildTopology(ids, 0));
      const mesh = broadcastCost(buildTopology(ids, n));
      expect(overlay.deliveryErrors).toBe(0);
      expect(mesh.deliveryErrors).toBe(0);
      expect(mesh.ownFanoutMax).toBe(n - 1);
      expect(overlay.ownFanoutMax).toBe(log2(n));
      expect(overlay.linksMax).toBeLessThanOrEqual(2 * log2(n));
      expect(overlay.depthMax).toBeLessThanOrEqual(log2(n));
      // Total sends per clock are N(N - 1) in any topology; the overlay spreads them evenly.
      expect(overlay.uploadMax).toBe(n - 1);
      expect(mesh.uploadMax).toBe(n - 1);
    }
  });

  it("a join or a leave moves few links", () => {
    const ids = Array.from({ length: 64 }, (_, i) => i + 1);
    const before = buildTopology(ids, 0);
    const after = buildTopology(ids.filter((x) => x !== 30), 0);
    let changed = 0;
    for (const x of ids) {
      if (x === 30) continue;
      const a = new Set(before.neighbours(x));
      const b = new Set(after.neighbours(x));
      for (const y of a) if (!b.has(y) && y !== 30) changed++;
      for (const y of b) if (!a.has(y)) changed++;
    }
    // Per remaining member, a few links of its 2 log2 N change (a full re-wire would be ~10).
    expect(changed / 63).toBeLessThan(4);
  });
});

describe("SeenClocks", () => {
  it("says true once per (worker, clock) and keeps bounded memory", () => {
    const s = new SeenClocks(8);
    expect(s.mark(1, 5)).toBe(true);
    expect(s.mark(1, 5)).toBe(false);
    expect(s.mark(2, 5)).toBe(true);
    for (let c = 6; c < 100; c++) expect(s.mark(1, c)).toBe(true);
    expect(s.mark(1, 50)).toBe(false);
    expect(s.mark(1, 95)).toBe(false);
    s.retain(new Set([1]));
    expect(s.mark(2, 5)).toBe(true);
  });
});

// ---------------------------------------------------------------------------
// Repair under churn, in a simulated network
// ---------------------------------------------------------------------------

interface SimNode {
  view: Topology;
  clock: number;
  readonly seen: SeenClocks;
  /** Updates applied, "origin:clock" → times received (the replica applies the first, ignores the rest). */
  readonly got: Map<string, number>;
}

interface Msg {
  from: number;
  to: number;
  origin: number;
  clock: number;
}

function simulate(seed: number, initial: number, meshMax: number, steps: number) {
  const rand = uniformSource(seed);
  const pick = <T,>(xs: readonly T[]): T => xs[Math.floor(rand() * xs.length)] as T;
  let members = Array.from({ length: initial }, (_, i) => i + 1);
  let nextId = initial + 1;
  const nodes = new Map<number, SimNode>();
  const newNode = (view: Topology): SimNode => ({ view, clock: 0, seen: new SeenClocks(), got: new Map() });
  let view = buildTopology(members, meshMax);
  for (const m of members) nodes.set(m, newNode(view));
  const inFlight: Msg[] = [];
  const authored = new Map<string, number>(); // "o:c" → origin
  let sent = 0;
  let stableDuplicates = 0;
  const viewsAgree = (): boolean => [...nodes.values()].every((n) => n.view === view);
  /** A message crosses a link only when both ends' views have it (both ends keep it open). */
  const linked = (a: number, b: number): boolean => {
    const na = nodes.get(a);
    const nb = nodes.get(b);
    return !!na && !!nb && na.view.neighbours(a).includes(b) && nb.view.neighbours(b).includes(a);
  };
  const send = (from: number, origin: number, clock: number): void => {
    const n = nodes.get(from) as SimNode;
    for (const to of n.view.forwardTo(origin, from)) {
      if (!linked(from, to)) continue; // link not open yet: the update is lost on this edge
      inFlight.push({ from, to, origin, clock });
      sent++;
    }
  };
  /** Updates authored while every member held the current view. */
  const authoredUnder = new Map<string, Topology>();
  const receive = (m: Msg): void => {
    const n = nodes.get(m.to);
    if (!n || !linked(m.from, m.to)) return;
    const key = `${m.origin}:${m.clock}`;
    const times = (n.got.get(key) ?? 0) + 1;
    n.got.set(key, times);
    // No view change since it was authored under a view all members held: exactly once.
    if (times > 1 && authoredUnder.get(key) === view && viewsAgree()) stableDuplicates++;
    if (n.seen.mark(m.origin, m.clock)) send(m.to, m.origin, m.clock);
  };
  for (let step = 0; step < steps; step++) {
    const r = rand();
    if (r < 0.3) {
      // Some member authors its next update.
      const a = pick([...nodes.keys()]);
      const n = nodes.get(a) as SimNode;
      n.clock++;
      authored.set(`${a}:${n.clock}`, a);
      n.got.set(`${a}:${n.clock}`, 1);
      n.seen.mark(a, n.clock);
      if (viewsAgree()) authoredUnder.set(`${a}:${n.clock}`, view);
      send(a, a, n.clock);
    } else if (r < 0.85 && inFlight.length > 0) {
      const i = Math.floor(rand() * inFlight.length);
      const [m] = inFlight.splice(i, 1);
      receive(m as Msg);
    } else if (r < 0.9) {
      // The coordinator's view changes: a join or a leave.
      if (rand() < 0.5 || members.length <= 2) {
        const id = nextId++;
        members = [...members, id];
        nodes.set(id, newNode(buildTopology([], meshMax)));
      } else {
        const gone = pick(members);
        members = members.filter((x) => x !== gone);
        nodes.delete(gone);
      }
      view = buildTopology(members, meshMax);
    } else {
      // One member learns the current view.
      const x = pick([...nodes.keys()]);
      (nodes.get(x) as SimNode).view = view;
    }
  }
  // Everyone learns the last view; the in-flight messages land.
  for (const n of nodes.values()) n.view = view;
  while (inFlight.length > 0) receive(inFlight.splice(Math.floor(rand() * inFlight.length), 1)[0] as Msg);
  // Chase: a member lacking updates asks its neighbours, which answer from what they hold.
  const live = [...nodes.keys()];
  const wanted = [...authored.keys()].filter((k) => live.some((x) => nodes.get(x)?.got.has(k)));
  let rounds = 0;
  for (let progress = true; progress && rounds < 1000; rounds++) {
    progress = false;
    for (const x of live) {
      const n = nodes.get(x) as SimNode;
      for (const k of wanted) {
        if (n.got.has(k)) continue;
        if (view.neighbours(x).some((y) => nodes.get(y)?.got.has(k))) {
          n.got.set(k, 1);
          progress = true;
        }
      }
    }
  }
  return { nodes, live, wanted, sent, stableDuplicates, authored };
}

describe("overlay repair under churn (simulated network)", () => {
  it("never loops, no duplicates while views agree, and every member ends with every surviving update", () => {
    fc.assert(
      fc.property(fc.integer(), fc.integer({ min: 2, max: 40 }), fc.integer({ min: 0, max: 12 }), (seed, initial, meshMax) => {
        const { nodes, live, wanted, sent, stableDuplicates, authored } = simulate(seed, initial, meshMax, 600);
        // Each node forwards each (origin, clock) at most once: sends are bounded by the fan-outs.
        const bound = authored.size * [...nodes.values()].length * 2 * log2(initial + 200);
        expect(sent).toBeLessThanOrEqual(bound);
        expect(stableDuplicates).toBe(0);
        for (const x of live) for (const k of wanted) expect(nodes.get(x)?.got.has(k)).toBe(true);
      }),
      { numRuns: 80 },
    );
  });
});
