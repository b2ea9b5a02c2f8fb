/**
 * A page that loses its PeerJS signaling socket keeps its open links and
 * gets back to signaling by itself, with back-off, under the same id and
 * secret; a page that joins afterwards links to it. Without the reconnect the
 * later page's dials to it would never be answered (signaling could not
 * deliver the offers).
 */
import { test, expect, type Page } from "@playwright/test";
import { startCoordinatorProcess, waitFor, type CoordinatorProcess } from "../support/coordinator.ts";
import { controlSignaling } from "../support/page-faults.ts";

interface Grid {
  workerId: string | null;
  peers: number;
  lostPeers: { id: string }[];
  log: string[];
}

let coord: CoordinatorProcess | null = null;

test.afterEach(async ({}, testInfo) => {
  if (testInfo.status !== testInfo.expectedStatus && coord) console.log(coord.output().split("\n").slice(-30).join("\n"));
  await coord?.stop();
  coord = null;
});

const grid = (p: Page): Promise<Grid> => p.evaluate(() => (window as unknown as { grid: Grid }).grid);

test("a page cut from signaling keeps its links, reconnects with back-off, and a later joiner links to it", async ({ browser }) => {
  test.setTimeout(120_000);
  const c = await startCoordinatorProcess(["--min-workers", "2", "--target-accuracy", "0.999", "--drop-stragglers", "off"]);
  coord = c;
  const open = async (name: string): Promise<Page> => {
    const ctx = await browser.newContext();
    await controlSignaling(ctx);
    const page = await ctx.newPage();
    await page.goto(`${c.url}/?name=${name}&backend=cpu`);
    return page;
  };
  const a = await open("a");
  const b = await open("b");
  await waitFor("a and b linked", async () => (await grid(a)).peers === 1 && (await grid(b)).peers === 1, 60_000);

  // Cut b from signaling and keep it out for a while: every attempt fails.
  await b.evaluate(() => {
    const s = (window as unknown as { signaling: { blocked: boolean; drop(): boolean } }).signaling;
    s.blocked = true;
    if (!s.drop()) throw new Error("b had no open signaling socket");
  });
  const lostLines = async (): Promise<string[]> => (await grid(b)).log.filter((l) => l.startsWith("signaling lost; reconnecting in"));
  await waitFor("two failed reconnects", async () => (await lostLines()).length >= 3, 20_000, 200);
  const delays = (await lostLines()).map((l) => Number(/in ([\d.]+) s/.exec(l)?.[1]));
  // Back-off: 1 s, 2 s, 4 s (±20% jitter).
  expect(delays[0]).toBeGreaterThanOrEqual(0.8);
  expect(delays[0]).toBeLessThanOrEqual(1.2);
  expect(delays[1]).toBeGreaterThanOrEqual(1.6);
  expect(delays[2]).toBeGreaterThanOrEqual(3.2);
  // Meanwhile the open link a–b stayed up.
  expect((await grid(a)).peers).toBe(1);
  expect((await grid(b)).peers).toBe(1);
  expect((await grid(a)).lostPeers).toEqual([]);

  // Signaling reachable again: b gets back by itself.
  const openedBefore = await b.evaluate(() => (window as unknown as { signaling: { opened: number } }).signaling.opened);
  await b.evaluate(() => ((window as unknown as { signaling: { blocked: boolean } }).signaling.blocked = false));
  await waitFor("b back on signaling", async () => (await grid(b)).log.some((l) => /^signaling back after \d+ attempt/.test(l)), 20_000, 200);
  expect(await b.evaluate(() => (window as unknown as { signaling: { opened: number } }).signaling.opened)).toBe(openedBefore + 1);

  // A later page dials both (it has the largest worker number): the link to b needs b on signaling.
  const late = await open("late");
  await waitFor("the late page linked to a and b", async () => (await grid(late)).peers === 2 && (await grid(b)).peers === 2 && (await grid(a)).peers === 2, 30_000, 250);
  await waitFor("the late page's snapshot", async () => (await grid(late)).log.some((l) => l.startsWith("took a snapshot")), 30_000, 250);
  const s = await c.status();
  expect(s.workers.filter((w) => w.state === "active").map((w) => w.name).sort()).toEqual(["a", "b", "late"]);
  expect((await grid(a)).lostPeers).toEqual([]);
  expect((await grid(b)).lostPeers).toEqual([]);
});
