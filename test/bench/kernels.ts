/**
 * `npm run bench -- kernels`: builds dist/ (unless GRID_BENCH_NO_BUILD=1),
 * opens bench.html in one headless Chromium (the test flags: WebGPU on the
 * machine's adapter, SwiftShader in CI) and runs `window.gridBench()` there:
 * every implementation side by side in the same browser. See client/bench.ts
 * for what each row measures.
 *
 * Ratios (all "ours / theirs", > 1 is better for us):
 * - matmul_vs_naive: best WGSL strategy / naive WGSL at 512³
 * - matmul_vs_tfjs_webgpu: best WGSL strategy / TF.js WebGPU matMul at 512³
 * - cpu_matmul_vs_tfjs_wasm: our CPU path / TF.js WASM matMul at 512³
 * - train_vs_best_tfjs: mnist-mlp examples/s as the worker runs it (chosen backend) / fastest TF.js backend
 * - matmul_share_of_peak: best WGSL at 512³ / the FMA-bound peak
 * - cpu_threads{1,2}_vs_single_{train,matmul}, cpu_threads2_vs_single_mlp_fwd:
 *   the CPU path on TF.js's threaded build (1 or 2 threads, cross-origin
 *   isolated page) / its single-thread build, same run (kernels-threads.ts)
 *
 * `BENCH_KERNELS_THREADS=only` runs the thread section alone (and writes
 * only its rows), `=off` skips it.
 */
import { chromium } from "@playwright/test";
import { execFileSync } from "node:child_process";
import { resolve } from "node:path";
import type { BenchRow } from "../../client/bench.ts";
import { CHROMIUM_ARGS, chromiumExecutable } from "../support/chromium.ts";
import { serveDist } from "../support/static-server.ts";
import { threadRows } from "./kernels-threads.ts";

const ROOT = resolve(import.meta.dirname, "..", "..");

function value(rows: readonly BenchRow[], section: string, kase: string | null, impl: (s: string) => boolean): number {
  const vals = rows
    .filter((r) => r.section === section && (kase === null || r.case === kase) && impl(r.impl) && r.value !== null)
    .map((r) => r.value as number);
  return vals.length > 0 ? Math.max(...vals) : Number.NaN;
}

export async function run(): Promise<{ ratios: Record<string, number>; table: BenchRow[]; adapter: string; command: string }> {
  if (process.env["GRID_BENCH_NO_BUILD"] !== "1") {
    execFileSync(resolve(ROOT, "node_modules", ".bin", "vite"), ["build"], { cwd: ROOT, stdio: "ignore" });
  }
  const threads = process.env["BENCH_KERNELS_THREADS"] ?? "on";
  if (!["on", "off", "only"].includes(threads)) throw new Error(`BENCH_KERNELS_THREADS must be on, off or only, got "${threads}"`);
  const server = await serveDist(resolve(ROOT, "dist"));
  const executablePath = chromiumExecutable();
  const browser = await chromium.launch({ headless: true, args: [...CHROMIUM_ARGS], ...(executablePath ? { executablePath } : {}) });
  try {
    if (threads === "only") {
      const t = await threadRows(browser, resolve(ROOT, "dist"));
      return { ratios: t.ratios, table: t.rows, adapter: "cpu", command: "BENCH_KERNELS_THREADS=only npm run bench -- kernels" };
    }
    const page = await browser.newPage();
    page.setDefaultTimeout(15 * 60_000);
    await page.goto(`${server.url}/bench.html`);
    await page.waitForFunction(() => typeof window.gridBench === "function");
    const { adapter, rows } = await page.evaluate(() => window.gridBench!());
    const c512 = "512x512x512";
    const bestWgsl = value(rows, "matmul", c512, (i) => i === "wgsl-vec4" || i === "wgsl-tiled");
    const ratios = {
      matmul_vs_naive: bestWgsl / value(rows, "matmul", c512, (i) => i === "wgsl-naive"),
      matmul_vs_tfjs_webgpu: bestWgsl / value(rows, "matmul", c512, (i) => i === "tfjs-webgpu"),
      cpu_matmul_vs_tfjs_wasm: value(rows, "matmul", c512, (i) => i.startsWith("cpu-path")) / value(rows, "matmul", c512, (i) => i === "tfjs-wasm"),
      train_vs_best_tfjs: value(rows, "train", null, (i) => i.startsWith("grid worker")) / value(rows, "train", null, (i) => i.startsWith("tfjs-")),
      matmul_share_of_peak: bestWgsl / value(rows, "peak", null, () => true),
    };
    await page.close();
    if (threads === "on") {
      const t = await threadRows(browser, resolve(ROOT, "dist"));
      rows.push(...t.rows);
      Object.assign(ratios, t.ratios);
    }
    return { ratios, table: rows, adapter, command: "npm run bench -- kernels" };
  } finally {
    await browser.close();
    await server.close();
  }
}
