/**
 * The kernel library on the real adapter of the test Chromium (SwiftShader in
 * CI): every WGSL kernel and the CPU path (TF.js WASM) against the TypeScript
 * references on awkward shapes; backend selection by measurement (a candidate,
 * cached, overridable); training through `device.destroy()`. Serves the built
 * `dist/` itself: run `npx vite build` first.
 */
import { test, expect } from "@playwright/test";
import { existsSync } from "node:fs";
import { request } from "node:http";
import { resolve } from "node:path";
import type { SelfTestReport, BackendTestReport, TrainReport } from "../../client/selftest.ts";
import { serveDist, type StaticServer } from "../support/static-server.ts";

/** The built site; `GRID_DIST` overrides it. */
const DIST = resolve(process.env["GRID_DIST"] ?? resolve(import.meta.dirname, "../../dist"));
const TOLERANCE = 1e-4;

let server: StaticServer;

test.beforeAll(async () => {
  if (!existsSync(resolve(DIST, "selftest.html"))) {
    throw new Error(`${DIST}/selftest.html is missing: run \`npx vite build\` before the e2e tests`);
  }
  server = await serveDist(DIST);
});

test.afterAll(async () => {
  await server.close();
});

test("the page has a WebGPU adapter", async ({ page }) => {
  await page.goto(`${server.url}/selftest.html`);
  const adapter = await page.evaluate(async () => {
    if (!("gpu" in navigator)) return null;
    const a = await navigator.gpu.requestAdapter();
    return a === null ? null : { vendor: a.info.vendor, architecture: a.info.architecture };
  });
  expect(adapter, "navigator.gpu.requestAdapter() returned no adapter").not.toBeNull();
});

test("every WGSL kernel and the CPU path match the TypeScript references", async ({ page }) => {
  const pageErrors: string[] = [];
  page.on("pageerror", (err) => pageErrors.push(err.message));
  await page.goto(`${server.url}/selftest.html`);
  await page.waitForFunction(() => typeof window.gridSelfTest === "function");
  const started = Date.now();
  const report: SelfTestReport = await page.evaluate(async () => {
    const run = window.gridSelfTest;
    if (run === undefined) throw new Error("gridSelfTest is not installed");
    return run({});
  });
  expect(report.ok, report.reason).toBe(true);
  let worst = 0;
  for (const r of report.results) worst = Math.max(worst, Number.isNaN(r.error) ? Infinity : r.error);
  console.log(`adapter ${report.adapter?.name}: ${report.results.length} checks in ${Date.now() - started} ms, worst rel err ${worst.toExponential(2)}`);
  const backends = new Set(report.results.map((r) => r.backend));
  expect([...backends].sort()).toEqual(["wasm-xnnpack", "wgsl-naive", "wgsl-tiled", "wgsl-vec4"]);
  for (const r of report.results) {
    const what = `${r.backend} ${r.kernel} ${r.shape}`;
    expect(r.failure, what).toBeUndefined();
    expect(r.error, what).toBeLessThanOrEqual(TOLERANCE);
  }
  // Every job's whole gradient was compared on every backend.
  for (const job of ["mnist-softmax", "mnist-mlp", "linreg"]) {
    expect(report.results.filter((r) => r.kernel === `job ${job}`)).toHaveLength(4);
  }
  // The optimizer kernels, alone on odd shapes and as a job's step applies them.
  for (const kernel of ["momentum", "adam step 1", "adam step 7"]) {
    const shapes = report.results.filter((r) => r.kernel === kernel).map((r) => `${r.backend} ${r.shape}`);
    expect(shapes.filter((s) => s.endsWith(" 1×1") || s.endsWith(" 255×257") || s.endsWith(" 1×203530"))).toHaveLength(12);
  }
  for (const kernel of ["optimizer momentum", "optimizer adam"]) {
    expect(report.results.filter((r) => r.kernel === kernel)).toHaveLength(4);
  }
  expect(pageErrors).toEqual([]);
});

test("the backend is chosen by measurement among the candidates, cached, and forced by ?backend=", async ({ page }) => {
  await page.goto(`${server.url}/selftest.html`);
  await page.waitForFunction(() => typeof window.gridBackendTest === "function");
  const report: BackendTestReport = await page.evaluate(() => window.gridBackendTest!("mnist-mlp", 64));
  console.log(JSON.stringify(report));
  const [first, second, cpu, webgpu] = report.runs;
  const candidates = ["wgsl-vec4", "wgsl-tiled", "wasm-xnnpack"];
  expect(Object.keys(first!.measuredMs).sort()).toEqual([...candidates].sort());
  expect(candidates).toContain(first!.kernel);
  // The winner is the fastest measured candidate.
  const fastest = Object.entries(first!.measuredMs).sort((a, b) => a[1] - b[1])[0]![0];
  expect(first!.kernel).toBe(fastest);
  expect(first!.cached).toBe(false);
  expect(report.stored?.kernel).toBe(first!.kernel);
  // Second call: from IndexedDB, same kernel, no timing.
  expect(second!.cached).toBe(true);
  expect(second!.kernel).toBe(first!.kernel);
  // ?backend=cpu and ?backend=webgpu override the measured choice.
  expect(cpu!.backend).toBe("cpu");
  expect(cpu!.kernel).toBe("wasm-xnnpack");
  expect(webgpu!.backend).toBe("webgpu");
  expect(["wgsl-vec4", "wgsl-tiled"]).toContain(webgpu!.kernel);
  expect(first!.ms).toBeLessThan(8000);
});

test("training continues on a re-acquired device after device.destroy()", async ({ page }) => {
  await page.goto(`${server.url}/selftest.html`);
  await page.waitForFunction(() => typeof window.gridTrainLocal === "function");
  const report: TrainReport = await page.evaluate(() => window.gridTrainLocal!("mnist-softmax", 12, 64, 5, "vec4"));
  console.log(JSON.stringify({ ...report, losses: report.losses.map((l) => +l.toFixed(4)) }));
  expect(report.recoveries).toBe(1);
  expect(report.events.some((e) => /device lost/.test(e))).toBe(true);
  expect(report.events.some((e) => /re-acquired/.test(e))).toBe(true);
  expect(report.losses).toHaveLength(12);
  for (const l of report.losses) expect(Number.isFinite(l)).toBe(true);
  // Training went on from the same parameters: the loss keeps falling across the loss.
  expect(report.losses[11]!).toBeLessThan(report.losses[0]!);
});

test("the static server refuses paths outside dist", async () => {
  const status = (path: string): Promise<number> =>
    new Promise((resolveStatus, rejectStatus) => {
      const url = new URL(server.url);
      const req = request({ host: url.hostname, port: url.port, path, method: "GET" }, (res) => {
        res.resume();
        resolveStatus(res.statusCode ?? 0);
      });
      req.on("error", rejectStatus);
      req.end();
    });
  expect(await status("/selftest.html")).toBe(200);
  expect(await status("/../package.json")).toBe(404);
  expect(await status("/%2e%2e/package.json")).toBe(404);
  expect(await status("/..%2fpackage.json")).toBe(404);
  expect(await status("/no-such-file.js")).toBe(404);
});
