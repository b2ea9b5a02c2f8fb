/**
 * Faults of the volunteer's browser: storage that refuses writes (the
 * origin's quota set near zero through the DevTools protocol, so IndexedDB
 * writes in the training worker fail with the browser's own quota error) and a
 * hidden tab whose main-thread timers are throttled to nothing (the page's
 * setInterval callbacks skipped, its setTimeout callbacks held back, through
 * an init script; worker timers untouched, as in a hidden tab).
 */
import { test, expect, type Page } from "@playwright/test";
import { waitFor } from "../support/coordinator.ts";
import { coordinatorPerTest } from "../support/coordinator-per-test.ts";
import { controlPageTimers, readGrid, setPageTimersFrozen } from "../support/page-faults.ts";

const coordinator = coordinatorPerTest();

test("a browser whose storage refuses writes downloads its shards, trains anyway and says so", async ({ browser }) => {
  test.setTimeout(90_000);
  const c = await coordinator.start(["--min-workers", "1", "--max-clock", "40"]);
  const ctx = await browser.newContext();
  const page = await ctx.newPage();
  const cdp = await ctx.newCDPSession(page);
  // The origin may store at most 1 KiB: a shard (tens of KB) cannot be cached.
  await cdp.send("Storage.overrideQuotaForOrigin", { origin: c.url, quotaSize: 1024 });
  await page.goto(`${c.url}/?name=full-disk&backend=cpu`);

  const done = await waitFor("the job to finish with the page's digest", async () => {
    const s = await c.status();
    return s.job.state === "done" && s.workers[0]?.digest ? s : null;
  }, 75_000, 500);
  expect(done.workers).toHaveLength(1);
  expect(done.workers[0]?.clock).toBeGreaterThanOrEqual(40);
  // The shards it trained on came over HTTP (it starts on the first ones while the rest load).
  expect(done.served.shards).toBeGreaterThan(0);
  const g = await readGrid(page);
  const storageLines = g.log.filter((l) => /^(could not cache shard|shard cache unavailable)/.test(l));
  console.log(`storage refusals seen by the page: ${storageLines.length}, e.g. ${storageLines[0] ?? "none"}`);
  expect(storageLines.length).toBeGreaterThan(0);
  expect(storageLines.some((l) => /QuotaExceededError/.test(l))).toBe(true);
  // It says so on the page.
  await expect(page.locator("#notices")).toContainText("would not keep the training data");
  expect(g.log.filter((l) => /shard loading failed/.test(l))).toEqual([]);
});

test("a tab whose page timers are throttled to nothing stays in the view: heartbeats come from a worker", async ({ browser }) => {
  test.setTimeout(90_000);
  // Three needed to start: with two the job waits, so nothing but heartbeats keeps them in the view.
  const c = await coordinator.start(["--min-workers", "3"]);
  const pages: Page[] = [];
  for (const name of ["hidden", "visible"]) {
    const ctx = await browser.newContext();
    await controlPageTimers(ctx);
    const page = await ctx.newPage();
    await page.goto(`${c.url}/?name=${name}&backend=cpu`);
    pages.push(page);
  }
  const [hidden, visible] = pages as [Page, Page];
  await waitFor("both joined and linked", async () => {
    const s = await c.status();
    return s.workers.filter((w) => w.state === "active").length === 2 && (await readGrid(hidden)).peers === 1 && (await readGrid(visible)).peers === 1;
  }, 60_000, 250);
  const hiddenId = (await readGrid(hidden)).workerId;
  expect(hiddenId).toBeTruthy();

  // A probe on the page's own timers shows they really stop.
  await hidden.evaluate(() => {
    const w = window as unknown as { probeTicks: number };
    w.probeTicks = 0;
    setInterval(() => w.probeTicks++, 100);
  });
  await waitFor("the probe ticking", async () => (await hidden.evaluate(() => (window as unknown as { probeTicks: number }).probeTicks)) > 3, 5000, 100);
  const probeTicks = (): Promise<number> => hidden.evaluate(() => (window as unknown as { probeTicks: number }).probeTicks);
  await setPageTimersFrozen(hidden, true);
  const ticksAtFreeze = await probeTicks();
  // The coordinator takes a worker silent for 5 s out of the view, a peer finds a link silent after 3 s: wait well past both.
  await new Promise((r) => setTimeout(r, 9000));
  const ticksFrozen = (await probeTicks()) - ticksAtFreeze;
  const s = await c.status();
  await setPageTimersFrozen(hidden, false);

  expect(ticksFrozen).toBeLessThanOrEqual(1); // the page's own timers really stopped (one may have been in flight)
  expect(s.workers.find((w) => w.id === hiddenId)?.state).toBe("active");
  expect(s.events.filter((e) => e.worker === hiddenId && e.kind === "left")).toEqual([]);
  expect((await readGrid(visible)).lostPeers).toEqual([]);
  expect((await readGrid(hidden)).lostPeers).toEqual([]);
  expect((await readGrid(visible)).peers).toBe(1);
});
