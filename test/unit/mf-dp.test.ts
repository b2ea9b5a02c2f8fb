/**
 * Job mf-dp (job mf's problem trained data-parallel): its rating records
 * survive the shard path byte for byte, its gradient is the per-rating SGD
 * gradient, its data is exactly job mf's ratings, four simulated workers
 * reach job mf's target, and the flags and the harness read it on job mf's scale.
 */
import { describe, expect, it } from "vitest";
import { MF_DP_NAME, MF_RECORD_BYTES, encodeRecords, mfDpJob, recordsRmse } from "../../client/jobs/mf-dp.ts";
import { jobFor } from "../../client/jobs/registry.ts";
import { generateAll, initColBlock, initRowBlock, modelFloats, type MfConfig } from "../../client/mf/problem.ts";
import { BatchSampler, parseShard } from "../../client/store/shards.ts";
import { configFromValues, parseCoordinatorArgs, UsageError } from "../../coordinator/cli.ts";
import { MF_DEFAULTS } from "../../coordinator/mf/config.ts";
import { mfDpDataset } from "../../coordinator/mf/dp-data.ts";
import { parseHarnessArgs } from "../../test/harness/flags.ts";
import { rmseOverFloor } from "../../test/harness/rmse.ts";
import type { Batch } from "../../client/jobs/job.ts";

const small: MfConfig = { ...MF_DEFAULTS, users: 1000, items: 400, rank: 4, density: 0.3, seed: 5 };
/** For the data tests: a few thousand ratings. */
const tiny: MfConfig = { ...small, users: 300, items: 120 };
const noBackend = null as never;

/** Every record of `bytes` as [row, column, rating]. */
function records(bytes: Uint8Array, count: number): [number, number, number][] {
  const dv = new DataView(bytes.buffer, bytes.byteOffset, bytes.byteLength);
  return Array.from({ length: count }, (_, e) => [dv.getUint32(e * 12, true), dv.getUint32(e * 12 + 4, true), dv.getFloat32(e * 12 + 8, true)]);
}

describe("mf-dp data", () => {
  it("serves exactly job mf's ratings: every training rating once across the shards, the same held-out ones", () => {
    const data = mfDpDataset(tiny, 500);
    const all = generateAll(tiny);
    const key = (i: number, j: number, r: number): string => `${i},${j},${r}`;
    const want = new Set(Array.from(all.train.vals, (v, e) => key(all.train.rows[e]!, all.train.cols[e]!, v)));
    const got: string[] = [];
    for (const s of data.shards) {
      const shard = parseShard(s.ref.id, s.bytes.slice().buffer);
      expect(shard.pixelsPerImage).toBe(MF_RECORD_BYTES);
      for (const [i, j, r] of records(shard.pixels, shard.count)) got.push(key(i, j, r));
    }
    expect(got).toHaveLength(want.size);
    expect(new Set(got)).toEqual(want);
    // Shuffled: the first shard holds ratings of many users, not a run of whole rows.
    const first = records(parseShard(0, data.shards[0]!.bytes.slice().buffer).pixels, 500);
    expect(new Set(first.map(([i]) => i)).size).toBeGreaterThan(200);
    expect(records(data.test.pixels, data.test.count)).toEqual(Array.from(all.test.vals, (v, e) => [all.test.rows[e], all.test.cols[e], v]));
  });

  it("decodes the records the sampler hands over (bytes / 255) exactly", () => {
    const data = mfDpDataset(tiny, 500);
    const sampler = new BatchSampler(3);
    sampler.setShards([parseShard(0, data.shards[0]!.bytes.slice().buffer)]);
    const batch = sampler.nextBatch(500, MF_RECORD_BYTES)!;
    // The mean gradient of the batch equals the one computed from the records themselves.
    const job = mfDpJob(tiny);
    const params = job.init(1);
    const shardRecords = records(parseShard(0, data.shards[0]!.bytes.slice().buffer).pixels, 500);
    const ref = new Float32Array(params.length);
    const vOff = tiny.users * tiny.rank;
    for (const [i, j, r] of shardRecords) {
      let dot = 0;
      for (let f = 0; f < 4; f++) dot += params[i * 4 + f]! * params[vOff + j * 4 + f]!;
      const e = r - dot;
      for (let f = 0; f < 4; f++) {
        ref[i * 4 + f]! += (tiny.lambda * params[i * 4 + f]! - e * params[vOff + j * 4 + f]!) / 500;
        ref[vOff + j * 4 + f]! += (tiny.lambda * params[vOff + j * 4 + f]! - e * params[i * 4 + f]!) / 500;
      }
    }
    return job.meanGradient(noBackend, params, batch).then((g) => {
      let maxDiff = 0;
      let maxRef = 0;
      for (let k = 0; k < ref.length; k++) {
        maxDiff = Math.max(maxDiff, Math.abs(g.grad[k]! - ref[k]!));
        maxRef = Math.max(maxRef, Math.abs(ref[k]!));
      }
      expect(maxRef).toBeGreaterThan(0);
      expect(maxDiff / maxRef).toBeLessThan(1e-5);
    });
  });
});

describe("mf-dp job", () => {
  it("starts from job mf's initial factors and skips records outside the problem", async () => {
    const job = jobFor(MF_DP_NAME, small)!;
    expect(job.parameters).toBe(modelFloats(small));
    const p = job.init(1);
    expect(Array.from(p.subarray(0, initRowBlock(small, 0).length))).toEqual(Array.from(initRowBlock(small, 0)));
    const v0 = initColBlock(small, 0);
    expect(Array.from(p.subarray(small.users * small.rank, small.users * small.rank + v0.length))).toEqual(Array.from(v0));
    const bad = encodeRecords(Uint32Array.of(small.users, 0), Uint32Array.of(0, small.items), Float32Array.of(1, 1));
    const batch: Batch = { x: Float32Array.from(bad, (b) => b / 255), labels: new Uint32Array(2), size: 2 };
    const { update, loss } = await job.step(noBackend, p, batch, 1);
    expect(loss).toBe(0);
    expect(update.every((x) => x === 0)).toBe(true);
    // The worker's reused update buffer is written in place: −lr × the mean gradient.
    const good = encodeRecords(Uint32Array.of(3), Uint32Array.of(5), Float32Array.of(2));
    const one: Batch = { x: Float32Array.from(good, (b) => b / 255), labels: new Uint32Array(1), size: 1 };
    const into = new Float32Array(job.parameters).fill(7);
    const g = await job.meanGradient(noBackend, p, one);
    const stepped = await job.step(noBackend, p, one, 0.5, undefined, into);
    expect(stepped.update).toBe(into);
    expect(Array.from(into)).toEqual(Array.from(g.grad, (x) => Math.fround(-0.5 * x)));
    expect(into[3 * small.rank]).not.toBe(0);
    expect(jobFor("no-such-job")).toBeUndefined();
  });

  it("trained by four workers in lockstep reaches 1.05 × the noise floor within 6 epochs", async () => {
    const data = mfDpDataset(small, 1024);
    const job = mfDpJob(small);
    const params = job.init(1);
    const B = 256;
    const workers = [0, 1, 2, 3].map((w) => {
      const s = new BatchSampler(11 + w);
      s.setShards(data.shards.filter((_, k) => k % 4 === w).map((sh) => parseShard(sh.ref.id, sh.bytes.slice().buffer)));
      return s;
    });
    let ratio = Infinity;
    let epochs = 0;
    for (epochs = 1; epochs <= 6 && ratio > 1.05; epochs++) {
      for (let c = 0; c < Math.ceil(data.train.count / (4 * B)); c++) {
        const updates = [];
        for (const s of workers) {
          const lr = (small.lr * B) / (1 + small.lrDecay * (epochs - 1));
          updates.push((await job.step(noBackend, params, s.nextBatch(B, MF_RECORD_BYTES)!, lr)).update);
        }
        for (const u of updates) for (let k = 0; k < u.length; k++) params[k]! += u[k]!;
      }
      const m = job.evaluate(params, data.test.pixels, data.test.labels, data.test.count);
      expect(m.name).toBe("noise/rmse");
      ratio = 1 / m.value;
      expect(ratio).toBeCloseTo(recordsRmse(small, params, data.test.pixels, data.test.count) / small.noise, 6);
    }
    expect(ratio, `after ${epochs - 1} epochs`).toBeLessThanOrEqual(1.05);
  });
});

describe("mf-dp flags and the harness", () => {
  it("takes the --mf-* flags, stops at 1 / --mf-target, and still refuses them for other jobs", () => {
    const cfg = parseCoordinatorArgs(["--job", "mf-dp", "--mf-users", "2000", "--mf-target", "1.1"]);
    expect(cfg.mf?.problem.users).toBe(2000);
    expect(cfg.targetAccuracy).toBeCloseTo(1 / 1.1);
    expect(() => parseCoordinatorArgs(["--job", "mnist-softmax", "--mf-users", "2000"])).toThrow(UsageError);
    expect(() => configFromValues({ job: "mf-dp", "mf-rank": "0" })).toThrow(UsageError);
  });

  it("compares mf and mf-dp on one scale: RMSE / σ against --mf-target", () => {
    const h = parseHarnessArgs(["--workers", "4", "--compare", "job=mf,mf-dp", "--mf-users", "2000", "--mf-noise", "0.2"]);
    expect(h.runs.map((r) => r.rmse)).toEqual([{ noise: 0.2, target: 1.05 }, { noise: 0.2, target: 1.05 }]);
    expect(h.runs[1]!.coordinatorArgs).toEqual(expect.arrayContaining(["--job", "mf-dp", "--mf-users", "2000"]));
    expect(rmseOverFloor("rmse", 0.21, 0.2)).toBeCloseTo(1.05);
    expect(rmseOverFloor("noise/rmse", 1 / 1.05, 0.2)).toBeCloseTo(1.05);
    expect(rmseOverFloor("accuracy", 0.9, 0.2)).toBeNaN();
    expect(parseHarnessArgs(["--workers", "2"]).runs[0]!.rmse).toBeNull();
  });
});
