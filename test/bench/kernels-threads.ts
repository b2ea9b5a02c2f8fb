/**
 * The kernels benchmark's thread section (run by test/bench/kernels.ts): the
 * CPU path as the trainer worker runs it (a probe worker per variant,
 * client/cpu-probe-worker.ts) in three builds side by side in one Chromium:
 *
 * - baseline: the single-thread SIMD build, in a page served without the
 *   isolation headers (what every volunteer runs without
 *   `--cross-origin-isolation on`);
 * - TF.js's threaded SIMD build with 1 thread and with 2 threads, in pages
 *   served with COOP/COEP (`?threads=1`, `?threads=2`).
 *
 * Measured per variant: mnist-mlp training steps at batch 64 (examples/s, as
 * the worker steps), matmul at 512³ and at the MLP's first product
 * (GFLOP/s), and the backend's start-up (ms). The variants' blocks are
 * interleaved (three rounds; each variant's best block counts), so a burst
 * of load from other processes hits all of them alike. Ratios are each
 * threaded variant over the baseline of the same run.
 */
import type { Browser, Page } from "@playwright/test";
import type { BenchRow } from "../../client/bench.ts";
import type { ProbeStart } from "../../client/cpu-probe-worker.ts";
import { serveDist, type StaticServer } from "../support/static-server.ts";

const ISOLATION = { "Cross-Origin-Opener-Policy": "same-origin", "Cross-Origin-Embedder-Policy": "require-corp" };
const ROUNDS = 5;
const TRAIN_STEPS = 40;
const BATCH = 64;

interface Variant {
  readonly impl: string;
  readonly isolated: boolean;
  readonly threads: number | null;
  /** Threads the variant must run with, else the run is wrong (not a slow result). */
  readonly want: number;
  page?: Page;
  start?: ProbeStart;
}

interface Case {
  readonly name: string;
  readonly unit: "examples/s" | "GFLOP/s";
  /** A product m×k · k×n, `reps` times per timing; null: training steps. */
  readonly mm: readonly [m: number, n: number, k: number, reps: number] | null;
}

const CASES: readonly Case[] = [
  { name: `mnist-mlp batch ${BATCH}`, unit: "examples/s", mm: null },
  { name: "512x512x512", unit: "GFLOP/s", mm: [512, 512, 512, 8] },
  { name: `mlp fwd X·W1 ${BATCH}x256x784`, unit: "GFLOP/s", mm: [BATCH, 256, 784, 64] },
];

export interface ThreadsResult {
  readonly rows: BenchRow[];
  readonly ratios: Record<string, number>;
}

export async function threadRows(browser: Browser, dist: string): Promise<ThreadsResult> {
  const plain: StaticServer = await serveDist(dist);
  const isolated: StaticServer = await serveDist(dist, { headers: ISOLATION });
  const variants: Variant[] = [
    { impl: "cpu-path single-thread build (not isolated)", isolated: false, threads: null, want: 1 },
    { impl: "cpu-path threaded build, 1 thread", isolated: true, threads: 1, want: 1 },
    { impl: "cpu-path threaded build, 2 threads", isolated: true, threads: 2, want: 2 },
  ];
  const rows: BenchRow[] = [];
  try {
    for (const v of variants) {
      const page = await browser.newPage();
      page.setDefaultTimeout(5 * 60_000);
      await page.goto(`${v.isolated ? isolated.url : plain.url}/selftest.html`);
      await page.waitForFunction(() => window.gridCpuProbe !== undefined);
      const start = await page.evaluate((t) => window.gridCpuProbe!.start(t), v.threads);
      if (start.isolated !== v.isolated || start.threads !== v.want || start.threaded !== (v.threads !== null)) {
        throw new Error(`${v.impl}: started as ${JSON.stringify(start)}`);
      }
      v.page = page;
      v.start = start;
    }
    // Warm-up: one of each measurement per variant.
    for (const v of variants) {
      await v.page!.evaluate(async ([b]) => {
        const p = window.gridCpuProbe!;
        await p.train("mnist-mlp", b, 2);
        await p.matmul(512, 512, 512, 1);
      }, [BATCH] as const);
    }
    const best = variants.map(() => CASES.map(() => 0));
    for (let round = 0; round < ROUNDS; round++) {
      for (const [ci, c] of CASES.entries()) {
        for (const [vi, v] of variants.entries()) {
          const value = await v.page!.evaluate(
            async ([mm, steps, batch]) => {
              const p = window.gridCpuProbe!;
              return mm !== null ? p.matmul(mm[0], mm[1], mm[2], mm[3]) : p.train("mnist-mlp", batch, steps);
            },
            [c.mm, TRAIN_STEPS, BATCH] as const,
          );
          best[vi]![ci] = Math.max(best[vi]![ci]!, value);
        }
      }
    }
    for (const [vi, v] of variants.entries()) {
      const note = `${v.start!.adapter}; ${v.start!.why}; best of ${ROUNDS} interleaved rounds`;
      for (const [ci, c] of CASES.entries()) {
        rows.push({ section: "threads", case: c.name, impl: v.impl, value: best[vi]![ci]!, unit: c.unit, ms: null, note });
      }
      rows.push({ section: "threads", case: "start-up", impl: v.impl, value: v.start!.ms, unit: "ms", ms: v.start!.ms, note: v.start!.adapter });
    }
    const ratio = (vi: number, ci: number): number => best[vi]![ci]! / best[0]![ci]!;
    return {
      rows,
      ratios: {
        cpu_threads1_vs_single_train: ratio(1, 0),
        cpu_threads2_vs_single_train: ratio(2, 0),
        cpu_threads1_vs_single_matmul: ratio(1, 1),
        cpu_threads2_vs_single_matmul: ratio(2, 1),
        cpu_threads2_vs_single_mlp_fwd: ratio(2, 2),
      },
    };
  } finally {
    for (const v of variants) await v.page?.close();
    await plain.close();
    await isolated.close();
  }
}
