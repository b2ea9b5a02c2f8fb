/**
 * Delta views: a page that applies every delta holds exactly the view the
 * coordinator published; one that missed an epoch notices. And the job
 * publishes one epoch per batch window, the whole view to joiners and deltas
 * to everyone else.
 */
import { tinyDataset, tinyJobOptions } from "../support/tiny-run.ts";
import { describe, expect, it, vi, afterEach } from "vitest";
import fc from "fast-check";
import { applyViewDelta, ViewBook, type ViewContent } from "../../coordinator/views.ts";
import { JobRun, type JobOptions } from "../../coordinator/job.ts";
import { parseServerMessage, type ServerMessage, type ViewMessage } from "../../coordinator/protocol.ts";

type Op =
  | { kind: "join" }
  | { kind: "leave"; pick: number }
  | { kind: "sync"; pick: number }
  | { kind: "lower"; pick: number; by: number }
  | { kind: "state"; state: ViewContent["state"] }
  | { kind: "staleness"; s: number }
  | { kind: "publish" };

const opArb: fc.Arbitrary<Op> = fc.oneof(
  fc.constant<Op>({ kind: "join" }),
  fc.record({ kind: fc.constant("leave" as const), pick: fc.nat(1000) }),
  fc.record({ kind: fc.constant("sync" as const), pick: fc.nat(1000) }),
  fc.record({ kind: fc.constant("lower" as const), pick: fc.nat(1000), by: fc.integer({ min: 1, max: 5 }) }),
  fc.record({ kind: fc.constant("state" as const), state: fc.constantFrom("waiting", "running", "paused", "done") }),
  fc.record({ kind: fc.constant("staleness" as const), s: fc.integer({ min: 0, max: 5 }) }),
  fc.constant<Op>({ kind: "publish" }),
  fc.constant<Op>({ kind: "publish" }),
);

describe("delta views", () => {
  it("a page applying every delta holds the published view; a page that missed one is refused", () => {
    fc.assert(
      fc.property(fc.array(opArb, { minLength: 1, maxLength: 80 }), (ops) => {
        const book = new ViewBook();
        let next = 1;
        const members: ViewContent["active"] = [];
        let cuts: ViewContent["cuts"] = [];
        let state: ViewContent["state"] = "running";
        let staleness = 2;
        let page: ViewMessage | null = null;
        let stale: ViewMessage | null = null;
        for (const op of [...ops, { kind: "publish" } as Op]) {
          if (op.kind === "join") members.push({ id: `w${next}`, peerId: `p${next++}`, startClock: next % 7, ...(next % 2 === 0 ? { syncing: true } : {}) });
          else if (op.kind === "leave" && members.length > 0) {
            const [m] = members.splice(op.pick % members.length, 1);
            if (m) cuts = [...cuts.filter((c) => c.id !== m.id), { id: m.id, clock: 10 + (op.pick % 5) }];
          } else if (op.kind === "sync" && members.length > 0) {
            const i = op.pick % members.length;
            const m = members[i]!;
            members[i] = { id: m.id, peerId: m.peerId, startClock: m.startClock + 1 };
          } else if (op.kind === "lower" && cuts.length > 0) {
            const c = cuts[op.pick % cuts.length]!;
            cuts = cuts.map((x) => (x.id === c.id ? { id: x.id, clock: Math.max(0, x.clock - op.by) } : x));
          } else if (op.kind === "state") state = op.state;
          else if (op.kind === "staleness") staleness = op.s;
          else if (op.kind === "publish") {
            const content: ViewContent = {
              active: [...members],
              cuts: [...cuts],
              consistency: { mode: "ssp", staleness },
              state,
              evaluator: members[0]?.id ?? null,
            };
            const { full, delta } = book.publish(content);
            expect(full.active).toEqual(content.active);
            if (page === null) {
              page = full;
              continue;
            }
            if (delta === null) {
              expect(full.epoch).toBe(page.epoch);
              continue;
            }
            // The delta crosses the socket as JSON and passes the schema.
            const parsed = parseServerMessage(JSON.stringify(delta));
            expect(parsed.ok).toBe(true);
            if (!parsed.ok || parsed.value.type !== "view-delta") return;
            if (stale !== null && stale.epoch !== parsed.value.base) expect(applyViewDelta(stale, parsed.value)).toBeNull();
            stale = page;
            page = applyViewDelta(page, parsed.value);
            expect(page).toEqual(full);
          }
        }
      }),
      { numRuns: 300 },
    );
  });

  it("a delta is far smaller than the view it replaces", () => {
    const book = new ViewBook();
    const active = Array.from({ length: 2000 }, (_, i) => ({ id: `w${i + 1}`, peerId: `grid-0123abcd-w${i + 1}-89abcdef`, startClock: 0 }));
    const base = { cuts: [], consistency: { mode: "ssp" as const, staleness: 3 }, state: "running" as const, evaluator: "w1" };
    book.publish({ active, ...base });
    const { full, delta } = book.publish({ active: [...active, { id: "w2001", peerId: "grid-0123abcd-w2001-89abcdef", startClock: 5 }], ...base });
    const fullBytes = JSON.stringify(full).length;
    const deltaBytes = JSON.stringify(delta).length;
    expect(deltaBytes).toBeLessThan(300);
    expect(fullBytes).toBeGreaterThan(100 * deltaBytes);
  });
});

function newRun(extra: Partial<JobOptions>): JobRun {
  return new JobRun(tinyJobOptions({ data: tinyDataset(20, 20), ...extra }));
}

const joinMsg = { type: "join", backend: "cpu", kernel: "k", adapter: "a" } as const;

describe("view publication in the job", () => {
  afterEach(() => {
    vi.useRealTimers();
  });

  it("batches joins and leaves into one epoch: the whole view to joiners, a delta to the rest", () => {
    vi.useFakeTimers();
    const run = newRun({ viewBatchMs: 50 });
    const inbox = new Map<string, ServerMessage[]>();
    const join = (): string => {
      const box: ServerMessage[] = [];
      const r = run.join(joinMsg, (m) => box.push(m));
      if (!r.ok) throw new Error(r.reason);
      inbox.set(r.id, box);
      return r.id;
    };
    const views = (id: string): ServerMessage[] => (inbox.get(id) ?? []).filter((m) => m.type === "view" || m.type === "view-delta");
    const a = join();
    vi.advanceTimersByTime(60);
    expect(views(a).map((m) => m.type)).toEqual(["view"]);
    // Three joins and a leave inside one window: one epoch.
    const b = join();
    const c = join();
    const d = join();
    run.remove(c, "left", "test");
    expect(views(b)).toHaveLength(0);
    vi.advanceTimersByTime(60);
    const got = views(a);
    expect(got.map((m) => m.type)).toEqual(["view", "view-delta"]);
    const delta = got[1];
    if (delta?.type !== "view-delta") throw new Error("no delta");
    expect(delta.base).toBe(1);
    expect(delta.upsert.map((m) => m.id)).toEqual([b, d]);
    expect(delta.remove).toEqual([]);
    expect(delta.cuts.map((x) => x.id)).toEqual([c]);
    for (const id of [b, d]) {
      const v = views(id);
      expect(v.map((m) => m.type)).toEqual(["view"]);
      const first = v[0];
      if (first?.type !== "view") throw new Error("no view");
      expect(first.epoch).toBe(2);
      expect(first.active.map((m) => m.id)).toEqual([a, b, d]);
      // The page of `a` rebuilt the same view from its delta.
      const pageA = views(a)[0];
      if (pageA?.type !== "view") throw new Error("no view");
      expect(applyViewDelta(pageA, delta)).toEqual(first);
    }
    expect((run.status()["view"] as { epoch: number }).epoch).toBe(2);
    // A page that asks gets the whole view, without a new epoch.
    run.onMessage(a, { type: "view-request" });
    vi.advanceTimersByTime(60);
    const last = views(a).at(-1);
    expect(last?.type === "view" && last.epoch).toBe(2);
  });

  it("with --full-views every change goes out at once, in full, to everyone", () => {
    const run = newRun({ viewBatchMs: 50, fullViews: true });
    const first: ServerMessage[] = [];
    run.join(joinMsg, (m) => first.push(m));
    run.join(joinMsg, () => {});
    expect(first.filter((m) => m.type === "view").length).toBe(2);
    expect(first.some((m) => m.type === "view-delta")).toBe(false);
  });
});

describe("liveness after a stall of the coordinator", () => {
  it("does not count the coordinator's own stall as a worker's silence", () => {
    let t = 1_000_000;
    const run = newRun({ now: () => t });
    const ids = Array.from({ length: 3 }, () => {
      const r = run.join(joinMsg, () => {});
      if (!r.ok) throw new Error(r.reason);
      return r.id;
    });
    const live = (): number => ids.filter((id) => run.isLive(id)).length;
    run.tick(500);
    // The loop was stuck for 8 s: the next tick is 7.5 s late. Nobody is "silent".
    t += 8000;
    run.tick(500);
    expect(live()).toBe(3);
    // On time from here: one worker speaks, the others stay quiet.
    for (let k = 0; k < 8; k++) {
      t += 500;
      run.onMessage(ids[0]!, { type: "heartbeat" });
      run.tick(500);
    }
    expect(live()).toBe(3);
    for (let k = 0; k < 4; k++) {
      t += 500;
      run.onMessage(ids[0]!, { type: "heartbeat" });
      run.tick(500);
    }
    // 6 s of real silence (after the stall) is more than the 5 s allowed.
    expect(live()).toBe(1);
    expect(run.isLive(ids[0]!)).toBe(true);
  });

  it("does not let silence alone empty the view: the first page back resumes the model, not the initial one", () => {
    let t = 1_000_000;
    const run = newRun({ now: () => t });
    const ids = Array.from({ length: 4 }, () => {
      const r = run.join(joinMsg, () => {});
      if (!r.ok) throw new Error(r.reason);
      return r.id;
    });
    const clock = (id: string, c: number): void =>
      run.onMessage(id, { type: "clock", clock: c, minApplied: c - 1, loss: 1, stepMs: 50, batch: 8, examples: 8 * c, bytesIn: 0, bytesOut: 0, peers: 3 });
    // 20 clocks of training, every page reporting.
    for (let c = 1; c <= 20; c++) {
      t += 100;
      for (const id of ids) clock(id, c);
      run.tick(100);
    }
    const live = (): string[] => ids.filter((id) => run.isLive(id));
    // Every page silent at once for 8 s (the ticks are on time: the coordinator itself is not stalled).
    for (let k = 0; k < 16; k++) {
      t += 500;
      run.tick(500);
    }
    expect(live()).toEqual(ids);
    // A page opened now starts from the clock the view is at and loads a snapshot from a peer.
    const welcomes: ServerMessage[] = [];
    const joiner = run.join(joinMsg, (m) => welcomes.push(m));
    expect(joiner.ok).toBe(true);
    const welcome = welcomes.find((m) => m.type === "welcome");
    expect(welcome?.type === "welcome" && welcome.startClock).toBe(20);
    expect(welcome?.type === "welcome" && welcome.needsSnapshot).toBe(true);
    // One page is heard again: the pages still silent are left at the next tick, it stays.
    t += 500;
    clock(ids[1]!, 21);
    run.tick(500);
    expect(live()).toEqual([ids[1]]);
  });

  it("marks the last replica holders left once their silence passes the longer bound", () => {
    let t = 1_000_000;
    const run = newRun({ now: () => t });
    const r = run.join(joinMsg, () => {});
    if (!r.ok) throw new Error(r.reason);
    for (let k = 0; k < 118; k++) {
      t += 500;
      run.tick(500);
    }
    expect(run.isLive(r.id)).toBe(true); // 59 s
    for (let k = 0; k < 4; k++) {
      t += 500;
      run.tick(500);
    }
    expect(run.isLive(r.id)).toBe(false); // 61 s
  });
});
