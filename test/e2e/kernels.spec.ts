/**
 * The WGSL softmax-regression kernels against their CPU references, on the
 * real adapter of the test Chromium (SwiftShader in CI). Serves the built
 * `dist/` itself: run `npx vite build` first.
 */
import { test, expect } from "@playwright/test";
import { existsSync } from "node:fs";
import { request } from "node:http";
import { resolve } from "node:path";
import type { SelfTestCase, SelfTestReport } from "../../client/selftest.ts";
import { serveDist, type StaticServer } from "../support/static-server.ts";

/** The built site; `GRID_DIST` overrides it (e.g. a build of selftest.html alone). */
const DIST = resolve(process.env["GRID_DIST"] ?? resolve(import.meta.dirname, "../../dist"));
const TOLERANCE = 1e-4;

/** Awkward and realistic shapes; SwiftShader is slow, so they stay modest. */
const CASES: readonly SelfTestCase[] = [
  { batch: 1, inDim: 1, outDim: 1 },
  { batch: 2, inDim: 3, outDim: 1 },
  { batch: 1, inDim: 784, outDim: 10 },
  { batch: 7, inDim: 13, outDim: 5 },
  { batch: 7, inDim: 13, outDim: 5, workgroupSize: 1 },
  { batch: 255, inDim: 13, outDim: 3, workgroupSize: 48 },
  { batch: 65, inDim: 31, outDim: 17, workgroupSize: 32, logitScale: 80 },
  { batch: 300, inDim: 5, outDim: 200 },
  { batch: 128, inDim: 784, outDim: 10, lr: 0.5 },
  { batch: 512, inDim: 784, outDim: 10, lr: 0.01 },
];

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

test("every kernel and the full step match the CPU reference", async ({ page }) => {
  const pageErrors: string[] = [];
  page.on("pageerror", (err) => pageErrors.push(err.message));
  await page.goto(`${server.url}/selftest.html`);
  await page.waitForFunction(() => typeof window.gridSelfTest === "function");

  const started = Date.now();
  const report: SelfTestReport = await page.evaluate(async (cases) => {
    const run = window.gridSelfTest;
    if (run === undefined) throw new Error("gridSelfTest is not installed");
    return run(cases);
  }, CASES);
  const elapsed = Date.now() - started;

  expect(report.ok, report.reason).toBe(true);
  expect(report.results).toHaveLength(CASES.length);
  console.log(`adapter: ${JSON.stringify(report.adapter)}; ${CASES.length} cases in ${elapsed} ms`);
  for (const r of report.results) {
    const shape = `B=${r.case.batch} in=${r.case.inDim} out=${r.case.outDim} WG=${r.workgroupSize}`;
    console.log(
      `${shape}: max rel err ${r.maxError.toExponential(2)}, step ${r.stepMs.toFixed(1)} ms, case ${r.ms.toFixed(0)} ms` +
        (r.errors ? ` ${JSON.stringify(r.errors)}` : ` error: ${r.error ?? "?"}`),
    );
  }
  for (const r of report.results) {
    const shape = `B=${r.case.batch} in=${r.case.inDim} out=${r.case.outDim} WG=${r.workgroupSize}`;
    expect(r.error, `${shape} threw`).toBeUndefined();
    expect(r.errors, shape).toBeDefined();
    for (const [kernel, error] of Object.entries(r.errors ?? {})) {
      expect(error, `${shape} ${kernel}`).toBeLessThanOrEqual(TOLERANCE);
    }
  }
  expect(pageErrors).toEqual([]);
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
