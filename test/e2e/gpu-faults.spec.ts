/**
 * GPU faults through a real volunteer page: the trainer worker of a page held
 * to the WGSL kernels (`?backend=webgpu`) has its WebGPU device destroyed
 * mid-training (`window.gridTest.loseDevice()`, installed by `?test-hooks`),
 * as a driver reset or a GPU watchdog would take it away. The worker must
 * re-acquire a device, keep training from its replica and end with the same
 * digest as its peer. And a real out-of-memory error from the driver (on the
 * self-test page): the WGSL backend's error scopes catch it, the rows per
 * session are halved and the step's result is still right.
 */
import { test, expect, type Page } from "@playwright/test";
import { existsSync } from "node:fs";
import { resolve } from "node:path";
import type { OomReport } from "../../client/selftest.ts";
import { serveDist } from "../support/static-server.ts";
import { waitFor } from "../support/coordinator.ts";
import { coordinatorPerTest } from "../support/coordinator-per-test.ts";
import { readGrid } from "../support/page-faults.ts";
import { digestsAgree } from "../../client/replica.ts";

const coordinator = coordinatorPerTest();

const MAX_CLOCK = 80;

test("a volunteer whose WebGPU device is destroyed mid-training re-acquires it, trains on and ends with its peer's digest", async ({ browser }) => {
  test.setTimeout(90_000);
  const started = Date.now();
  const c = await coordinator.start(["--min-workers", "2", "--max-clock", String(MAX_CLOCK), "--target-accuracy", "0.99", "--drop-stragglers", "off"]);
  const pages: Page[] = [];
  // The page under test on WGSL; its peer on the CPU path (lighter on two shared cores).
  for (const query of ["?name=gpu-lost&backend=webgpu&test-hooks", "?name=peer&backend=cpu"]) {
    const ctx = await browser.newContext();
    const page = await ctx.newPage();
    await page.goto(`${c.url}/${query}`);
    pages.push(page);
  }
  const [gpuPage] = pages as [Page, Page];

  // Mid-training: both active, the WGSL page a few clocks in.
  const before = await waitFor("the WGSL page training", async () => {
    const s = await c.status();
    const w = s.workers.find((x) => x.name === "gpu-lost");
    return s.workers.filter((x) => x.state === "active").length === 2 && w !== undefined && w.clock >= 5 ? w : null;
  }, 45_000, 200);
  expect(before.backend).toBe("webgpu");
  expect(before.kernel).toMatch(/^wgsl-/);

  const destroyed = await gpuPage.evaluate(() => (window as unknown as { gridTest: { loseDevice(): Promise<boolean> } }).gridTest.loseDevice());
  expect(destroyed).toBe(true);
  const lostAt = (await c.status()).workers.find((x) => x.name === "gpu-lost")?.clock ?? 0;
  expect(lostAt).toBeLessThan(MAX_CLOCK - 20);

  const done = await waitFor("the job to finish with both digests", async () => {
    const s = await c.status();
    return s.job.state === "done" && s.workers.filter((w) => w.digest !== null).length === 2 ? s : null;
  }, 60_000, 500);
  const elapsed = (Date.now() - started) / 1000;
  console.log(`device destroyed at clock ${lostAt}; done ${elapsed.toFixed(1)} s after the coordinator started`);

  // The page saw the loss and the re-acquisition (its log, from the worker).
  const log = (await readGrid(gpuPage)).log.filter((l) => l.startsWith("GPU: "));
  console.log(log.join("\n"));
  expect(log.some((l) => /device lost/.test(l))).toBe(true);
  expect(log.some((l) => /device re-acquired \(swiftshader\), recovery 1/.test(l))).toBe(true);

  // It kept training on WebGPU past the loss, to the end, with nothing cut.
  const gpuWorker = done.workers.find((w) => w.name === "gpu-lost");
  const peer = done.workers.find((w) => w.name === "peer");
  expect(gpuWorker?.state).toBe("active");
  expect(gpuWorker?.backend).toBe("webgpu");
  // The job ends when one worker reaches --max-clock; the other may be a clock or two behind it
  // (the SSP gate), and both drain to the same vector clock (the digests below).
  expect(Math.max(gpuWorker?.clock ?? 0, peer?.clock ?? 0)).toBeGreaterThanOrEqual(MAX_CLOCK);
  expect(gpuWorker?.clock ?? 0).toBeGreaterThanOrEqual(lostAt + 20);
  expect(done.events.filter((e) => ["left", "dropped", "cut-lowered"].includes(e.kind))).toEqual([]);

  // Its replica ends equal to its peer's.
  const a = gpuWorker?.digest;
  const b = peer?.digest;
  expect(a).toBeTruthy();
  expect(b).toBeTruthy();
  if (a && b) {
    expect(digestsAgree(a, b)).toBe(true);
    expect(a.l2).toBeGreaterThan(0.5);
  }
});

test("a real out-of-memory error scope halves the rows per session and the step stays right", async ({ page }) => {
  const dist = resolve(process.env["GRID_DIST"] ?? resolve(import.meta.dirname, "../../dist"));
  if (!existsSync(resolve(dist, "selftest.html"))) throw new Error(`${dist}/selftest.html is missing: run \`npx vite build\` first`);
  const server = await serveDist(dist);
  try {
    await page.goto(`${server.url}/selftest.html`);
    await page.waitForFunction(() => typeof window.gridOomTest === "function");
    const r: OomReport = await page.evaluate(() => window.gridOomTest!("mnist-mlp", 64, 16));
    console.log(JSON.stringify(r));
    // SwiftShader: exactly maxBufferSize (1 GiB) is more than the driver will back.
    expect(r.adapter).toBe("swiftshader");
    // 64 rows and then 32 failed with the driver's own out-of-memory error; 16 fit.
    expect(r.errors).toHaveLength(2);
    for (const e of r.errors) expect(e).toMatch(/^OutOfMemoryError: out of GPU memory allocating 1073741824 bytes: .*OUT_OF_DEVICE_MEMORY/);
    expect(r.rowsBefore).toBe(64);
    expect(r.rowsAfter).toBe(16);
    expect(r.error).toBeLessThanOrEqual(1e-4);
    // Nothing escaped the error scopes, and the backend keeps computing right.
    expect(r.uncaptured).toEqual([]);
    expect(r.afterError).toBeLessThanOrEqual(1e-4);
  } finally {
    await server.close();
  }
});
