/**
 * Job `mf-dp`: the matrix factorization of job `mf` (client/mf/problem.ts)
 * trained data-parallel, for the comparison with the model-parallel job: every
 * volunteer holds full replicas of U and V and trains on minibatches of the
 * training ratings through the ordinary machinery (shards, SSP gate, updates
 * to every peer, cuts, drain, digests).
 *
 * Built per problem (`mfDpJob(problem)`): the sizes come from the `--mf-*`
 * flags, so this job is not in the static registry; the coordinator builds it
 * from its flags and a page from the `mf` field of its welcome (jobFor in
 * registry.ts).
 *
 * Data: the coordinator generates every training and test rating from the
 * seed (coordinator/mf/dp-data.ts) and serves the training ratings as
 * ordinary shards whose "images" are 12-byte records: row (u32 LE), column
 * (u32 LE), rating (f32 LE). The sampler hands them over as bytes / 255
 * (client/store/shards.ts); `decodeRecord` rounds them back to the exact bytes.
 * A record naming a row or column outside the problem (e.g. the synthetic
 * batches of the backend timing) is skipped.
 *
 * Parameters: U (users × rank, row-major) then V (items × rank): the layout of
 * job mf's /api/model, and the same initial factors (initRowBlock/initColBlock).
 *
 * Step: per rating e = r − u_i·v_j, gradient of ½e² + ½λ(|u_i|² + |v_j|²);
 * the batch's mean gradient times the job's learning rate, which the
 * coordinator sets to the per-rating step of job mf times the batch, so one
 * clock moves each touched factor as many per-rating SGD steps (all taken at
 * the same parameters) would. Plain SGD with job mf's decay, counted in passes
 * over the worker's own shards (lr / (1 + decay · pass); with the data split
 * evenly a pass is an epoch); the gradient is host code
 * (a sparse gather/scatter that the kernel library's dense ops do not fit; on
 * this grid's CPU-only volunteers job mf's CPU path wins too, docs/mf.md).
 *
 * Metric: "noise/rmse" = σ / test RMSE on the held-out ratings (higher is
 * better, 1 at the noise floor), so the data-parallel job's target rule
 * (value ≥ target) stops it at test RMSE ≤ X × σ with target 1 / X.
 */
import { initColBlock, initRowBlock, modelFloats, type MfConfig } from "../mf/problem.ts";
import type { Batch, Gradient, JobDefinition, Metric } from "./job.ts";
import { sgd } from "./optimizers.ts";

export const MF_DP_NAME = "mf-dp";
/** Bytes of one rating record in a shard. */
export const MF_RECORD_BYTES = 12;
/** Default ratings per minibatch. */
export const MF_DP_BATCH = 1024;

/** Ratings as 12-byte records (row u32, column u32, rating f32; little-endian). */
export function encodeRecords(rows: Uint32Array, cols: Uint32Array, vals: Float32Array): Uint8Array {
  const out = new Uint8Array(vals.length * MF_RECORD_BYTES);
  const dv = new DataView(out.buffer);
  for (let e = 0; e < vals.length; e++) {
    dv.setUint32(e * MF_RECORD_BYTES, rows[e] ?? 0, true);
    dv.setUint32(e * MF_RECORD_BYTES + 4, cols[e] ?? 0, true);
    dv.setFloat32(e * MF_RECORD_BYTES + 8, vals[e] ?? 0, true);
  }
  return out;
}

interface RecordReader {
  /** Row, column and rating of record `b` of a batch (`x` = bytes / 255). */
  read(x: Float32Array, b: number): void;
  i: number;
  j: number;
  r: number;
}

function recordReader(): RecordReader {
  const bytes = new Uint8Array(MF_RECORD_BYTES);
  const dv = new DataView(bytes.buffer);
  const rr: RecordReader = {
    i: 0,
    j: 0,
    r: 0,
    read(x, b) {
      for (let k = 0; k < MF_RECORD_BYTES; k++) bytes[k] = Math.round((x[b * MF_RECORD_BYTES + k] ?? 0) * 255);
      rr.i = dv.getUint32(0, true);
      rr.j = dv.getUint32(4, true);
      rr.r = dv.getFloat32(8, true);
    },
  };
  return rr;
}

/** Test RMSE of factors `params` (U then V) over `count` records in `bytes`; records out of range are skipped. */
export function recordsRmse(p: MfConfig, params: Float32Array, bytes: Uint8Array, count: number): number {
  const dv = new DataView(bytes.buffer, bytes.byteOffset, bytes.byteLength);
  const r = p.rank;
  const vOff = p.users * r;
  let sq = 0;
  let n = 0;
  for (let e = 0; e < count; e++) {
    const i = dv.getUint32(e * MF_RECORD_BYTES, true);
    const j = dv.getUint32(e * MF_RECORD_BYTES + 4, true);
    if (i >= p.users || j >= p.items) continue;
    let dot = 0;
    for (let f = 0; f < r; f++) dot += (params[i * r + f] ?? 0) * (params[vOff + j * r + f] ?? 0);
    const err = dv.getFloat32(e * MF_RECORD_BYTES + 8, true) - dot;
    sq += err * err;
    n++;
  }
  return n > 0 ? Math.sqrt(sq / n) : Number.NaN;
}

/** The data-parallel job for problem `p`. */
export function mfDpJob(p: MfConfig): JobDefinition {
  const r = p.rank;
  const parameters = modelFloats(p);
  const vOff = p.users * r;
  const reader = recordReader();

  function meanGradient(params: Float32Array, batch: Batch): Gradient {
    if (params.length !== parameters) throw new Error(`${MF_DP_NAME}: params has ${params.length}, expected ${parameters}`);
    if (batch.size < 1 || batch.x.length !== batch.size * MF_RECORD_BYTES) throw new Error(`${MF_DP_NAME}: malformed batch of ${batch.size} rows`);
    const grad = new Float32Array(parameters);
    const scale = 1 / batch.size;
    let loss = 0;
    for (let b = 0; b < batch.size; b++) {
      reader.read(batch.x, b);
      const { i, j } = reader;
      if (i >= p.users || j >= p.items) continue;
      const uo = i * r;
      const vo = vOff + j * r;
      let dot = 0;
      for (let f = 0; f < r; f++) dot += (params[uo + f] ?? 0) * (params[vo + f] ?? 0);
      const e = reader.r - dot;
      loss += 0.5 * e * e * scale;
      for (let f = 0; f < r; f++) {
        const u = params[uo + f] ?? 0;
        const v = params[vo + f] ?? 0;
        grad[uo + f] = (grad[uo + f] ?? 0) + scale * (p.lambda * u - e * v);
        grad[vo + f] = (grad[vo + f] ?? 0) + scale * (p.lambda * v - e * u);
      }
    }
    return { grad, loss };
  }

  const init = (): Float32Array => {
    const out = new Float32Array(parameters);
    let o = 0;
    for (let k = 0; k < p.blocks; k++) {
      const u = initRowBlock(p, k);
      out.set(u, o);
      o += u.length;
    }
    for (let b = 0; b < p.blocks; b++) {
      const v = initColBlock(p, b);
      out.set(v, o);
      o += v.length;
    }
    return out;
  };

  return {
    name: MF_DP_NAME,
    dataset: "mf-ratings",
    inputDim: MF_RECORD_BYTES,
    classes: 1,
    parameters,
    batch: MF_DP_BATCH,
    learningRate: p.lr * MF_DP_BATCH,
    lrDecay: p.lrDecay,
    targetAccuracy: 1 / 1.05,
    optimizer: sgd(),
    init,
    // Host code; as session tensors only for callers that want them (the step does not).
    gradient: (s, params, batch) => {
      const g = meanGradient(params, batch);
      return { grads: [s.upload(g.grad, 1, parameters)], loss: s.upload(Float32Array.of(g.loss), 1, 1) };
    },
    meanGradient: (_backend, params, batch) => Promise.resolve(meanGradient(params, batch)),
    step(_backend, params, batch, lr, _optimizer, into) {
      const { grad, loss } = meanGradient(params, batch);
      if (into !== undefined && into.length !== parameters) throw new Error(`${MF_DP_NAME}: the update buffer holds ${into.length} values, expected ${parameters}`);
      const update = into ?? grad;
      for (let k = 0; k < grad.length; k++) update[k] = -lr * (grad[k] ?? 0);
      return Promise.resolve({ update, loss });
    },
    matmulShapes: () => [],
    evaluate(params, pixels, _labels, count): Metric {
      const e = recordsRmse(p, params, pixels, count);
      return { name: "noise/rmse", value: Number.isFinite(e) && e > 0 ? p.noise / e : 0, loss: e };
    },
  };
}
