/**
 * The organizer's console in a real Chromium against a real coordinator: the
 * empty state, the live stream and its polling fallback, the token, and every
 * control, each checked through /api/status and the DOM. Two volunteers on
 * SwiftShader train while the controls are exercised; the target is out of
 * reach so the job runs until the console stops it.
 */
import { readFile } from "node:fs/promises";
import { test, expect, type Browser, type Page } from "@playwright/test";
import AxeBuilder from "@axe-core/playwright";
import { startCoordinatorProcess, waitFor, type CoordinatorProcess, type Status } from "../support/coordinator.ts";

let coord: CoordinatorProcess;

test.beforeAll(async () => {
  coord = await startCoordinatorProcess(["--min-workers", "2", "--target-accuracy", "0.999", "--eval-every", "5"]);
});

test.afterEach(async ({}, testInfo) => {
  if (testInfo.status !== testInfo.expectedStatus && coord) {
    console.log(coord.output().split("\n").slice(-30).join("\n"));
  }
});

test.afterAll(async () => {
  await coord?.stop();
});

/** Fails on serious or critical axe violations, listing them. */
async function expectAccessible(page: Page): Promise<void> {
  const results = await new AxeBuilder({ page }).analyze();
  const bad = results.violations.filter((v) => v.impact === "serious" || v.impact === "critical");
  expect(bad.map((v) => `${v.id}: ${v.help} (${v.nodes.map((n) => n.target.join(" ")).join(", ")})`)).toEqual([]);
}

async function openVolunteer(browser: Browser, name: string): Promise<Page> {
  const page = await (await browser.newContext()).newPage();
  await page.goto(`${coord.url}/?name=${name}`);
  return page;
}

function clocks(s: Status): Record<string, number> {
  return Object.fromEntries(s.workers.filter((w) => w.state === "active" || w.state === "straggler").map((w) => [w.id, w.clock]));
}

test("empty state: volunteer link and QR code, live stream, accessible, controls refused without the token", async ({ page }) => {
  await page.goto(`${coord.url}/console`);
  await expect(page.locator("#fact-transport")).toHaveAttribute("data-transport", "stream");
  await expect(page.locator("#empty-state")).toBeVisible();
  await expect(page.locator("#volunteer-link")).toHaveAttribute("href", `${coord.url}/`);
  await expect(page.locator("#volunteer-qr svg path")).toHaveCount(1);
  await expectAccessible(page);

  // The API refuses a control without the token, and with a wrong one.
  const bare = await fetch(`${coord.url}/api/control`, { method: "POST", headers: { "Content-Type": "application/json" }, body: '{"action":"pause"}' });
  expect(bare.status).toBe(401);

  // The page asks for the token before sending; a wrong token is refused and asked for again.
  await page.locator("#btn-pause").click();
  await expect(page.locator("#token-form")).toBeVisible();
  await expect(page.locator("#token-input")).toBeFocused();
  await page.locator("#token-input").fill("not-the-token");
  await page.locator("#token-form button[type=submit]").click();
  await expect(page.locator("#action-result")).toContainText("token was rejected");
  await expect(page.locator("#token-message")).toContainText("401");
  expect((await coord.status()).job.state).toBe("waiting");
});

test("the console falls back to polling when the stream is unavailable", async ({ page }) => {
  await page.route("**/api/stream", (route) => route.abort());
  await page.goto(`${coord.url}/console`);
  await expect(page.locator("#fact-transport")).toHaveAttribute("data-transport", "polling", { timeout: 10_000 });
  await expect(page.locator("#job-name")).toHaveText("mnist-softmax");
});

test("every console control acts on the running job", async ({ browser, page }) => {
  page.on("dialog", (d) => void d.accept());
  await page.goto(`${coord.url}/console`);
  await page.locator("#token-input").fill(coord.token);
  await page.locator("#token-form button[type=submit]").click();
  await expect(page.locator("#token-status")).toBeVisible();

  await openVolunteer(browser, "alpha");
  await openVolunteer(browser, "beta");
  await waitFor("two workers past clock 3 and a test evaluation", async () => {
    const s = await coord.status();
    return s.workers.filter((w) => w.clock > 3).length === 2 && s.metrics.test.series.length > 0;
  }, 60_000, 250).catch(async (err: unknown) => {
    const s = await coord.status();
    const seen = s.workers.map((w) => `${w.id} ${w.state} clock ${w.clock} peers ${w.peers} ${w.backend}/${w.kernel}`).join("; ");
    throw new Error(`${err instanceof Error ? err.message : String(err)} (training did not progress: ${seen})`);
  });
  await expect(page.locator("#workers tbody tr")).toHaveCount(2);
  await expect(page.locator("#fact-transport")).toHaveAttribute("data-transport", "stream");
  await expect(page.locator("#staleness-summary")).toContainText("updates");

  // Sorting: a numeric column sorts descending first, then flips.
  const clockHeader = page.locator("#workers thead th", { hasText: "Clock" });
  await clockHeader.locator("button").click();
  await expect(clockHeader).toHaveAttribute("aria-sort", "descending");
  await clockHeader.locator("button").click();
  await expect(clockHeader).toHaveAttribute("aria-sort", "ascending");

  // Pause stops every clock; Resume starts them again.
  await page.locator("#btn-pause").click();
  await expect(page.locator("#job-state")).toHaveText("paused", { timeout: 15_000 });
  expect((await coord.status()).job.state).toBe("paused");
  // Steps in flight may still land: the clocks must come to rest and stay there.
  let held: Record<string, number> = {};
  await waitFor("the clocks to stop", async () => {
    held = clocks(await coord.status());
    await page.waitForTimeout(1500);
    return JSON.stringify(clocks(await coord.status())) === JSON.stringify(held);
  }, 20_000, 0);
  const heldMax = Math.max(...Object.values(held));
  await page.locator("#btn-resume").click();
  await expect(page.locator("#job-state")).toHaveText("running", { timeout: 15_000 });
  await waitFor("clocks to move again", async () => Math.max(...Object.values(clocks(await coord.status()))) > heldMax, 30_000, 250);

  // Consistency and staleness: in the status, the header and the event log.
  await page.locator("#mode-select").selectOption("ssp");
  await page.locator("#staleness-input").fill("1");
  await page.locator("#consistency-form button[type=submit]").click();
  await waitFor("staleness 1", async () => (await coord.status()).consistency.staleness === 1, 10_000, 100);
  await expect(page.locator("#fact-consistency")).toHaveText("SSP, staleness 1", { timeout: 15_000 });
  await expect(page.locator("#events tbody")).toContainText("ssp s=1", { timeout: 15_000 });
  await page.locator("#mode-select").selectOption("bsp");
  await page.locator("#consistency-form button[type=submit]").click();
  await waitFor("BSP", async () => (await coord.status()).consistency.mode === "bsp", 10_000, 100);
  await expect(page.locator("#fact-consistency")).toHaveText("BSP", { timeout: 15_000 });

  // Charts against wall time.
  await page.locator("#x-axis input[value=time]").check();
  await expect(page.locator("#loss-chart .u-over")).toHaveCount(1);
  await expect(page.locator("#clocks-chart .u-over")).toHaveCount(1);

  // Downloads: the model (binary) and the run report (the page's history).
  const [model] = await Promise.all([page.waitForEvent("download"), page.locator("#download-model").click()]);
  const modelBytes = await readFile(await model.path());
  expect(modelBytes.byteLength).toBe(8 + 7850 * 4);
  const [report] = await Promise.all([page.waitForEvent("download"), page.locator("#download-report").click()]);
  const parsed = JSON.parse(await readFile(await report.path(), "utf8")) as { kind: string; samples: unknown[]; final: { job: { name: string } } };
  expect(parsed.kind).toBe("grid-run-report");
  expect(parsed.samples.length).toBeGreaterThan(3);
  expect(parsed.final.job.name).toBe("mnist-softmax");

  await expectAccessible(page);

  // Drop a worker: it leaves the view, its row stands out, the log says why.
  await page.getByRole("button", { name: /^Drop w2/ }).click();
  await waitFor("w2 dropped", async () => (await coord.status()).workers.find((w) => w.id === "w2")?.state === "dropped", 10_000, 100);
  await expect(page.locator("#workers tbody tr.worker-dropped")).toHaveCount(1, { timeout: 15_000 });
  await expect(page.locator("#events tbody")).toContainText("dropped by the organizer", { timeout: 15_000 });

  // Stop ends the job for everyone.
  await page.locator("#btn-stop").click();
  await waitFor("the job to finish", async () => {
    const s = await coord.status();
    return s.events.some((e) => e.kind === "finishing" && /organizer/.test(e.detail ?? ""));
  }, 15_000, 100);
  await expect(page.locator("#events tbody")).toContainText("stopped by the organizer", { timeout: 15_000 });
});
