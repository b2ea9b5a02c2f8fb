/**
 * Robust aggregation in Node (`npm run bench -- robust`): W workers under BSP
 * run the real mnist-softmax job code on the TypeScript reference backend and
 * the real sampler over the real MNIST shards; one of them may be Byzantine
 * (its updates sign-flipped and scaled ×10). Under BSP every replica holds
 * the same parameters, so one vector stands for all: each clock it moves by
 * the aggregate (client/aggregate.ts) of the workers' updates, in worker
 * order. Test accuracy after the same number of clocks for each setting.
 */
import { aggregate, parseAggregation, type Aggregation } from "../../client/aggregate.ts";
import { createRefBackend } from "../../client/gpu/ref-backend.ts";
import { JOBS } from "../../client/jobs/registry.ts";
import { BatchSampler, parseShard } from "../../client/store/shards.ts";
import { loadMnist } from "../../coordinator/data.ts";

export interface RobustRun {
  readonly aggregation: string;
  readonly clip: string;
  readonly attacker: boolean;
  readonly accuracy: number;
}

export async function simulateRobust(job: string, rule: string, clip: string, attacker: boolean, workers: number, clocks: number): Promise<RobustRun> {
  const def = JOBS[job];
  if (!def) throw new Error(`unknown job ${job}`);
  const agg = parseAggregation(rule, clip);
  if (!agg.ok) throw new Error(agg.message);
  const a: Aggregation = agg.value;
  const data = loadMnist();
  const params = def.init(1);
  const ws = Array.from({ length: workers }, (_, w) => {
    const sampler = new BatchSampler(7919 + w + 1);
    sampler.setShards(data.shards.filter((_, i) => i % workers === w).map((s) => parseShard(s.ref.id, s.bytes.slice().buffer)));
    return { backend: createRefBackend(), sampler };
  });
  for (let c = 1; c <= clocks; c++) {
    const ups: Float32Array[] = [];
    for (const [k, w] of ws.entries()) {
      const batch = w.sampler.nextBatch(def.batch, def.inputDim);
      if (!batch) throw new Error("no data");
      const { update } = await def.step(w.backend, params, batch, def.learningRate);
      if (attacker && k === workers - 1) for (let i = 0; i < update.length; i++) update[i] = -10 * (update[i] as number);
      ups.push(update);
    }
    const sum = aggregate(ups, a, params.length);
    for (let i = 0; i < params.length; i++) params[i] = (params[i] as number) + (sum[i] as number);
  }
  const accuracy = def.evaluate(params, data.test.pixels, data.test.labels, data.test.count).value;
  return { aggregation: rule, clip, attacker, accuracy };
}

/**
 * Five workers, 150 clocks (GRID_BENCH_CLOCKS), mnist-softmax: clean and
 * attacked runs per setting. Ratios: accuracy of each attacked robust run
 * over the clean mean run's, and the attacked mean run's over it.
 */
export async function run(): Promise<{ ratios: Record<string, number>; table: RobustRun[]; method: string }> {
  const clocks = Number(process.env["GRID_BENCH_CLOCKS"] ?? 150);
  const settings: [string, string, boolean][] = [
    ["mean", "off", false],
    ["mean", "off", true],
    ["trimmed:0.2", "auto", false],
    ["trimmed:0.2", "auto", true],
    ["trimmed:0.2", "off", true],
    ["median", "auto", true],
  ];
  const table: RobustRun[] = [];
  for (const [rule, clip, attacked] of settings) {
    const r = await simulateRobust("mnist-softmax", rule, clip, attacked, 5, clocks);
    process.stdout.write(`robust ${rule} clip ${clip} ${attacked ? "attacked" : "clean"}: accuracy ${r.accuracy.toFixed(4)} after ${clocks} clocks\n`);
    table.push(r);
  }
  const acc = (rule: string, clip: string, attacked: boolean): number => table.find((t) => t.aggregation === rule && t.clip === clip && t.attacker === attacked)?.accuracy ?? NaN;
  const clean = acc("mean", "off", false);
  return {
    ratios: {
      mean_attacked_vs_clean: acc("mean", "off", true) / clean,
      trimmed_attacked_vs_clean: acc("trimmed:0.2", "auto", true) / clean,
      median_attacked_vs_clean: acc("median", "auto", true) / clean,
    },
    table,
    method: `Node simulation, 5 workers under BSP, mnist-softmax on the reference backend, ${clocks} clocks, worker 5 Byzantine in attacked runs (updates ×−10)`,
  };
}
