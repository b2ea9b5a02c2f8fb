/**
 * A page that loses its PeerJS signaling socket keeps its open links and
 * gets back to signaling by itself, with back-off, under the same id and
 * secret; a page that joins afterwards links to it. Without the reconnect the
 * later page's dials to it would never be answered (signaling could not
 * deliver the offers).
 */
import { test, expect, type Page } from "@playwright/test";
import { waitFor } from "../support/coordinator.ts";
import { coordinatorPerTest } from "../support/coordinator-per-test.ts";
import { controlSignaling, readGrid } from "../support/page-faults.ts";

const coordinator = coordinatorPerTest();

test("a page cut from signaling keeps its links, reconnects with back-off, and a later joiner links to it", async ({ browser }) => {
  test.setTimeout(120_000);
  const c = await coordinator.start(["--min-workers", "2", "--target-accuracy", "0.999", "--drop-stragglers", "off"]);
  const open = async (name: string): Promise<Page> => {
    const ctx = await browser.newContext();
    await controlSignaling(ctx);
    const page = await ctx.newPage();
    await page.goto(`${c.url}/?name=${name}&backend=cpu`);
    return page;
  };
  const a = await open("a");
  const b = await open("b");
  await waitFor("a and b linked", async () => (await readGrid(a)).peers === 1 && (await readGrid(b)).peers === 1, 60_000);

  // Cut b from signaling and keep it out for a while: every attempt fails.
  await b.evaluate(() => {
    const s = (window as unknown as { signaling: { blocked: boolean; drop(): boolean } }).signaling;
    s.blocked = true;
    if (!s.drop()) throw new Error("b had no open signaling socket");
  });
  const lostLines = async (): Promise<string[]> => (await readGrid(b)).log.filter((l) => l.startsWith("signaling lost; reconnecting in"));
  await waitFor("two failed reconnects", async () => (await lostLines()).length >= 3, 20_000, 200);
  const delays = (await lostLines()).map((l) => Number(/in ([\d.]+) s/.exec(l)?.[1]));
  // Back-off: 1 s, 2 s, 4 s (±20% jitter).
  expect(delays[0]).toBeGreaterThanOrEqual(0.8);
  expect(delays[0]).toBeLessThanOrEqual(1.2);
  expect(delays[1]).toBeGreaterThanOrEqual(1.6);
  expect(delays[2]).toBeGreaterThanOrEqual(3.2);
  // Meanwhile the open link a–b stayed up.
  expect((await readGrid(a)).peers).toBe(1);
  expect((await readGrid(b)).peers).toBe(1);
  expect((await readGrid(a)).lostPeers).toEqual([]);

  // Signaling reachable again: b gets back by itself.
  const openedBefore = await b.evaluate(() => (window as unknown as { signaling: { opened: number } }).signaling.opened);
  await b.evaluate(() => ((window as unknown as { signaling: { blocked: boolean } }).signaling.blocked = false));
  await waitFor("b back on signaling", async () => (await readGrid(b)).log.some((l) => /^signaling back after \d+ attempt/.test(l)), 20_000, 200);
  expect(await b.evaluate(() => (window as unknown as { signaling: { opened: number } }).signaling.opened)).toBe(openedBefore + 1);

  // A later page dials both (it has the largest worker number): the link to b needs b on signaling.
  const late = await open("late");
  await waitFor("the late page linked to a and b", async () => (await readGrid(late)).peers === 2 && (await readGrid(b)).peers === 2 && (await readGrid(a)).peers === 2, 30_000, 250);
  await waitFor("the late page's snapshot", async () => (await readGrid(late)).log.some((l) => l.startsWith("took a snapshot")), 30_000, 250);
  const s = await c.status();
  expect(s.workers.filter((w) => w.state === "active").map((w) => w.name).sort()).toEqual(["a", "b", "late"]);
  expect((await readGrid(a)).lostPeers).toEqual([]);
  expect((await readGrid(b)).lostPeers).toEqual([]);
});
