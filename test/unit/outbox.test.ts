/**
 * The outbox spreads a view epoch to many workers over event-loop turns; each
 * worker still receives its messages in exactly the order a synchronous
 * fan-out would have given it.
 */
import { afterEach, describe, expect, it, vi } from "vitest";
import fc from "fast-check";
import { Outbox } from "../../coordinator/outbox.ts";
import { JobRun } from "../../coordinator/job.ts";
import { applyViewDelta } from "../../coordinator/views.ts";
import type { ServerMessage, ViewMessage } from "../../coordinator/protocol.ts";
import { tinyDataset, tinyJobOptions } from "../support/tiny-run.ts";

/** An outbox whose turns the test runs by hand. */
function manual(chunk: number): { box: Outbox<string>; turn: () => boolean } {
  const turns: (() => void)[] = [];
  const box = new Outbox<string>(chunk, (fn) => turns.push(fn));
  return {
    box,
    turn: () => {
      const fn = turns.shift();
      fn?.();
      return fn !== undefined;
    },
  };
}

describe("outbox", () => {
  it("sends the first chunk at once and the rest one chunk per turn", () => {
    const { box, turn } = manual(100);
    const got: string[][] = Array.from({ length: 1000 }, () => []);
    const sinks = got.map((g) => (m: string) => void g.push(m));
    box.fanout(sinks.map((s) => [s, "e1"] as const));
    expect(got.filter((g) => g.length === 1)).toHaveLength(100);
    expect(box.pending).toBe(900);
    let turns = 0;
    while (turn()) turns++;
    expect(turns).toBe(9);
    expect(got.every((g) => g.length === 1 && g[0] === "e1")).toBe(true);
    expect(box.pending).toBe(0);
  });

  it("a send to a worker not reached yet delivers its queued messages first", () => {
    const { box, turn } = manual(2);
    const got: string[][] = Array.from({ length: 5 }, () => []);
    const sinks = got.map((g) => (m: string) => void g.push(m));
    box.fanout(sinks.map((s) => [s, "e1"] as const));
    box.send(sinks[4]!, "ack");
    expect(got[4]).toEqual(["e1", "ack"]);
    expect(got[3]).toEqual([]);
    while (turn());
    expect(got.map((g) => g.join(","))).toEqual(["e1", "e1", "e1", "e1", "e1,ack"]);
  });

  it("a worker's queued deliveries and the send that releases them go out as one group", () => {
    const { box, turn } = manual(1);
    // Each sink records its messages in groups: one group per write to its connection.
    const writes: string[][][] = Array.from({ length: 3 }, () => []);
    const sinks = writes.map((w) => {
      let open: string[] | null = null;
      return Object.assign((m: string) => (open ? void open.push(m) : void w.push([m])), {
        together: (sends: () => void) => {
          open = [];
          sends();
          w.push(open);
          open = null;
        },
      });
    });
    box.fanout(sinks.map((s) => [s, "e1"] as const));
    box.fanout(sinks.map((s) => [s, "e2"] as const));
    box.send(sinks[2]!, "ack");
    expect(writes[2]).toEqual([["e1", "e2", "ack"]]);
    box.send(sinks[2]!, "ack2");
    expect(writes[2]).toEqual([["e1", "e2", "ack"], ["ack2"]]);
    while (turn());
    expect(writes[0]).toEqual([["e1"], ["e2"]]);
    expect(writes[1]).toEqual([["e1", "e2"]]);
  });

  it("keeps every worker's order under random fan-outs, sends and turns", () => {
    type Op = { kind: "fanout"; from: number; to: number } | { kind: "send"; who: number } | { kind: "turn" };
    const opArb: fc.Arbitrary<Op> = fc.oneof(
      fc.record({ kind: fc.constant("fanout" as const), from: fc.nat(30), to: fc.nat(30) }),
      fc.record({ kind: fc.constant("send" as const), who: fc.nat(30) }),
      fc.constant<Op>({ kind: "turn" }),
    );
    fc.assert(
      fc.property(fc.integer({ min: 1, max: 8 }), fc.array(opArb, { maxLength: 60 }), (chunk, ops) => {
        const { box, turn } = manual(chunk);
        const got: string[][] = Array.from({ length: 31 }, () => []);
        const want: string[][] = Array.from({ length: 31 }, () => []);
        const sinks = got.map((g) => (m: string) => void g.push(m));
        ops.forEach((op, k) => {
          if (op.kind === "turn") turn();
          else if (op.kind === "send") {
            box.send(sinks[op.who]!, `s${k}`);
            want[op.who]!.push(`s${k}`);
          } else {
            const ids = Array.from({ length: Math.abs(op.to - op.from) + 1 }, (_, i) => Math.min(op.from, op.to) + i);
            box.fanout(ids.map((i) => [sinks[i]!, `f${k}`] as const));
            for (const i of ids) want[i]!.push(`f${k}`);
          }
          // Whatever a worker has received is a prefix of what it was sent, in order.
          got.forEach((g, i) => expect(want[i]!.slice(0, g.length)).toEqual(g));
        });
        while (turn());
        expect(got).toEqual(want);
      }),
      { numRuns: 300 },
    );
  });

  it("refuses a chunk that is not a positive integer", () => {
    expect(() => new Outbox(0)).toThrow(/chunk/);
  });
});

describe("a view epoch to many workers in the job", () => {
  afterEach(() => {
    vi.useRealTimers();
  });

  it("reaches all 600 workers over several turns; an ack never overtakes the view it follows", () => {
    vi.useFakeTimers();
    const run = new JobRun(tinyJobOptions({ data: tinyDataset(20, 20), viewBatchMs: 50 }));
    const inbox = new Map<string, ServerMessage[]>();
    const join = (): string => {
      const box: ServerMessage[] = [];
      const r = run.join({ type: "join", backend: "cpu", kernel: "k", adapter: "a" }, (m) => box.push(m));
      if (!r.ok) throw new Error(r.reason);
      inbox.set(r.id, box);
      return r.id;
    };
    const ids = Array.from({ length: 600 }, join);
    vi.advanceTimersByTime(60);
    // Everybody holds epoch 1 in full.
    for (const id of ids) expect(inbox.get(id)!.filter((m) => m.type === "view")).toHaveLength(1);
    // One worker leaves: epoch 2 goes out as a delta, not all in the same turn.
    run.remove(ids[0]!, "left", "test");
    vi.advanceTimersByTime(50);
    const hasDelta = (id: string): boolean => inbox.get(id)!.some((m) => m.type === "view-delta");
    const reached = ids.slice(1).filter(hasDelta).length;
    expect(reached).toBeGreaterThan(0);
    expect(reached).toBeLessThan(599);
    // A worker not reached yet reports: its delta comes before its ack.
    const late = ids.slice(1).find((id) => !hasDelta(id))!;
    run.onMessage(late, { type: "clock", clock: 1, minApplied: 0, loss: 1, stepMs: 10, batch: 8, examples: 8, bytesIn: 0, bytesOut: 0, peers: 0, seq: 1 });
    expect(inbox.get(late)!.map((m) => m.type).slice(-2)).toEqual(["view-delta", "ack"]);
    // A worker not reached yet that leaves still gets what a synchronous fan-out gave it.
    const leaving = ids.slice(1).filter((id) => id !== late && !hasDelta(id)).at(-1)!;
    run.remove(leaving, "left", "test");
    expect(hasDelta(leaving)).toBe(true);
    const stayed = ids.slice(1).filter((id) => id !== leaving);
    vi.runAllTimers();
    // Every page that applies its first delta holds exactly the view of epoch 2 (epoch 3 removes `leaving`).
    expect((run.status()["view"] as { epoch: number }).epoch).toBe(3);
    for (const id of stayed) {
      const msgs = inbox.get(id)!;
      const full = msgs.find((m): m is ViewMessage => m.type === "view")!;
      const delta = msgs.find((m) => m.type === "view-delta");
      if (delta?.type !== "view-delta") throw new Error(`${id} got no delta`);
      const v = applyViewDelta(full, delta);
      expect(v?.epoch).toBe(2);
      expect(v?.active.map((m) => m.id)).toEqual(ids.slice(1));
    }
  });
});
