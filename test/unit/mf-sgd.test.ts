import { describe, expect, it } from "vitest";
import { blockOf, blockRange, generateRows, initRowBlock, isTest, TEST_SHARE, trueItems, type MfConfig } from "../../client/mf/problem.ts";
import { buildRounds, prepareRowBlock, sgdBlock } from "../../client/mf/sgd.ts";
import { MF_DEFAULTS } from "../../coordinator/mf/config.ts";
import { simulate } from "../../coordinator/mf/sim.ts";

const small: MfConfig = { ...MF_DEFAULTS, users: 1000, items: 400, rank: 4, density: 0.3, seed: 7 };

describe("mf problem", () => {
  it("generates the same ratings for a row range on every node, and rows independently of the range", () => {
    const a = generateRows(small, 100, 140);
    const b = generateRows(small, 100, 140);
    expect(a.train.vals).toEqual(b.train.vals);
    const whole = generateRows(small, 0, 200);
    const part = generateRows(small, 120, 130);
    const from = whole.train.rows.indexOf(120);
    expect(Array.from(whole.train.vals.subarray(from, from + part.train.vals.length))).toEqual(Array.from(part.train.vals));
    expect(generateRows({ ...small, seed: 8 }, 100, 140).train.vals).not.toEqual(a.train.vals);
    // The coordinator keeps only the held-out entries: the same ones.
    const testOnly = generateRows(small, 100, 140, trueItems(small), false);
    expect(testOnly.train.vals).toHaveLength(0);
    expect(Array.from(testOnly.test.vals)).toEqual(Array.from(a.test.vals));
  });

  it("observes about `density` of the entries, holds out about 10% and adds noise of the given σ", () => {
    const { train, test } = generateRows(small, 0, 1000);
    const n = train.vals.length + test.vals.length;
    expect(n / (small.users * small.items)).toBeCloseTo(small.density, 2);
    expect(test.vals.length / n).toBeGreaterThan(TEST_SHARE - 0.01);
    expect(test.vals.length / n).toBeLessThan(TEST_SHARE + 0.01);
    for (let e = 0; e < 50; e++) expect(isTest(small.seed, test.rows[e]!, test.cols[e]!)).toBe(true);
    // With the true factors the RMSE is the noise.
    const v = trueItems(small);
    const noiseless = generateRows({ ...small, noise: 1e-9 }, 0, 1000, v);
    let sq = 0;
    for (let e = 0; e < train.vals.length; e++) sq += (train.vals[e]! - noiseless.train.vals[e]!) ** 2;
    expect(Math.sqrt(sq / train.vals.length)).toBeCloseTo(small.noise, 2);
  });

  it("cuts indices into K contiguous blocks and finds the block of an index", () => {
    for (const [n, k] of [[10, 3], [5000, 4], [7, 7]] as const) {
      let next = 0;
      for (let b = 0; b < k; b++) {
        const [a, e] = blockRange(n, k, b);
        expect(a).toBe(next);
        for (let i = a; i < e; i++) expect(blockOf(n, k, i)).toBe(b);
        next = e;
      }
      expect(next).toBe(n);
    }
  });
});

describe("mf block SGD", () => {
  it("cuts a block's ratings into rounds in which no row and no column occurs twice", () => {
    const [block] = prepareRowBlock(small, 1, generateRows(small, ...blockRange(small.users, small.blocks, 1)).train);
    expect(block).toBeDefined();
    const b = block!;
    const rounds = b.roundStart.length - 1;
    expect(b.roundStart[rounds]).toBe(b.vals.length);
    for (let r = 0; r < rounds; r++) {
      const rows = new Set<number>();
      const cols = new Set<number>();
      for (let e = b.roundStart[r]!; e < b.roundStart[r + 1]!; e++) {
        expect(rows.has(b.rows[e]!)).toBe(false);
        expect(cols.has(b.cols[e]!)).toBe(false);
        rows.add(b.rows[e]!);
        cols.add(b.cols[e]!);
      }
    }
    // Greedy colouring needs at most maxRowDegree + maxColDegree − 1 rounds.
    const colDeg = new Map<number, number>();
    for (const c of b.cols) colDeg.set(c, (colDeg.get(c) ?? 0) + 1);
    expect(rounds).toBeLessThan(2 * Math.max(...colDeg.values()));
    expect(() => buildRounds(Uint32Array.of(0, 0, 1), Uint32Array.of(0, 1, 1), 2, 2)).not.toThrow();
  });

  it("the order of ratings within a round does not change the result", () => {
    const [b] = prepareRowBlock(small, 0, generateRows(small, ...blockRange(small.users, small.blocks, 0)).train);
    const blk = b!;
    const u1 = initRowBlock(small, 0);
    const v1 = new Float32Array(100 * small.rank).fill(0.2);
    const u2 = Float32Array.from(u1);
    const v2 = Float32Array.from(v1);
    sgdBlock(u1, v1, small.rank, blk, 0.03, 0.01);
    // Reverse every round.
    const perm: number[] = [];
    for (let r = 0; r + 1 < blk.roundStart.length; r++) for (let e = blk.roundStart[r + 1]! - 1; e >= blk.roundStart[r]!; e--) perm.push(e);
    const rev = { ...blk, rows: Uint32Array.from(perm, (e) => blk.rows[e]!), cols: Uint32Array.from(perm, (e) => blk.cols[e]!), vals: Float32Array.from(perm, (e) => blk.vals[e]!) };
    sgdBlock(u2, v2, small.rank, rev, 0.03, 0.01);
    expect(Array.from(u2)).toEqual(Array.from(u1));
    expect(Array.from(v2)).toEqual(Array.from(v1));
  });

  it("one step matches the SGD formula by hand", () => {
    const u = Float32Array.of(1, 2);
    const v = Float32Array.of(0.5, -1);
    const block = { rowBlock: 0, colBlock: 0, rows: Uint32Array.of(0), cols: Uint32Array.of(0), vals: Float32Array.of(1), roundStart: Uint32Array.of(0, 1) };
    const sq = sgdBlock(u, v, 2, block, 0.1, 0.5);
    // e = 1 − (0.5 − 2) = 2.5; u ← u + 0.1·(2.5·v − 0.5·u); v ← v + 0.1·(2.5·u − 0.5·v)
    expect(sq).toBeCloseTo(6.25, 6);
    expect(u[0]).toBeCloseTo(1 + 0.1 * (1.25 - 0.5), 6);
    expect(u[1]).toBeCloseTo(2 + 0.1 * (-2.5 - 1), 6);
    expect(v[0]).toBeCloseTo(0.5 + 0.1 * (2.5 - 0.25), 6);
    expect(v[1]).toBeCloseTo(-1 + 0.1 * (5 + 0.5), 6);
  });
});

describe("mf simulation (schedule + block SGD + checkpoints, 4 workers)", () => {
  it("reaches test RMSE ≤ 1.05 × the noise floor, each worker holding at most 1/K of the model plus one column block", () => {
    const r = simulate(small, { workers: 4, maxEpochs: 20, target: 1.05 });
    expect(r.violations).toEqual([]);
    expect(r.epochsToTarget).not.toBeNull();
    expect(r.finalRmse).toBeLessThanOrEqual(1.05 * small.noise);
    expect(r.maxWorkerFloats).toBeLessThanOrEqual(r.boundFloats);
    expect(r.peerFloats).toBeGreaterThan(0);
  });

  it("a worker that leaves mid-run hands its row block on from the checkpoint and the run still reaches the target", () => {
    const r = simulate(small, { workers: 4, maxEpochs: 20, target: 1.05, leaves: [{ worker: "w3", t: 5 }], joins: [{ worker: "w5", t: 9 }] });
    expect(r.violations).toEqual([]);
    expect(r.finalRmse).toBeLessThanOrEqual(1.05 * small.noise);
  });
});
