import { describe, expect, it } from "vitest";
import fc from "fast-check";
import { addWorker, blocksOf, colFor, createSchedule, markDone, rebalance, removeWorker, rowFor, tasks, violations, type Schedule } from "../../coordinator/mf/schedule.ts";

/** One thing that can happen to a running schedule. */
type Op = { kind: "join"; w: number } | { kind: "leave"; w: number } | { kind: "done"; pick: number };

const opArb: fc.Arbitrary<Op> = fc.oneof(
  fc.record({ kind: fc.constant("join" as const), w: fc.integer({ min: 1, max: 12 }) }),
  fc.record({ kind: fc.constant("leave" as const), w: fc.integer({ min: 1, max: 12 }) }),
  fc.record({ kind: fc.constant("done" as const), pick: fc.nat() }),
  fc.record({ kind: fc.constant("done" as const), pick: fc.nat() }),
);

function apply(s: Schedule, op: Op): void {
  if (op.kind === "join") addWorker(s, `w${op.w}`);
  else if (op.kind === "leave") removeWorker(s, `w${op.w}`);
  else {
    const open = tasks(s).filter((t) => !s.done.has(t.row));
    const t = open[op.pick % Math.max(1, open.length)];
    if (t) markDone(s, t.worker, t.row);
  }
}

describe("mf rotation schedule", () => {
  it("gives worker k block (k, (k + t) mod K) and hands V_b to the next row block's owner", () => {
    const s = createSchedule(4);
    for (const w of ["w1", "w2", "w3", "w4"]) addWorker(s, w);
    // Before the first sub-epoch starts the coordinator spreads the blocks.
    rebalance(s);
    for (let t = 0; t < 8; t++) {
      expect(tasks(s).map((x) => [x.worker, x.row, x.col])).toEqual([0, 1, 2, 3].map((k) => [`w${k + 1}`, k, (k + t) % 4]));
      // Column b trained by row block rowFor(b, t) goes to the one that needs it at t + 1.
      for (let b = 0; b < 4; b++) expect(colFor(4, rowFor(4, b, t + 1), t + 1)).toBe(b);
      for (let k = 3; k >= 0; k--) expect(markDone(s, `w${k + 1}`, k).accepted).toBe(true);
      expect(s.t).toBe(t + 1);
    }
  });

  it("refuses a done report from a worker that does not own the block, or twice", () => {
    const s = createSchedule(2);
    addWorker(s, "w1");
    addWorker(s, "w2");
    expect(blocksOf(s, "w1")).toEqual([0, 1]);
    expect(markDone(s, "w2", 0).accepted).toBe(false);
    expect(markDone(s, "w1", 0).accepted).toBe(true);
    expect(markDone(s, "w1", 0).accepted).toBe(false);
    const r = markDone(s, "w1", 1);
    // At the barrier the standby worker w2 takes one of w1's two blocks.
    expect(r).toMatchObject({ accepted: true, advanced: true });
    expect(blocksOf(s, "w1")).toHaveLength(1);
    expect(blocksOf(s, "w2")).toHaveLength(1);
  });

  it("hands a leaver's row block to a standby worker, and keeps blocks in the checkpoint when nobody is left", () => {
    const s = createSchedule(3);
    for (const w of ["w1", "w2", "w3", "w4"]) addWorker(s, w);
    rebalance(s);
    expect(blocksOf(s, "w4")).toEqual([]);
    removeWorker(s, "w2");
    expect(blocksOf(s, "w4")).toEqual([1]);
    for (const w of ["w1", "w3", "w4"]) removeWorker(s, w);
    expect(s.owners).toEqual([null, null, null]);
    expect(violations(s)).toEqual([]);
    addWorker(s, "w9");
    expect(blocksOf(s, "w9")).toEqual([0, 1, 2]);
  });

  it("never gives two workers the same row or column block, and loses no block, for any K and any leaves and joins", () => {
    fc.assert(
      fc.property(fc.integer({ min: 1, max: 9 }), fc.array(opArb, { maxLength: 200 }), (blocks, ops) => {
        const s = createSchedule(blocks);
        // Column block b at sub-epoch t is held by the owner of row block rowFor(b, t), or by the checkpoint.
        for (const op of ops) {
          const tBefore = s.t;
          apply(s, op);
          expect(violations(s)).toEqual([]);
          const ts = tasks(s);
          const rows = ts.map((x) => x.row);
          const cols = ts.map((x) => x.col);
          expect(new Set(rows).size).toBe(rows.length);
          expect(new Set(cols).size).toBe(cols.length);
          // Every row block: exactly one active owner, or the checkpoint when no worker is active.
          for (let k = 0; k < blocks; k++) {
            const owner = s.owners[k] ?? null;
            if (s.workers.length > 0) expect(owner !== null && s.workers.includes(owner)).toBe(true);
            else expect(owner).toBeNull();
          }
          // Every column block is trained by exactly one row block per sub-epoch.
          const colOwners = Array.from({ length: blocks }, (_, b) => rowFor(blocks, b, s.t));
          expect(new Set(colOwners).size).toBe(blocks);
          // Sub-epochs only move forward by one, and only when every block is done.
          expect(s.t - tBefore === 0 || s.t - tBefore === 1).toBe(true);
          expect(s.done.size).toBeLessThan(blocks);
        }
      }),
      { numRuns: 500 },
    );
  });
});
