/**
 * The walking skeleton end to end: one coordinator, three volunteer pages in
 * separate browser contexts of a real Chromium (WebGPU on SwiftShader), peers
 * over WebRTC DataChannels, softmax regression on real MNIST.
 */
import { test, expect, type Page } from "@playwright/test";
import { startCoordinatorProcess, waitFor, type CoordinatorProcess, type Status } from "../support/coordinator.ts";
import { digestsAgree } from "../../client/replica.ts";

let coord: CoordinatorProcess;

test.beforeAll(async () => {
  coord = await startCoordinatorProcess(["--min-workers", "3", "--target-accuracy", "0.9"]);
});

test.afterEach(async ({}, testInfo) => {
  if (testInfo.status !== testInfo.expectedStatus && coord) {
    await testInfo.attach("coordinator output", { body: coord.output(), contentType: "text/plain" });
    console.log(coord.output().split("\n").slice(-40).join("\n"));
    console.log(JSON.stringify(await coord.status().catch(() => null)).slice(0, 3000));
  }
});

test.afterAll(async () => {
  await coord?.stop();
});

test("three volunteers train mnist-softmax to 0.90 with updates over DataChannels and equal replicas", async ({ browser }) => {
  const started = Date.now();
  const pages: Page[] = [];
  for (let i = 0; i < 3; i++) {
    const ctx = await browser.newContext();
    const page = await ctx.newPage();
    // Held to the WGSL kernels (the worker would otherwise pick what it
    // measures fastest; on SwiftShader that is the WASM CPU path).
    await page.goto(`${coord.url}/?name=volunteer-${i}&backend=webgpu`);
    pages.push(page);
  }
  // The console shows the job while it runs.
  const consoleCtx = await browser.newContext();
  const consolePage = await consoleCtx.newPage();
  await consolePage.goto(`${coord.url}/console?token=${coord.token}`);

  const running = await waitFor("three workers training", async () => {
    const s = await coord.status();
    return s.workers.filter((w) => w.clock > 0).length === 3 ? s : null;
  }, 60_000);
  expect(running.job.state).toBe("running");
  await expect(consolePage.locator("#workers tbody tr")).toHaveCount(3, { timeout: 10_000 });
  await expect(consolePage.locator("#job-name")).toHaveText("mnist-softmax");

  const done: Status = await waitFor("the job to finish", async () => {
    const s = await coord.status();
    return s.job.state === "done" ? s : null;
  }, 4 * 60_000, 1000);
  const elapsed = (Date.now() - started) / 1000;
  test.info().annotations.push({ type: "elapsed", description: `${elapsed.toFixed(1)} s to done` });

  // Test accuracy on the 10k test images reached the target.
  const best = Math.max(...done.metrics.test.series.map(([, v]) => v));
  expect(best).toBeGreaterThanOrEqual(0.9);
  expect(done.events.some((e) => e.kind === "finishing" && /target/.test(e.detail ?? ""))).toBe(true);

  // Three active workers whose clocks advanced, with each one's backend reported.
  const active = done.workers.filter((w) => w.state === "active");
  expect(active).toHaveLength(3);
  for (const w of active) {
    expect(w.clock).toBeGreaterThan(10);
    expect(w.backend).toBe("webgpu");
    expect(w.kernel).toMatch(/^wgsl-/);
    expect(w.adapter).toBe("swiftshader");
  }

  // Updates crossed the DataChannels: every worker sent and received bytes, a
  // full update (7850 floats) per clock to each of its two peers. The counts
  // come with the last clock report, which may precede the last few updates.
  const update = 7850 * 4;
  for (const w of active) {
    expect(w.bytesOut).toBeGreaterThan(2 * update * (w.clock - 5));
    expect(w.bytesIn).toBeGreaterThan(2 * update * (w.clock - 8));
  }
  // The pages count the same bytes the coordinator reports.
  for (const page of pages) {
    const g = await page.evaluate(() => (window as unknown as { grid: { bytesIn: number; bytesOut: number; peers: number } }).grid);
    expect(g.bytesIn).toBeGreaterThan(0);
    expect(g.bytesOut).toBeGreaterThan(0);
    expect(g.peers).toBe(2);
  }

  // All three end digests present and equal within a relative tolerance.
  const digests = active.map((w) => w.digest);
  for (const d of digests) expect(d).not.toBeNull();
  const [d0, d1, d2] = digests as NonNullable<(typeof digests)[number]>[];
  expect(d0 && d1 && d2).toBeTruthy();
  if (d0 && d1 && d2) {
    expect(digestsAgree(d0, d1)).toBe(true);
    expect(digestsAgree(d0, d2)).toBe(true);
    expect(d0.l2).toBeGreaterThan(1);
  }

  // The volunteer page says it is done, and the model can be downloaded.
  await expect(pages[0]!.locator("#state")).toContainText("done");
  const model = await fetch(`${coord.url}/api/model`);
  expect(model.status).toBe(200);
  expect((await model.arrayBuffer()).byteLength).toBe(8 + 7850 * 4);
  expect(elapsed).toBeLessThan(300);
});
