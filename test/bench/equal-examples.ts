/**
 * `npm run bench -- equal-examples`: K workers against one at equal examples
 * processed, simulated in Node (no browsers), to tell apart what costs the
 * distributed run accuracy: the summed step of K updates per clock, the
 * staleness of peers' updates, or the size of the minibatch a clock covers.
 *
 * Runs the real job code (client/jobs, TypeScript reference backend), the
 * real sampler over the real MNIST shards (dealt round-robin as the
 * coordinator deals them) and the real `lrScale`. Clock c of worker k
 * computes its update on a replica holding its own updates up to c − 1 and
 * every peer's up to c − 1 − s (peers exactly s clocks late: the worst the
 * SSP bound allows; s = 0 is BSP); every replica then adds all K updates. One
 * worker runs K× the clocks, so both see the same examples. Test accuracy on
 * the 10k test images every `evals`-th of the run; `final` is the last,
 * `mean_last4` the mean of the last four (the last ~30% of the run).
 *
 * Env: `BENCH_EQ_SEEDS` (default 2), `BENCH_EQ_K` (default 4),
 * `BENCH_EQ_CLOCKS` one worker's clocks per horizon (default "400,1400":
 * 51,200 and 179,200 examples at batch 128, about 0.85 and 3 epochs).
 */
import { createRefBackend } from "../../client/gpu/ref-backend.ts";
import { JOBS } from "../../client/jobs/registry.ts";
import { lrScale, type LrScaling } from "../../client/jobs/optimizers.ts";
import { BatchSampler, parseShard } from "../../client/store/shards.ts";
import { loadMnist } from "../../coordinator/data.ts";

const JOB = "mnist-softmax";
const EVALS = 10;

interface Row {
  workers: number;
  lr_scaling: LrScaling;
  lag: number;
  seed: number;
  clocks: number;
  examples: number;
  final: number;
  mean_last4: number;
  curve: number[];
}

function envInts(name: string, def: number[], min: number, max: number): number[] {
  const raw = process.env[name];
  if (raw === undefined || raw === "") return def;
  const xs = raw.split(",").map(Number);
  if (xs.some((x) => !Number.isInteger(x) || x < min || x > max)) throw new Error(`${name}=${raw}: want whole numbers in [${min}, ${max}]`);
  return xs;
}

async function simulate(K: number, clocks: number, rule: LrScaling, lag: number, seed: number): Promise<Row> {
  const job = JOBS[JOB];
  if (!job) throw new Error(`unknown job ${JOB}`);
  const data = loadMnist();
  const n = job.parameters;
  const model = job.init(seed);
  const lr = job.learningRate * lrScale(rule, K);
  const workers = Array.from({ length: K }, (_, w) => {
    const sampler = new BatchSampler(seed * 7919 + w + 1);
    sampler.setShards(data.shards.filter((_, i) => i % K === w).map((s) => parseShard(s.ref.id, s.bytes.slice().buffer)));
    return { backend: createRefBackend(), sampler, recent: [] as Float32Array[] };
  });
  const every = Math.max(1, Math.round(clocks / EVALS));
  const curve: number[] = [];
  for (let c = 1; c <= clocks; c++) {
    const fresh: Float32Array[] = [];
    for (let k = 0; k < K; k++) {
      const w = workers[k] as (typeof workers)[number];
      // The replica worker k steps on: everything so far but each peer's last `lag` clocks (`recent` holds just those).
      const replica = model.slice();
      for (let j = 0; j < K; j++) {
        if (j === k) continue;
        for (const u of (workers[j] as (typeof workers)[number]).recent) {
          for (let i = 0; i < n; i++) replica[i] = (replica[i] as number) - (u[i] as number);
        }
      }
      const batch = w.sampler.nextBatch(job.batch, job.inputDim);
      if (!batch) throw new Error("a simulated worker has no data");
      const { update } = await job.step(w.backend, replica, batch, lr);
      fresh.push(Float32Array.from(update));
    }
    fresh.forEach((u, k) => {
      const w = workers[k] as (typeof workers)[number];
      w.recent.push(u);
      if (w.recent.length > lag) w.recent.shift();
      for (let i = 0; i < n; i++) model[i] = (model[i] as number) + (u[i] as number);
    });
    if (c % every === 0 || c === clocks) curve.push(+job.evaluate(model, data.test.pixels, data.test.labels, data.test.count).value.toFixed(4));
  }
  const last = curve.slice(-4);
  return {
    workers: K,
    lr_scaling: rule,
    lag,
    seed,
    clocks,
    examples: clocks * K * job.batch,
    final: curve[curve.length - 1] as number,
    mean_last4: +(last.reduce((a, b) => a + b, 0) / last.length).toFixed(4),
    curve,
  };
}

export async function run(): Promise<{ ratios: Record<string, number>; table: Omit<Row, "curve">[]; curves: Row[]; method: string }> {
  const seeds = envInts("BENCH_EQ_SEEDS", [2], 1, 10)[0] as number;
  const K = envInts("BENCH_EQ_K", [4], 2, 16)[0] as number;
  const horizons = envInts("BENCH_EQ_CLOCKS", [400, 1400], K, 20_000);
  const settings: { workers: number; rule: LrScaling; lag: number }[] = [
    { workers: 1, rule: "sum", lag: 0 },
    { workers: K, rule: "sum", lag: 0 },
    { workers: K, rule: "sqrt", lag: 0 },
    { workers: K, rule: "mean", lag: 0 },
    { workers: K, rule: "sum", lag: 1 },
    { workers: K, rule: "sqrt", lag: 1 },
  ];
  const rows: Row[] = [];
  for (const h of horizons) {
    for (const s of settings) {
      for (let seed = 1; seed <= seeds; seed++) {
        const r = await simulate(s.workers, Math.round(h / s.workers), s.rule, s.lag, seed);
        rows.push(r);
        process.stdout.write(`  ${JSON.stringify({ ...r, curve: undefined })}\n`);
      }
    }
  }
  // Gap in points against one worker at the same horizon, averaged over seeds (negative: the K workers are behind).
  const ratios: Record<string, number> = {};
  for (const h of horizons) {
    const at = (w: number, rule: LrScaling, lag: number, key: "final" | "mean_last4"): number => {
      const rs = rows.filter((r) => r.workers === w && r.lr_scaling === rule && r.lag === lag && r.clocks === Math.round(h / w));
      return rs.reduce((a, r) => a + r[key], 0) / rs.length;
    };
    for (const s of settings.slice(1)) {
      for (const key of ["final", "mean_last4"] as const) {
        ratios[`gap_points_${key}_${s.rule}_lag${s.lag}_${h * 128}ex`] = +(100 * (at(s.workers, s.rule, s.lag, key) - at(1, "sum", 0, key))).toFixed(2);
      }
    }
  }
  return {
    ratios,
    table: rows.map(({ curve: _curve, ...r }) => r),
    curves: rows,
    method: `${JOB}, K=${K} against one worker at equal examples; peers' updates exactly 'lag' clocks late; ${seeds} seed(s) per setting`,
  };
}
