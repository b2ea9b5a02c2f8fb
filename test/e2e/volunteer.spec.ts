/**
 * The volunteer page in a real Chromium against a real coordinator: it says
 * what it does, Pause stops its clock at once, the throttle slows its steps,
 * it reports what it did while hidden, Stop leaves the job, and without
 * WebGPU it explains why and offers the CPU path. One volunteer trains alone
 * (--min-workers 1), towards a target it will not reach.
 */
import { test, expect, type Page } from "@playwright/test";
import AxeBuilder from "@axe-core/playwright";
import { startCoordinatorProcess, waitFor, type CoordinatorProcess } from "../support/coordinator.ts";

let coord: CoordinatorProcess;

test.beforeAll(async () => {
  coord = await startCoordinatorProcess(["--min-workers", "1", "--target-accuracy", "0.999"]);
});

test.afterEach(async ({}, testInfo) => {
  if (testInfo.status !== testInfo.expectedStatus && coord) {
    console.log(coord.output().split("\n").slice(-30).join("\n"));
  }
});

test.afterAll(async () => {
  await coord?.stop();
});

async function pageClock(page: Page): Promise<number> {
  return page.evaluate(() => (window as unknown as { grid: { clock: number } }).grid.clock);
}

/** Clocks per second over `ms` of wall time, as the page counts them. */
async function stepRate(page: Page, ms: number): Promise<number> {
  const c0 = await pageClock(page);
  const t0 = Date.now();
  await page.waitForTimeout(ms);
  return ((await pageClock(page)) - c0) / ((Date.now() - t0) / 1000);
}

/** Makes the page believe it went to the background for `ms`, then came back. */
async function hideFor(page: Page, ms: number): Promise<void> {
  const set = (state: "hidden" | "visible"): Promise<void> =>
    page.evaluate((s) => {
      Object.defineProperty(document, "visibilityState", { configurable: true, get: () => s });
      document.dispatchEvent(new Event("visibilitychange"));
    }, state);
  await set("hidden");
  await page.waitForTimeout(ms);
  await set("visible");
}

/** Pause must act at once: the clock holds (after the step in flight) and Resume moves it on. */
async function expectPauseHolds(page: Page): Promise<void> {
  await page.locator("#pause").click();
  await expect(page.locator("#pause")).toHaveAttribute("aria-pressed", "true");
  await page.waitForTimeout(500);
  const held = await pageClock(page);
  await page.waitForTimeout(1500);
  expect(await pageClock(page)).toBe(held);
  await page.locator("#pause").click();
  await expect(page.locator("#pause")).toHaveText("Pause");
  await waitFor("the clock to move again", async () => (await pageClock(page)) > held + 2, 20_000, 100);
}

// WebGPU forced: the default may pick the CPU (WASM) path on SwiftShader, whose
// pause is covered (and pinned as a known bug) by the next test.
test("says what it does, pauses at once, throttles, works while hidden, stops", async ({ page }) => {
  await page.goto(`${coord.url}/?name=solo&backend=webgpu`);
  // Before it has joined, it already says what it will do.
  await expect(page.locator("#about-compute")).toContainText(/WebGPU|CPU/);
  await expect(page.locator("#about-download")).toContainText("once");
  await waitFor("the page to train", async () => (await pageClock(page)) > 5, 60_000, 200);
  await expect(page.locator("#about-job")).toContainText("mnist-softmax");
  await expect(page.locator("#about-download")).toContainText("MB of training data");
  // WebGPU, or the CPU (WASM) path when it measured faster on this adapter.
  await expect(page.locator("#adapter")).toHaveText(/^(webgpu|cpu) · /);
  await expect(page.locator("#about-compute")).toContainText(/through WebGPU|processor \(CPU\)/);
  await expect(page.locator("#grid-clock")).toContainText("across 1 active worker");
  await expect(page.locator("#work")).toContainText("FLOP");
  await expect(page.locator("#epoch-text")).toHaveText(/^\d+%$/);

  const axe = await new AxeBuilder({ page }).analyze();
  const bad = axe.violations.filter((v) => v.impact === "serious" || v.impact === "critical");
  expect(bad.map((v) => `${v.id}: ${v.help}`)).toEqual([]);

  await expectPauseHolds(page);

  // The throttle slows the steps down.
  const full = await stepRate(page, 2500);
  await page.locator("#throttle").fill("20");
  await expect(page.locator("#throttle-value")).toHaveText("20%");
  await page.waitForTimeout(500);
  const throttled = await stepRate(page, 2500);
  test.info().annotations.push({ type: "steps/s", description: `100%: ${full.toFixed(1)}, 20%: ${throttled.toFixed(1)}` });
  expect(full).toBeGreaterThan(0);
  expect(throttled).toBeLessThan(full * 0.6);

  // Hidden, it keeps working within the throttle and says so when it comes back.
  await hideFor(page, 1000);
  await expect(page.locator("#notices")).toContainText("kept working within your limit of 20%");

  // Stop leaves the job at once.
  await page.locator("#stop").click();
  await expect(page.locator("#state")).toContainText("stopped");
  // (Pausing may have taken the page out of the view and Resume rejoined it under a new id: check them all.)
  let mine: { id: string; state: string }[] = [];
  await waitFor("the worker to leave", async () => {
    mine = (await coord.status()).workers.filter((w) => w.name === "solo");
    return mine.some((w) => w.state === "left") && mine.every((w) => w.state === "left" || w.state === "dropped");
  }, 15_000, 100).catch((err: unknown) => {
    throw new Error(`${err instanceof Error ? err.message : String(err)}; workers named solo: ${JSON.stringify(mine)}`);
  });
});

// Regression: on the WASM path a step never awaited anything, so comlink's
// setPaused was not delivered until the loop idled; the loop now yields a
// macrotask after every step.
test("Pause acts at once on the CPU (WASM) path too", async ({ page }) => {
  await page.goto(`${coord.url}/?name=solo-cpu&backend=cpu`);
  await waitFor("the page to train", async () => (await pageClock(page)) > 5, 60_000, 200);
  await expectPauseHolds(page);
  await page.locator("#stop").click();
});

test("without WebGPU it explains why and offers the CPU path", async ({ browser }) => {
  const ctx = await browser.newContext();
  await ctx.addInitScript(() => {
    delete (Navigator.prototype as unknown as { gpu?: unknown }).gpu;
  });
  const page = await ctx.newPage();
  await page.goto(`${coord.url}/?name=no-gpu`);
  await expect(page.locator("#notices")).toContainText("does not offer WebGPU");
  const link = page.getByRole("link", { name: "Start on the CPU without trying the GPU" });
  await expect(link).toHaveAttribute("href", /backend=cpu/);
  await link.click();
  await expect(page).toHaveURL(/backend=cpu/);
  await expect(page.locator("#adapter")).toContainText("cpu", { timeout: 30_000 });
  await expect(page.locator("#about-compute")).toContainText("processor (CPU)");
  await expect(page.locator("#notices")).not.toContainText("does not offer WebGPU");
  await ctx.close();
});
