/**
 * The compression section of `npm run bench -- transport` (transport.ts calls
 * it): bytes each worker sends per clock, dense fp32 against each
 * `--compression`, and test accuracy after the same number of clocks.
 *
 * Measured in Node, not in browsers (four browsers training mnist-mlp for a
 * few hundred clocks per setting would take far longer than this machine
 * allows): a simulation of W workers under BSP that runs the real job code
 * (client/jobs, on the TypeScript reference backend), the real sampler on the
 * real MNIST shards, the real compression with error feedback
 * (client/compress.ts) and the real frame encoder (client/peer/frames.ts) for
 * the byte counts. Under BSP with every replica applying the same decoded
 * updates, all replicas are equal, so one parameter vector stands for all of
 * them: at each clock every worker computes its update at that vector, its
 * error feedback turns it into a decoded update and a payload, and the vector
 * moves by the sum of the decoded updates. Every setting starts from the same
 * seed and draws the same minibatches, so differences come from compression.
 */
import { ErrorFeedback, formatCompression, parseCompression, type Compression } from "../../client/compress.ts";
import { createRefBackend } from "../../client/gpu/ref-backend.ts";
import { JOBS } from "../../client/jobs/registry.ts";
import { FrameType, encodeMessage } from "../../client/peer/frames.ts";
import { BatchSampler, parseShard } from "../../client/store/shards.ts";
import { loadMnist } from "../../coordinator/data.ts";

export interface SimulationOptions {
  readonly job: string;
  readonly compression: Compression;
  readonly workers: number;
  readonly clocks: number;
  readonly seed?: number;
  /** Called after every clock with the clock and the parameters (e.g. to stop early). */
  readonly onClock?: (clock: number, params: Float32Array) => boolean | void;
}

export interface SimulationResult {
  readonly clocks: number;
  /** Update frames' bytes (headers included) one worker sends per clock to its W − 1 peers. */
  readonly bytesPerWorkerClock: number;
  readonly accuracy: number;
  readonly params: Float32Array;
  /** Largest |Σ decoded + residual − Σ raw| over workers and parameters, relative to the largest |Σ raw|. */
  readonly feedbackError: number;
}

/** Runs the simulation described at the top of this file. */
export async function simulate(opts: SimulationOptions): Promise<SimulationResult> {
  const job = JOBS[opts.job];
  if (!job) throw new Error(`unknown job ${opts.job}`);
  const data = loadMnist();
  const seed = opts.seed ?? 1;
  const params = job.init(seed);
  const n = job.parameters;
  const workers = Array.from({ length: opts.workers }, (_, w) => {
    const sampler = new BatchSampler(seed * 7919 + w + 1);
    // Shards dealt round-robin, as the coordinator deals them.
    sampler.setShards(
      data.shards
        .filter((_, i) => i % opts.workers === w)
        .map((s) => parseShard(s.ref.id, s.bytes.slice().buffer)),
    );
    return {
      backend: createRefBackend(),
      sampler,
      feedback: new ErrorFeedback(opts.compression, n),
      raw: new Float64Array(n),
      applied: new Float64Array(n),
    };
  });
  let bytes = 0;
  let clock = 0;
  while (clock < opts.clocks) {
    clock++;
    const sum = new Float32Array(n);
    for (const w of workers) {
      const batch = w.sampler.nextBatch(job.batch, job.inputDim);
      if (!batch) throw new Error("a simulated worker has no data");
      const { update } = await job.step(w.backend, params, batch, job.learningRate);
      const { encoded, decoded } = w.feedback.encode(update);
      const frames = encodeMessage({ type: FrameType.UPDATE, encoding: encoded.encoding, job: 0, sender: 1, clock, messageId: clock, payload: encoded.payload });
      for (const f of frames) bytes += f.byteLength * (opts.workers - 1);
      for (let i = 0; i < n; i++) {
        const d = decoded[i] ?? 0;
        sum[i] = (sum[i] ?? 0) + d;
        w.raw[i] = (w.raw[i] ?? 0) + (update[i] ?? 0);
        w.applied[i] = (w.applied[i] ?? 0) + d;
      }
    }
    for (let i = 0; i < n; i++) params[i] = (params[i] ?? 0) + (sum[i] ?? 0);
    if (opts.onClock?.(clock, params) === true) break;
  }
  let worst = 0;
  let scale = 1e-30;
  for (const w of workers) {
    for (let i = 0; i < n; i++) {
      worst = Math.max(worst, Math.abs((w.applied[i] ?? 0) + (w.feedback.residual[i] ?? 0) - (w.raw[i] ?? 0)));
      scale = Math.max(scale, Math.abs(w.raw[i] ?? 0));
    }
  }
  const accuracy = job.evaluate(params, data.test.pixels, data.test.labels, data.test.count).value;
  return { clocks: clock, bytesPerWorkerClock: bytes / (clock * opts.workers), accuracy, params, feedbackError: worst / scale };
}

export interface CompressionRow {
  readonly compression: string;
  readonly bytesPerWorkerClock: number;
  readonly fewerBytesThanDense: number;
  readonly accuracy: number;
  readonly lossPoints: number;
  readonly feedbackError: number;
  readonly seconds: number;
}

export const SETTINGS = ["none", "fp16", "int8", "topk:0.01", "topk:0.01+fp16", "topk:0.01+int8"] as const;

function setting(text: string): Compression {
  const p = parseCompression(text);
  if (!p.ok) throw new Error(p.message);
  return p.value;
}

/**
 * mnist-mlp, W workers, the same number of clocks for every setting. Clocks
 * and workers can be lowered with GRID_BENCH_CLOCKS / GRID_BENCH_WORKERS.
 */
export async function runCompressionSection(log: (line: string) => void = (l) => process.stdout.write(`${l}\n`)): Promise<{
  ratios: Record<string, number>;
  table: CompressionRow[];
  method: string;
}> {
  const clocks = Number(process.env["GRID_BENCH_CLOCKS"] ?? 150);
  const workers = Number(process.env["GRID_BENCH_WORKERS"] ?? 4);
  const table: CompressionRow[] = [];
  let dense: { bytes: number; accuracy: number } | null = null;
  for (const text of SETTINGS) {
    const t0 = performance.now();
    const r = await simulate({ job: "mnist-mlp", compression: setting(text), workers, clocks });
    dense ??= { bytes: r.bytesPerWorkerClock, accuracy: r.accuracy };
    const row: CompressionRow = {
      compression: formatCompression(setting(text)),
      bytesPerWorkerClock: Math.round(r.bytesPerWorkerClock),
      fewerBytesThanDense: dense.bytes / r.bytesPerWorkerClock,
      accuracy: r.accuracy,
      lossPoints: (dense.accuracy - r.accuracy) * 100,
      feedbackError: r.feedbackError,
      seconds: (performance.now() - t0) / 1000,
    };
    log(`compression ${row.compression}: ${row.bytesPerWorkerClock} B/worker/clock (${row.fewerBytesThanDense.toFixed(1)}x fewer), accuracy ${row.accuracy.toFixed(4)} after ${clocks} clocks (${row.seconds.toFixed(0)} s)`);
    table.push(row);
  }
  const row = (c: string): CompressionRow => {
    const r = table.find((x) => x.compression === c);
    if (!r) throw new Error(`no row for ${c}`);
    return r;
  };
  return {
    ratios: {
      bytes_dense_vs_topk: row("topk:0.01").fewerBytesThanDense,
      bytes_dense_vs_int8: row("int8").fewerBytesThanDense,
      accuracy_loss_topk_points: row("topk:0.01").lossPoints,
      accuracy_loss_int8_points: row("int8").lossPoints,
    },
    table,
    method: `Node simulation: mnist-mlp, ${workers} workers, BSP, ${clocks} clocks, reference backend, real compression and frame code`,
  };
}
