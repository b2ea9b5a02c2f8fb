/**
 * The CPU path with WASM threads (TF.js's threaded build) where the page is
 * cross-origin isolated, in the production (minified) build:
 *
 * - served with COOP/COEP, a worker running the CPU path as the trainer does
 *   starts the threaded build with 2 threads when asked (`?threads=2`), and
 *   its gradients agree with the single-thread build's of a page served
 *   without the headers (which stays single-threaded whatever it asks);
 * - a threaded start that hangs (its .wasm never arrives) falls back to the
 *   single-thread build within its bound and says why, in a probe and on a
 *   volunteer page (a notice and its log, then it trains);
 * - with `--cross-origin-isolation on` the coordinator's volunteer pages are
 *   isolated, report 2 WASM threads to the coordinator and train together
 *   (control and PeerJS WebSockets, WebRTC data channels, IndexedDB all under
 *   COEP require-corp), and its console (stream, QR code, charts) works;
 *   without the flag a page asking for 2 threads runs on one, as before.
 *
 * Serves the built `dist/` (GRID_DIST): run `npx vite build` first.
 */
import { test, expect, type Page } from "@playwright/test";
import { existsSync } from "node:fs";
import { resolve } from "node:path";
import type { ProbeStart } from "../../client/cpu-probe-worker.ts";
import { serveDist, type StaticServer } from "../support/static-server.ts";
import { startCoordinatorProcess, waitFor, type CoordinatorProcess } from "../support/coordinator.ts";

const DIST = resolve(process.env["GRID_DIST"] ?? resolve(import.meta.dirname, "../../dist"));
const ISOLATION = { "Cross-Origin-Opener-Policy": "same-origin", "Cross-Origin-Embedder-Policy": "require-corp" };
const TOLERANCE = 1e-4;

let plain: StaticServer;
let isolated: StaticServer;
let hanging: StaticServer;

test.beforeAll(async () => {
  if (!existsSync(resolve(DIST, "selftest.html"))) throw new Error(`${DIST}/selftest.html is missing: run \`npx vite build\` first`);
  plain = await serveDist(DIST);
  isolated = await serveDist(DIST, { headers: ISOLATION });
  // Isolated, but the threaded build's .wasm is never answered: its start hangs.
  hanging = await serveDist(DIST, { headers: ISOLATION, stall: /tfjs-backend-wasm-threaded-simd[^/]*\.wasm$/ });
});

test.afterAll(async () => {
  await Promise.all([plain?.close(), isolated?.close(), hanging?.close()]);
});

interface ProbeRun {
  readonly pageIsolated: boolean;
  readonly start: ProbeStart;
  /** Mean gradients at the seed-1 parameters on 64 synthetic rows, by job. */
  readonly grads: Record<string, number[]>;
}

/** Opens the self-test page of `base`, starts a CPU probe worker asking for `threads`, and takes each job's gradient. */
async function probe(page: Page, base: string, threads: number | null, boundMs?: number): Promise<ProbeRun> {
  const errors: string[] = [];
  page.on("pageerror", (e) => errors.push(e.message));
  await page.goto(`${base}/selftest.html`);
  await page.waitForFunction(() => window.gridCpuProbe !== undefined);
  const run = await page.evaluate(
    async ([t, b, jobs]) => {
      const p = window.gridCpuProbe!;
      const start = await p.start(t, b ?? undefined);
      const grads: Record<string, number[]> = {};
      for (const j of jobs) grads[j] = Array.from(await p.gradient(j, 64));
      p.stop();
      return { pageIsolated: crossOriginIsolated, start, grads };
    },
    [threads, boundMs ?? null, ["mnist-mlp", "mnist-softmax"]] as const,
  );
  expect(errors).toEqual([]);
  return run;
}

function relErr(got: readonly number[], ref: readonly number[]): number {
  expect(got.length).toBe(ref.length);
  let diff = 0;
  let scale = 0;
  for (let i = 0; i < ref.length; i++) {
    diff = Math.max(diff, Math.abs(got[i]! - ref[i]!));
    scale = Math.max(scale, Math.abs(ref[i]!));
  }
  return diff / Math.max(scale, 1e-6);
}

test("isolated: the CPU path runs on 2 WASM threads and its gradients match the single-thread build's", async ({ browser }) => {
  const ctx = await browser.newContext();
  const single = await probe(await ctx.newPage(), plain.url, 2);
  const threaded = await probe(await ctx.newPage(), isolated.url, 2);
  console.log(JSON.stringify({ single: single.start, threaded: threaded.start }));
  await ctx.close();

  // Without the headers: not isolated, the single-thread build whatever the page asks for, as before.
  expect(single.pageIsolated).toBe(false);
  expect(single.start).toMatchObject({ isolated: false, threaded: false, threads: 1, adapter: "cpu, 1 wasm thread", note: null });
  // With them: isolated, the threaded build, 2 threads as asked (beyond TF.js's own cap of cores / 2 here).
  expect(threaded.pageIsolated).toBe(true);
  expect(threaded.start).toMatchObject({ isolated: true, threaded: true, threads: 2, adapter: "cpu, 2 wasm threads", note: null });
  for (const job of Object.keys(single.grads)) {
    const g = single.grads[job]!;
    expect(g.some((v) => v !== 0), `${job}: a gradient of zeros proves nothing`).toBe(true);
    const err = relErr(threaded.grads[job]!, g);
    console.log(`${job}: ${g.length} gradient values, threaded vs single-thread rel err ${err.toExponential(2)}`);
    expect(err, job).toBeLessThanOrEqual(TOLERANCE);
  }
});

test("isolated on 2 cores without ?threads: the rule gives one thread and the single-thread build", async ({ page }) => {
  const run = await probe(page, isolated.url, null);
  expect(run.pageIsolated).toBe(true);
  expect(run.start.cores).toBe(2);
  expect(run.start).toMatchObject({ threaded: false, threads: 1, why: "2 cores: one thread", note: null });
});

test("a threaded start that hangs falls back to the single-thread build within its bound and says why", async ({ browser }) => {
  const ctx = await browser.newContext();
  const t0 = Date.now();
  const fell = await probe(await ctx.newPage(), hanging.url, 2, 3000);
  const ms = Date.now() - t0;
  const single = await probe(await ctx.newPage(), plain.url, null);
  await ctx.close();
  console.log(JSON.stringify({ ...fell.start, pageMs: ms }));
  expect(fell.pageIsolated).toBe(true);
  expect(fell.start).toMatchObject({ threaded: false, threads: 1, adapter: "cpu, 1 wasm thread" });
  expect(fell.start.note).toMatch(/^WASM threads did not start \(did not start within 3000 ms\); the CPU path runs on one thread$/);
  expect(fell.start.ms).toBeGreaterThanOrEqual(3000);
  expect(fell.start.ms).toBeLessThan(10_000);
  // And it computes what the single-thread build computes.
  expect(relErr(fell.grads["mnist-mlp"]!, single.grads["mnist-mlp"]!)).toBeLessThanOrEqual(TOLERANCE);
});

// ---------------------------------------------------------------- the coordinator's pages

async function volunteer(page: Page, base: string, name: string): Promise<void> {
  await page.goto(`${base}/?name=${name}&backend=cpu&threads=2`);
}

function isolationProblems(page: Page): string[] {
  const seen: string[] = [];
  page.on("console", (m) => {
    if (/Cross-Origin|COEP|CORP|require-corp|blocked/i.test(m.text())) seen.push(m.text());
  });
  page.on("requestfailed", (r) => seen.push(`${r.url()}: ${r.failure()?.errorText ?? "failed"}`));
  page.on("pageerror", (e) => seen.push(e.message));
  return seen;
}

test.describe("the coordinator's pages", () => {
  let coord: CoordinatorProcess | null = null;

  test.afterEach(async ({}, testInfo) => {
    if (testInfo.status !== testInfo.expectedStatus && coord) console.log(coord.output().split("\n").slice(-30).join("\n"));
    await coord?.stop();
    coord = null;
  });

  test("--cross-origin-isolation on: pages are isolated, report 2 WASM threads and train together; the console works", async ({ browser }) => {
    coord = await startCoordinatorProcess(["--cross-origin-isolation", "on", "--min-workers", "2", "--target-accuracy", "0.999"]);
    const c = coord;
    expect(c.output()).toContain("cross-origin isolated");
    const res = await fetch(`${c.url}/`);
    expect(res.headers.get("cross-origin-embedder-policy")).toBe("require-corp");
    // The console before anyone joins: its empty state with the volunteer link's QR code.
    const consolePage = await (await browser.newContext()).newPage();
    const consoleProblems = isolationProblems(consolePage);
    await consolePage.goto(`${c.url}/console`);
    expect(await consolePage.evaluate(() => crossOriginIsolated)).toBe(true);
    await expect(consolePage.locator("#volunteer-qr svg path")).toHaveCount(1);
    await expect(consolePage.locator("#fact-transport")).toHaveAttribute("data-transport", "stream");

    const pages = await Promise.all([0, 1].map(async () => (await browser.newContext()).newPage()));
    const problems = pages.map(isolationProblems);
    await Promise.all(pages.map((p, i) => volunteer(p, c.url, `iso${i}`)));
    await waitFor("both workers past clock 10", async () => {
      const s = await c.status();
      return s.workers.filter((w) => w.state === "active" && w.clock > 10).length === 2;
    }, 90_000, 250).catch(async (err: unknown) => {
      const s = await c.status();
      throw new Error(`${err instanceof Error ? err.message : String(err)} (${s.workers.map((w) => `${w.id} ${w.state} clock ${w.clock} peers ${w.peers} ${w.adapter}`).join("; ")})`);
    });
    const s = await c.status();
    for (const w of s.workers) {
      expect(w.backend).toBe("cpu");
      expect(w.kernel).toBe("wasm-xnnpack");
      expect(w.adapter).toBe("cpu, 2 wasm threads");
      // Updates crossed the WebRTC data channel: each page applied the other's.
      expect(w.peers).toBe(1);
      expect(w.bytesIn).toBeGreaterThan(0);
    }
    for (const p of pages) {
      expect(await p.evaluate(() => crossOriginIsolated)).toBe(true);
      await expect(p.locator("#adapter")).toHaveText("cpu · wasm-xnnpack · cpu, 2 wasm threads");
      await expect(p.locator("#notices")).not.toContainText("WASM threads did not start");
    }

    // The console's live stream saw them join and train (the loss chart is drawn).
    await expect(consolePage.locator("#workers tbody tr")).toHaveCount(2);
    await expect(consolePage.locator("#loss-chart canvas").first()).toBeVisible({ timeout: 15_000 });
    expect([...problems.flat(), ...consoleProblems]).toEqual([]);
  });

  test("a volunteer page whose threaded start hangs says so and trains on one thread", async ({ browser }) => {
    coord = await startCoordinatorProcess(["--cross-origin-isolation", "on", "--min-workers", "1", "--target-accuracy", "0.999"]);
    const c = coord;
    const ctx = await browser.newContext();
    // The trainer worker's fetch of the threaded build's binary is never answered.
    let held = 0;
    await ctx.route(/tfjs-backend-wasm-threaded-simd[^/]*\.wasm$/, () => {
      held++;
    });
    const page = await ctx.newPage();
    const t0 = Date.now();
    await volunteer(page, c.url, "hung");
    await expect(page.locator("#notices")).toContainText("WASM threads did not start (did not start within 10000 ms); the CPU path runs on one thread", { timeout: 30_000 });
    const ms = Date.now() - t0;
    await waitFor("the worker past clock 5", async () => (await c.status()).workers.some((w) => w.clock > 5), 60_000, 250);
    expect(held).toBeGreaterThan(0);
    expect(ms).toBeGreaterThanOrEqual(10_000);
    expect((await c.status()).workers[0]?.adapter).toBe("cpu, 1 wasm thread");
    await expect(page.locator("#adapter")).toHaveText("cpu · wasm-xnnpack · cpu, 1 wasm thread");
    await expect(page.locator("#log")).toContainText("WASM threads did not start");
    await ctx.close();
  });

  test("without the flag a page asking for 2 threads runs single-threaded, as before", async ({ page }) => {
    coord = await startCoordinatorProcess(["--min-workers", "1", "--target-accuracy", "0.999"]);
    const c = coord;
    const res = await fetch(`${c.url}/`);
    expect(res.headers.get("cross-origin-embedder-policy")).toBeNull();
    await volunteer(page, c.url, "plain");
    await waitFor("the worker past clock 5", async () => (await c.status()).workers.some((w) => w.clock > 5), 60_000, 250);
    expect(await page.evaluate(() => crossOriginIsolated)).toBe(false);
    expect((await c.status()).workers[0]?.adapter).toBe("cpu, 1 wasm thread");
    await expect(page.locator("#adapter")).toHaveText("cpu · wasm-xnnpack · cpu, 1 wasm thread");
  });
});
