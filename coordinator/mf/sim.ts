/**
 * An in-process simulation of block-parallel matrix factorization: the real
 * schedule (schedule.ts), the real block SGD (client/mf/sgd.ts, the CPU
 * reference) and the real checkpoint store (checkpoints.ts), with N simulated
 * workers that hold only their row blocks and the column blocks handed to
 * them, and optional leaves and joins. Used by the unit tests and by
 * `npx tsx coordinator/mf/sim.ts [flags]`, which prints the numbers of a run.
 */
import { blockRange, colBlockFloats, generateRows, learningRate, modelFloats, rowBlockFloats, trueItems, type MfConfig, type Ratings } from "../../client/mf/problem.ts";
import { prepareRowBlock, sgdBlock, type BlockRatings } from "../../client/mf/sgd.ts";
import { Checkpoints } from "./checkpoints.ts";
import { addWorker, removeWorker, markDone, rebalance, tasks, violations, createSchedule, rowFor } from "./schedule.ts";

export interface SimOptions {
  readonly workers: number;
  /** Stop after this many epochs (K sub-epochs each) or at the target. */
  readonly maxEpochs: number;
  /** Stop once test RMSE ≤ target × noise. */
  readonly target: number;
  /** Worker leaves at the start of sub-epoch t. */
  readonly leaves?: readonly { worker: string; t: number }[];
  /** Worker joins at the start of sub-epoch t. */
  readonly joins?: readonly { worker: string; t: number }[];
}

export interface SimResult {
  /** [epoch, test RMSE] after each epoch. */
  readonly series: [number, number][];
  readonly floor: number;
  readonly finalRmse: number;
  /** First epoch at which test RMSE ≤ target × floor, or null. */
  readonly epochsToTarget: number | null;
  readonly ms: number;
  /** Largest number of model floats one worker held at once, and the bound 1/K·whole + one column block. */
  readonly maxWorkerFloats: number;
  readonly boundFloats: number;
  readonly wholeFloats: number;
  /** Floats sent peer to peer (column blocks) and to the coordinator (checkpoints). */
  readonly peerFloats: number;
  readonly checkpointFloats: number;
  readonly violations: string[];
}

interface SimWorker {
  readonly id: string;
  /** Row blocks held, with the sub-epoch count they reflect. */
  readonly u: Map<number, { version: number; data: Float32Array }>;
  /** Column blocks received from peers, waiting for their sub-epoch. */
  readonly inbox: Map<number, { version: number; data: Float32Array }>;
  /** Prepared ratings per row block (data, not model). */
  readonly ratings: Map<number, BlockRatings[]>;
}

/** Test RMSE of the checkpointed model. */
export function testRmse(cfg: MfConfig, ck: Checkpoints, test: Ratings): number {
  const r = cfg.rank;
  const u = ck.assembled("u");
  const v = ck.assembled("v");
  let sq = 0;
  const n = test.vals.length;
  for (let e = 0; e < n; e++) {
    const uo = test.rows[e]! * r;
    const vo = test.cols[e]! * r;
    let dot = 0;
    for (let f = 0; f < r; f++) dot += u[uo + f]! * v[vo + f]!;
    const err = test.vals[e]! - dot;
    sq += err * err;
  }
  return n === 0 ? 0 : Math.sqrt(sq / n);
}

export function simulate(cfg: MfConfig, opts: SimOptions): SimResult {
  const started = performance.now();
  const vStar = trueItems(cfg);
  const { test } = generateRows(cfg, 0, cfg.users, vStar, false);
  const ck = new Checkpoints(cfg);
  const s = createSchedule(cfg.blocks);
  const workers = new Map<string, SimWorker>();
  const found: string[] = [];
  const join = (id: string): void => {
    workers.set(id, { id, u: new Map(), inbox: new Map(), ratings: new Map() });
    addWorker(s, id);
  };
  for (let i = 1; i <= opts.workers; i++) join(`w${i}`);
  rebalance(s);
  let maxWorkerFloats = 0;
  let peerFloats = 0;
  let checkpointFloats = 0;
  const series: [number, number][] = [];
  let epochsToTarget: number | null = null;
  const maxT = opts.maxEpochs * cfg.blocks;
  while (s.t < maxT) {
    for (const l of opts.leaves ?? []) {
      if (l.t === s.t && workers.delete(l.worker)) removeWorker(s, l.worker);
    }
    for (const j of opts.joins ?? []) if (j.t === s.t && !workers.has(j.worker)) join(j.worker);
    if (workers.size === 0) break;
    found.push(...violations(s));
    const t = s.t;
    const lr = learningRate(cfg, t);
    for (const task of tasks(s)) {
      const w = workers.get(task.worker)!;
      // Drop what it no longer owns (handed on at a rebalance).
      for (const k of w.u.keys()) if (s.owners[k] !== w.id) w.u.delete(k);
      let u = w.u.get(task.row);
      if (!u || u.version !== t) {
        u = ck.get("u", task.row, t);
        w.u.set(task.row, u);
      }
      let v = w.inbox.get(task.col);
      w.inbox.delete(task.col);
      if (!v || v.version !== t) v = ck.get("v", task.col, t);
      let ratings = w.ratings.get(task.row);
      if (!ratings) {
        const [a, b] = blockRange(cfg.users, cfg.blocks, task.row);
        ratings = prepareRowBlock(cfg, task.row, generateRows(cfg, a, b, vStar).train);
        w.ratings.set(task.row, ratings);
      }
      let held = v.data.length;
      for (const x of w.u.values()) held += x.data.length;
      for (const x of w.inbox.values()) held += x.data.length;
      maxWorkerFloats = Math.max(maxWorkerFloats, held);
      sgdBlock(u.data, v.data, cfg.rank, ratings[task.col]!, lr, cfg.lambda);
      u.version = t + 1;
      v.version = t + 1;
      ck.put("u", task.row, t + 1, u.data);
      ck.put("v", task.col, t + 1, v.data);
      checkpointFloats += u.data.length + v.data.length;
      // Hand V_b to the owner of the row block that needs it next.
      const next = s.owners[rowFor(cfg.blocks, task.col, t + 1)];
      const dest = next ? workers.get(next) : undefined;
      if (dest) {
        dest.inbox.set(task.col, { version: t + 1, data: dest === w ? v.data : Float32Array.from(v.data) });
        if (dest !== w) peerFloats += v.data.length;
      }
      markDone(s, task.worker, task.row);
    }
    if (s.t % cfg.blocks === 0 && s.t !== t) {
      const e = s.t / cfg.blocks;
      const r = testRmse(cfg, ck, test);
      series.push([e, r]);
      if (epochsToTarget === null && r <= opts.target * cfg.noise) {
        epochsToTarget = e;
        break;
      }
    }
  }
  const whole = modelFloats(cfg);
  let maxRow = 0;
  let maxCol = 0;
  for (let k = 0; k < cfg.blocks; k++) {
    maxRow = Math.max(maxRow, rowBlockFloats(cfg, k));
    maxCol = Math.max(maxCol, colBlockFloats(cfg, k));
  }
  return {
    series,
    floor: cfg.noise,
    finalRmse: series.at(-1)?.[1] ?? NaN,
    epochsToTarget,
    ms: performance.now() - started,
    maxWorkerFloats,
    boundFloats: Math.max(Math.ceil(whole / cfg.blocks), maxRow + maxCol) + maxCol,
    wholeFloats: whole,
    peerFloats,
    checkpointFloats,
    violations: found,
  };
}
