/**
 * The consistency protocol in a deterministic simulated network: real
 * `Replica` objects (client/replica.ts) and the coordinator's cut rules
 * (coordinator/ssp.ts), driven through thousands of random schedules with
 * reordering, delay, duplication, loss with retransmission, crashes, joins and
 * drops. Properties:
 *   - the SSP invariant: no active worker starts c+1 while, in its replica,
 *     some active j has V[j] < c − s (checked against an independent record of
 *     what that replica applied, not the replica's own vector clock);
 *   - no update is applied twice, and every cut is respected by every replica;
 *   - at the end every replica holds exactly the same set of updates, and its
 *     parameters equal the sum of that set to 1e-6 relative.
 */
import { describe, expect, it } from "vitest";
import fc from "fast-check";
import { Replica, type ReplicaView } from "../../client/replica.ts";
import { MEAN, parseAggregation, type Aggregation } from "../../client/aggregate.ts";
import { lowerCut, stalenessBound } from "../../coordinator/ssp.ts";
import type { Consistency, ViewMember } from "../../coordinator/protocol.ts";

const DIM = 6;

/** u(author, clock): a fixed pseudo-random vector, so sums can be recomputed exactly. */
function updateOf(author: string, clock: number): Float32Array {
  const u = new Float32Array(DIM);
  let h = (Number(author.slice(1)) * 1_000_003 + clock * 7919) >>> 0;
  for (let i = 0; i < DIM; i++) {
    h = Math.imul(h ^ (h >>> 15), 0x2c1b3c6d) >>> 0;
    u[i] = ((h % 2001) - 1000) / 1000;
  }
  return u;
}

class Rng {
  constructor(private s: number) {
    this.s = s >>> 0 || 1;
  }
  next(): number {
    let x = this.s;
    x ^= x << 13;
    x ^= x >>> 17;
    x ^= x << 5;
    this.s = x >>> 0;
    return this.s / 4294967296;
  }
  int(n: number): number {
    return Math.floor(this.next() * n);
  }
  chance(p: number): boolean {
    return this.next() < p;
  }
}

interface SimWorker {
  readonly id: string;
  readonly replica: Replica;
  alive: boolean;
  /** Independent record: clocks of each author this replica applied. */
  readonly applied: Map<string, Set<number>>;
  startClock: number;
  final: number | null;
}

interface Msg {
  readonly to: string;
  readonly author: string;
  readonly clock: number;
  /** Deliveries to skip before this one may arrive (a retransmitted packet). */
  late?: number;
}

interface Faults {
  readonly reorder: boolean;
  readonly duplicate: number;
  readonly loss: number;
  readonly crash: number;
  readonly join: number;
  readonly drop: number;
}

interface Outcome {
  readonly steps: number;
  readonly applied: number;
  readonly cuts: number;
  readonly joins: number;
}

function prefix(set: Set<number> | undefined, start: number): number {
  let c = start;
  while (set?.has(c + 1)) c++;
  return c;
}

/** One schedule; throws (via expect) when a property is violated. */
function simulate(seed: number, n0: number, consistency: Consistency, faults: Faults, events: number, aggregation: Aggregation = MEAN): Outcome {
  const robust = aggregation.rule.kind !== "mean";
  const rng = new Rng(seed);
  const s = stalenessBound(consistency);
  const workers = new Map<string, SimWorker>();
  let nextId = 1;
  let members: ViewMember[] = [];
  let cuts: { id: string; clock: number }[] = [];
  /** Clock each worker last reported to the coordinator. */
  const reported = new Map<string, number>();
  /** minApplied each worker last reported. */
  const reportedMin = new Map<string, number>();
  let net: Msg[] = [];
  let steps = 0;
  let joins = 0;

  const view = (): ReplicaView => ({ active: members, cuts, consistency });
  const publish = (): void => {
    for (const w of workers.values()) if (w.alive && members.some((m) => m.id === w.id)) onView(w);
  };
  const onView = (w: SimWorker): void => {
    const res = w.replica.setView(view());
    expect(res.unrevertable, `${w.id} could not revert updates beyond a cut`).toBe(0);
    // The independent record follows the cut rule too.
    for (const c of cuts) {
      const set = w.applied.get(c.id);
      if (set) for (const k of [...set]) if (k > c.clock) set.delete(k);
    }
  };
  const record = (w: SimWorker, author: string, clock: number): void => {
    let set = w.applied.get(author);
    if (!set) {
      set = new Set();
      w.applied.set(author, set);
    }
    expect(set.has(clock), `${w.id} applied u(${author},${clock}) twice`).toBe(false);
    set.add(clock);
  };
  const deliver = (m: Msg): void => {
    const w = workers.get(m.to);
    if (!w?.alive || !members.some((x) => x.id === w.id)) return;
    const r = w.replica.receive(m.author, m.clock, updateOf(m.author, m.clock));
    if (r === "applied") {
      const cut = cuts.find((c) => c.id === m.author);
      expect(cut === undefined || m.clock <= cut.clock, `${w.id} applied u(${m.author},${m.clock}) beyond its cut`).toBe(true);
      record(w, m.author, m.clock);
    }
  };
  const send = (from: string, author: string, clock: number): void => {
    for (const m of members) {
      if (m.id === from) continue;
      // A lost packet is retransmitted by the reliable channel: it arrives late.
      net.push({ to: m.id, author, clock, ...(rng.chance(faults.loss) ? { late: 3 + rng.int(20) } : {}) });
      if (rng.chance(faults.duplicate)) net.push({ to: m.id, author, clock });
    }
  };
  /** Anti-entropy: `w` asks every live member for what it lacks; they answer from retained updates. */
  const resend = (w: SimWorker): void => {
    for (const [author] of w.applied) void author;
    const authors = new Set<string>([...members.map((m) => m.id), ...cuts.map((c) => c.id)]);
    for (const author of authors) {
      const have = w.replica.vector(author);
      for (const peer of workers.values()) {
        if (!peer.alive || peer.id === w.id || !members.some((m) => m.id === peer.id)) continue;
        for (const u of peer.replica.retainedAfter(author, have)) net.push({ to: w.id, author, clock: u.clock });
      }
    }
  };
  const join = (): void => {
    const id = `w${nextId++}`;
    const live = members.map((m) => workers.get(m.id)).filter((w): w is SimWorker => !!w?.alive);
    const start = live.length === 0 ? 0 : Math.min(...live.map((w) => reported.get(w.id) ?? w.startClock));
    members = [...members, { id, peerId: id, startClock: start }];
    const w: SimWorker = { id, replica: new Replica(id, new Float32Array(DIM), view(), aggregation), alive: true, applied: new Map(), startClock: start, final: null };
    workers.set(id, w);
    reported.set(id, start);
    reportedMin.set(id, 0);
    publish();
    const donor = live[rng.int(live.length)];
    if (donor) {
      // Snapshot: parameters holding exactly the updates the donor's vector clock names.
      const snap = donor.replica.snapshot();
      w.replica.loadSnapshot(snap.params, { ...snap.vector, [id]: start }, snap.frontier);
      for (const u of snap.retained) w.replica.importRetained(u.author, u.clock, u.update);
      for (const [author, c] of Object.entries(snap.vector)) {
        const set = new Set<number>();
        const st = members.find((m) => m.id === author)?.startClock ?? workers.get(author)?.startClock ?? 0;
        for (let k = st + 1; k <= c; k++) set.add(k);
        w.applied.set(author, set);
      }
      resend(w);
    }
    joins++;
  };
  const removeMember = (id: string): void => {
    members = members.filter((m) => m.id !== id);
    cuts = [...cuts, { id, clock: reported.get(id) ?? 0 }];
    publish();
  };

  for (let i = 0; i < n0; i++) join();

  for (let e = 0; e < events; e++) {
    const roll = rng.next();
    const live = members.map((m) => workers.get(m.id)).filter((w): w is SimWorker => !!w?.alive);
    if (roll < 0.35 && live.length > 0) {
      // A worker tries to step.
      const w = live[rng.int(live.length)] as SimWorker;
      if (w.replica.canStep()) {
        const c = w.replica.clock;
        if (Number.isFinite(s)) {
          for (const m of members) {
            const applied = prefix(w.applied.get(m.id), m.startClock);
            expect(applied, `${w.id} started ${c + 1} with V[${m.id}] = ${applied} < ${c} − ${s}`).toBeGreaterThanOrEqual(c - s);
          }
        }
        const clock = w.replica.applyOwn(updateOf(w.id, c + 1));
        record(w, w.id, clock);
        send(w.id, w.id, clock);
        steps++;
      } else if (rng.chance(0.3)) {
        resend(w);
      }
    } else if (roll < 0.75 && net.length > 0) {
      const i = faults.reorder ? rng.int(net.length) : 0;
      const m = net[i];
      if (m?.late) {
        m.late--;
        net.push(...net.splice(i, 1));
      } else {
        net.splice(i, 1);
        if (m) deliver(m);
      }
    } else if (roll < 0.8 && live.length > 0) {
      // A clock report; the coordinator answers with the stable point.
      const w = live[rng.int(live.length)] as SimWorker;
      reported.set(w.id, w.replica.clock);
      reportedMin.set(w.id, w.replica.minActive());
      const stable = Math.min(...live.map((x) => reportedMin.get(x.id) ?? 0));
      for (const x of live) x.replica.setStable(stable);
    } else if (roll < 0.8 + faults.crash && live.length > 1) {
      const w = live[rng.int(live.length)] as SimWorker;
      w.alive = false;
      removeMember(w.id);
    } else if (roll < 0.8 + faults.crash + faults.drop && live.length > 1) {
      const w = live[rng.int(live.length)] as SimWorker;
      removeMember(w.id);
      w.alive = false;
    } else if (roll < 0.8 + faults.crash + faults.drop + faults.join && members.length < 7) {
      join();
    } else if (live.length > 0) {
      resend(live[rng.int(live.length)] as SimWorker);
    }
  }

  // Drain: everyone stops; messages are delivered; replicas fetch what they lack;
  // an update that no survivor holds lowers its author's cut.
  const live = (): SimWorker[] => members.map((m) => workers.get(m.id)).filter((w): w is SimWorker => !!w?.alive);
  for (const w of live()) w.final = w.replica.clock;
  const flush = (): void => {
    while (net.length > 0) {
      const i = faults.reorder ? rng.int(net.length) : 0;
      const [m] = net.splice(i, 1);
      if (m) deliver(m);
    }
  };
  const appliedCount = (): number => live().reduce((n, w) => n + w.replica.appliedCount, 0);
  for (let round = 0; round < 100; round++) {
    const before = appliedCount();
    flush();
    for (const w of live()) resend(w);
    flush();
    if (appliedCount() !== before) continue;
    // No progress: is anything at or below a cut held by no survivor?
    let lowered = false;
    for (const c of cuts) {
      for (const w of live()) {
        const have = w.replica.vector(c.id);
        if (have >= c.clock) continue;
        const next = have + 1;
        const somebody = live().some((x) => x.replica.retainedAfter(c.id, have).some((u) => u.clock === next));
        if (!somebody) {
          cuts = lowerCut(cuts, c.id, next - 1);
          lowered = true;
          break;
        }
      }
      if (lowered) break;
    }
    if (!lowered) break;
    publish();
  }

  // Every survivor: the same applied set, that set respects the cuts, the
  // parameters are its sum, and the replica's vector clock agrees.
  const ws = live();
  if (robust) for (const w of ws) w.replica.finalizeAll();
  const expected = new Map<string, number>();
  for (const m of members) expected.set(m.id, workers.get(m.id)?.final ?? m.startClock);
  for (const c of cuts) expected.set(c.id, c.clock);
  let appliedTotal = 0;
  for (const w of ws) {
    const sum = new Float64Array(DIM);
    for (const [author, last] of expected) {
      const start = members.find((m) => m.id === author)?.startClock ?? workers.get(author)?.startClock ?? 0;
      const set = w.applied.get(author) ?? new Set<number>();
      for (let k = 1; k <= last; k++) {
        if (k <= start) continue;
        expect(set.has(k), `${w.id} lacks u(${author},${k}) at the end`).toBe(true);
      }
      for (const k of set) {
        expect(k <= last, `${w.id} holds u(${author},${k}) beyond ${last}`).toBe(true);
        const u = updateOf(author, k);
        for (let i = 0; i < DIM; i++) sum[i] = (sum[i] as number) + (u[i] as number);
      }
      expect(w.replica.vector(author), `${w.id} V[${author}] (cut or final ${last}, start ${start}, cut? ${cuts.some((c) => c.id === author)})`).toBe(Math.max(last, start));
      appliedTotal += set.size;
    }
    if (robust) {
      expect(w.replica.lateUnfolded, `${w.id} could not re-aggregate a late update`).toBe(0);
      sum.set(robustSum(w.applied, aggregation));
    }
    for (let i = 0; i < DIM; i++) {
      const want = sum[i] as number;
      const got = w.replica.params[i] as number;
      expect(Math.abs(got - want), `${w.id} param ${i}: ${got} vs ${want}`).toBeLessThanOrEqual(1e-6 * Math.max(1, Math.abs(want)) + 1e-4);
    }
  }
  return { steps, applied: appliedTotal, cuts: cuts.length, joins };
}

/**
 * What a robust replica must end with, computed independently of
 * client/aggregate.ts: per clock, the updates held (in worker-number order),
 * clipped, then n times the coordinate-wise trimmed mean or median.
 */
function robustSum(applied: Map<string, Set<number>>, agg: Aggregation): Float64Array {
  const byClock = new Map<number, string[]>();
  for (const [author, set] of applied) for (const c of set) byClock.set(c, [...(byClock.get(c) ?? []), author]);
  const sum = new Float64Array(DIM);
  for (const c of [...byClock.keys()].sort((a, b) => a - b)) {
    const authors = (byClock.get(c) as string[]).sort((a, b) => Number(a.slice(1)) - Number(b.slice(1)));
    const ups = authors.map((a) => Array.from(updateOf(a, c)));
    const norms = ups.map((u) => Math.hypot(...u));
    const sorted = [...norms].sort((a, b) => a - b);
    const n = ups.length;
    const med = n % 2 ? (sorted[(n - 1) / 2] as number) : ((sorted[n / 2 - 1] as number) + (sorted[n / 2] as number)) / 2;
    const bound = agg.clip.kind === "fixed" ? agg.clip.bound : agg.clip.kind === "auto" ? med : Infinity;
    const clipped = ups.map((u, k) => u.map((x) => x * Math.min(1, bound / (norms[k] as number))));
    for (let i = 0; i < DIM; i++) {
      const col = clipped.map((u) => u[i] as number).sort((a, b) => a - b);
      let v: number;
      if (agg.rule.kind === "median") v = n % 2 ? (col[(n - 1) / 2] as number) : ((col[n / 2 - 1] as number) + (col[n / 2] as number)) / 2;
      else {
        const t = agg.rule.kind === "trimmed" ? Math.min(Math.floor(agg.rule.beta * n), Math.floor((n - 1) / 2)) : 0;
        const mid = col.slice(t, n - t);
        v = mid.reduce((a, b) => a + b, 0) / mid.length;
      }
      sum[i] = (sum[i] as number) + n * v;
    }
  }
  return sum;
}

const modes: Consistency[] = [
  { mode: "bsp", staleness: 0 },
  { mode: "ssp", staleness: 1 },
  { mode: "ssp", staleness: 3 },
  { mode: "asp", staleness: 0 },
  { mode: "auto", staleness: 2 },
];

/** Random fault mixes for a schedule. */
const faultsArb: fc.Arbitrary<Faults> = fc.record({
  reorder: fc.boolean(),
  duplicate: fc.constantFrom(0, 0.1, 0.3),
  loss: fc.constantFrom(0, 0.05, 0.2),
  crash: fc.constantFrom(0, 0.005, 0.02),
  join: fc.constantFrom(0, 0.005, 0.02),
  drop: fc.constantFrom(0, 0.005, 0.02),
});

/** Random schedules of 400 events each; throws on the first that breaks a property. Returns the steps taken. */
function schedules(consistency: Consistency, runs: number, seed: number, maxWorkers: number, aggregation?: Aggregation): number {
  let steps = 0;
  fc.assert(
    fc.property(fc.integer({ min: 1, max: 2 ** 31 - 1 }), fc.integer({ min: 2, max: maxWorkers }), faultsArb, (s, n, faults) => {
      steps += simulate(s, n, consistency, faults, 400, aggregation).steps;
    }),
    { numRuns: runs, seed },
  );
  return steps;
}

describe("SSP over a simulated network", () => {
  for (const consistency of modes) {
    it(`keeps its invariants under ${consistency.mode}${consistency.mode === "asp" ? "" : ` s=${consistency.staleness}`}`, () => {
      expect(schedules(consistency, 400, 20261124, 5)).toBeGreaterThan(400 * 20);
    });
  }

  const robustModes: [string, string, Consistency][] = [
    ["trimmed:0.2", "auto", { mode: "ssp", staleness: 2 }],
    ["median", "off", { mode: "bsp", staleness: 0 }],
    ["trimmed:0.34", "0.5", { mode: "auto", staleness: 1 }],
  ];
  for (const [rule, clip, consistency] of robustModes) {
    it(`ends with equal replicas holding the robust aggregate (${rule}, clip ${clip}, ${consistency.mode})`, () => {
      const agg = parseAggregation(rule, clip);
      if (!agg.ok) throw new Error(agg.message);
      expect(schedules(consistency, 150, 20261125, 6, agg.value)).toBeGreaterThan(150 * 20);
    }, 120_000);
  }

  it("does make progress and exercises every fault", () => {
    const o = simulate(42, 4, { mode: "ssp", staleness: 2 }, { reorder: true, duplicate: 0.2, loss: 0.1, crash: 0.01, join: 0.02, drop: 0.01 }, 3000);
    expect(o.steps).toBeGreaterThan(150);
    expect(o.joins).toBeGreaterThan(4);
    expect(o.cuts).toBeGreaterThan(0);
  });
});
