/**
 * The data of job mf-dp (client/jobs/mf-dp.ts): every observed rating of the
 * mf problem, generated from the seed like job mf's, as a `Dataset` the
 * ordinary data-parallel machinery serves: the training ratings cut into
 * shards of 12-byte records (row, column, rating), the held-out ratings as
 * the test set. The training/test split is job mf's (`isTest`), so both jobs
 * are scored on the same held-out ratings.
 *
 * The training ratings are shuffled (seeded) before they are cut: ratings are
 * generated row by row, so unshuffled shards would hold whole users, and a
 * worker that steps with a smaller batch (work sizing) would train its users
 * less often than the others'.
 */
import { MF_RECORD_BYTES, encodeRecords } from "../../client/jobs/mf-dp.ts";
import { generateAll, hash4, stream, type MfConfig, type Ratings } from "../../client/mf/problem.ts";
import { makeShards, type Dataset, type ImageSet } from "../data.ts";

/** Ratings per shard. */
export const MF_DP_SHARD_RATINGS = 4096;

function asRecords(r: Ratings): ImageSet {
  return {
    count: r.vals.length,
    pixelsPerImage: MF_RECORD_BYTES,
    pixels: encodeRecords(r.rows, r.cols, r.vals),
    labels: new Uint8Array(r.vals.length),
  };
}

/** `r` in a seeded random order (Fisher–Yates). */
function shuffled(r: Ratings, seed: number): Ratings {
  const n = r.vals.length;
  const order = new Uint32Array(n);
  for (let e = 0; e < n; e++) order[e] = e;
  const rnd = stream(hash4(seed, 0x5d5f));
  for (let e = n - 1; e > 0; e--) {
    const k = Math.floor(rnd() * (e + 1));
    const t = order[e] ?? 0;
    order[e] = order[k] ?? 0;
    order[k] = t;
  }
  const out = { rows: new Uint32Array(n), cols: new Uint32Array(n), vals: new Float32Array(n) };
  for (let e = 0; e < n; e++) {
    const s = order[e] ?? 0;
    out.rows[e] = r.rows[s] ?? 0;
    out.cols[e] = r.cols[s] ?? 0;
    out.vals[e] = r.vals[s] ?? 0;
  }
  return out;
}

/** The mf problem `p` as shards of training records and a test set of held-out records. */
export function mfDpDataset(p: MfConfig, shardRatings = MF_DP_SHARD_RATINGS): Dataset {
  const all = generateAll(p);
  const train = asRecords(shuffled(all.train, p.seed));
  return { train, test: asRecords(all.test), shards: makeShards(train, shardRatings) };
}
