/**
 * docs/jobs.md's example job through the whole grid: a coordinator running
 * `linreg`, two volunteer pages, one forced onto the CPU path with
 * `?backend=cpu`, the other on whatever its start-up measurement chose.
 */
import { test, expect, type Page } from "@playwright/test";
import { startCoordinatorProcess, waitFor, type CoordinatorProcess } from "../support/coordinator.ts";

let coord: CoordinatorProcess;

test.beforeAll(async () => {
  coord = await startCoordinatorProcess(["--job", "linreg", "--min-workers", "2", "--target-accuracy", "0.75", "--eval-every", "10"]);
});

test.afterAll(async () => {
  await coord?.stop();
});

test("linreg trains to R² ≥ 0.75 with a measured backend and a ?backend=cpu volunteer", async ({ browser }) => {
  const pages: Page[] = [];
  for (const query of ["?name=forced-cpu&backend=cpu", "?name=measured"]) {
    const ctx = await browser.newContext();
    const page = await ctx.newPage();
    await page.goto(`${coord.url}/${query}`);
    pages.push(page);
  }
  const done = await waitFor("linreg to finish", async () => {
    const s = await coord.status();
    return s.job.state === "done" ? s : null;
  }, 3 * 60_000, 1000);
  if (done.job.state !== "done") console.log(coord.output());
  const best = Math.max(...done.metrics.test.series.map(([, v]) => v));
  expect(best).toBeGreaterThanOrEqual(0.75);
  const byName = new Map(done.workers.map((w) => [w.name, w]));
  const forced = byName.get("forced-cpu");
  const measured = byName.get("measured");
  expect(forced?.backend).toBe("cpu");
  expect(forced?.kernel).toBe("wasm-xnnpack");
  expect(["wgsl-vec4", "wgsl-tiled", "wasm-xnnpack"]).toContain(measured?.kernel);
  expect(measured?.backend).toBe(measured?.kernel === "wasm-xnnpack" ? "cpu" : "webgpu");
  for (const w of [forced, measured]) expect(w?.clock ?? 0).toBeGreaterThan(5);
});
