/**
 * The volunteer's Web Worker for job mf (comlink `expose`): the trainer (its
 * row blocks, the column blocks handed to it, its ratings) and the block-SGD
 * backend. At `init` it times the WGSL kernel against the CPU path on one
 * block of the job's own shape, checks that both give the same factors, and
 * keeps the faster (`?backend=` forces one).
 */
import * as Comlink from "comlink";
import { MfGpu } from "./gpu.ts";
import type { MfConfig } from "./problem.ts";
import { sgdBlock } from "./sgd.ts";
import { MfTrainer, type BlockSgd } from "./trainer.ts";
import type { FactorBlock } from "./wire.ts";

export interface MfInit {
  readonly backend: "webgpu" | "cpu";
  readonly kernel: string;
  readonly adapter: string;
  /** Why WebGPU is not used, if it is not. */
  readonly note: string | null;
  /** One pass over the timing block, ms (null: not measured). */
  readonly cpuMs: number | null;
  readonly gpuMs: number | null;
  /** Largest |GPU − CPU| over the factors after the timing pass, relative to the largest |factor|. */
  readonly maxRelDiff: number | null;
}

let trainer: MfTrainer | null = null;
let sgd: BlockSgd = sgdBlock;

function need(): MfTrainer {
  if (!trainer) throw new Error("mf worker: init first");
  return trainer;
}

async function init(cfg: MfConfig, forced: "webgpu" | "cpu" | null): Promise<MfInit> {
  trainer = new MfTrainer(cfg);
  sgd = sgdBlock;
  if (forced === "cpu") return { backend: "cpu", kernel: "js-rounds", adapter: "none", note: "forced by ?backend=cpu", cpuMs: null, gpuMs: null, maxRelDiff: null };
  const gpu = await MfGpu.create();
  if (typeof gpu === "string") return { backend: "cpu", kernel: "js-rounds", adapter: "none", note: gpu, cpuMs: null, gpuMs: null, maxRelDiff: null };
  // Time both on block (0, 0) of this job, from the same start.
  const block = trainer.blockRatings(0)[0]!;
  const u0 = new Float32Array(trainer.floatsOf("u", 0)!).map((_, i) => 0.3 * Math.sin(i + 1));
  const v0 = new Float32Array(trainer.floatsOf("v", 0)!).map((_, i) => 0.3 * Math.cos(i + 1));
  const uc = Float32Array.from(u0);
  const vc = Float32Array.from(v0);
  sgdBlock(Float32Array.from(u0), Float32Array.from(v0), cfg.rank, block, cfg.lr, cfg.lambda); // warm-up: JIT
  let t = performance.now();
  sgdBlock(uc, vc, cfg.rank, block, cfg.lr, cfg.lambda);
  const cpuMs = performance.now() - t;
  const ug = Float32Array.from(u0);
  const vg = Float32Array.from(v0);
  await gpu.sgdBlock(Float32Array.from(u0), Float32Array.from(v0), cfg.rank, block, cfg.lr, cfg.lambda); // warm-up: pipeline, buffers
  t = performance.now();
  await gpu.sgdBlock(ug, vg, cfg.rank, block, cfg.lr, cfg.lambda);
  const gpuMs = performance.now() - t;
  let diff = 0;
  let scale = 1e-6;
  for (const [a, b] of [[uc, ug], [vc, vg]] as const) {
    for (let i = 0; i < a.length; i++) {
      diff = Math.max(diff, Math.abs(a[i]! - b[i]!));
      scale = Math.max(scale, Math.abs(a[i]!));
    }
  }
  trainer.keepRows([]);
  const maxRelDiff = diff / scale;
  const agree = maxRelDiff < 1e-3;
  const useGpu = agree && (forced === "webgpu" || gpuMs < cpuMs);
  if (useGpu) sgd = (u, v, rank, b, lr, lambda) => gpu.sgdBlock(u, v, rank, b, lr, lambda);
  const note = !agree ? `the WGSL kernel disagrees with the reference (relative ${maxRelDiff.toExponential(2)})` : useGpu ? null : `the CPU path is faster here (${cpuMs.toFixed(1)} ms against ${gpuMs.toFixed(1)} ms per block)`;
  return { backend: useGpu ? "webgpu" : "cpu", kernel: useGpu ? "wgsl-mf-sgd" : "js-rounds", adapter: gpu.adapterName, note, cpuMs, gpuMs, maxRelDiff };
}

const api = {
  init,
  async version(kind: "u" | "v", index: number): Promise<number | null> {
    return need().version(kind, index);
  },
  async put(b: FactorBlock): Promise<boolean> {
    return need().put(b);
  },
  async get(kind: "u" | "v", index: number): Promise<FactorBlock | null> {
    const b = need().get(kind, index);
    return b ? Comlink.transfer(b, [b.data.buffer]) : null;
  },
  async release(kind: "u" | "v", index: number): Promise<void> {
    need().release(kind, index);
  },
  async keepRows(rows: number[]): Promise<void> {
    need().keepRows(rows);
  },
  async train(row: number, col: number, lr: number): Promise<{ sq: number; ratings: number; ms: number }> {
    const t = performance.now();
    const r = await need().train(row, col, lr, sgd);
    return { ...r, ms: performance.now() - t };
  },
  async memory(): Promise<{ modelBytes: number; peakModelBytes: number }> {
    const tr = need();
    return { modelBytes: tr.modelBytes(), peakModelBytes: tr.peakModelBytes() };
  },
};

export type MfWorkerApi = typeof api;
Comlink.expose(api);
