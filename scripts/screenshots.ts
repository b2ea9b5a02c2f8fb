/**
 * Refreshes the README's screenshots: docs/console.png (the organizer's
 * console during a run) and docs/volunteer.png (a volunteer's page while it
 * trains). Builds the pages, starts a real coordinator, opens three volunteers
 * in headless Chromium (one slowed down, so the console has a laggard to
 * show), lets them train for a while and captures both pages.
 *
 *   npm run screenshots            # about 40 s
 *   npm run screenshots -- --seconds 30
 */
import { spawnSync } from "node:child_process";
import { mkdirSync } from "node:fs";
import { resolve } from "node:path";
import { chromium, type Browser, type Page } from "@playwright/test";
import { CHROMIUM_ARGS, chromiumExecutable } from "../test/support/chromium.ts";
import { startCoordinatorProcess, waitFor, type CoordinatorProcess } from "../test/support/coordinator.ts";

const ROOT = resolve(import.meta.dirname, "..");
const DOCS = resolve(ROOT, "docs");

function secondsFlag(): number {
  const i = process.argv.indexOf("--seconds");
  const value = i >= 0 ? Number(process.argv[i + 1]) : 20;
  if (!Number.isFinite(value) || value <= 0 || value > 600) {
    console.error("--seconds takes a number of seconds between 0 and 600");
    process.exit(2);
  }
  return value;
}

async function main(): Promise<void> {
  const seconds = secondsFlag();
  const build = spawnSync("npx", ["vite", "build", "--logLevel", "warn"], { cwd: ROOT, stdio: "inherit" });
  if (build.status !== 0) throw new Error("vite build failed");
  mkdirSync(DOCS, { recursive: true });

  let coord: CoordinatorProcess | null = null;
  let browser: Browser | null = null;
  try {
    // A target the run will not reach while we watch, so the job is still running.
    coord = await startCoordinatorProcess(["--min-workers", "3", "--target-accuracy", "0.99", "--eval-every", "5"]);
    const executablePath = chromiumExecutable();
    browser = await chromium.launch({ headless: true, args: [...CHROMIUM_ARGS], ...(executablePath ? { executablePath } : {}) });

    const volunteers: Page[] = [];
    const names = ["alice-laptop", "lab-desktop", "old-netbook"];
    for (const [i, name] of names.entries()) {
      const ctx = await browser.newContext({ viewport: { width: 960, height: 1100 } });
      const page = await ctx.newPage();
      await page.goto(`${coord.url}/?name=${name}${i === 2 ? "&slowdown=3" : ""}`);
      volunteers.push(page);
    }
    const consoleCtx = await browser.newContext({ viewport: { width: 1440, height: 1000 } });
    const consolePage = await consoleCtx.newPage();
    await consolePage.goto(`${coord.url}/console?token=${coord.token}`);

    const c = coord;
    await waitFor("three workers training", async () => (await c.status()).workers.filter((w) => w.clock > 0).length === 3, 90_000);
    await new Promise((r) => setTimeout(r, seconds * 1000));

    await consolePage.screenshot({ path: resolve(DOCS, "console.png"), fullPage: true });
    const first = volunteers[0];
    if (first) await first.screenshot({ path: resolve(DOCS, "volunteer.png"), fullPage: true });
    console.log(`wrote ${resolve(DOCS, "console.png")} and ${resolve(DOCS, "volunteer.png")}`);
  } finally {
    await browser?.close();
    await coord?.stop();
  }
}

main().catch((err: unknown) => {
  console.error(err instanceof Error ? err.message : String(err));
  process.exit(1);
});
