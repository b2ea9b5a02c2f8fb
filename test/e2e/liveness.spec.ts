/**
 * The data plane past the full mesh, and peer liveness, in real Chromium:
 * four volunteers with `--mesh-max 2` form the overlay (updates forwarded down
 * each author's tree, client/peer/overlay.ts). One page's peer connections
 * are closed under it: the links come back by themselves. Then that page's
 * peer traffic is cut for a while (nothing it sends on its DataChannels leaves
 * it; the transports stay up, so only an application heartbeat can tell; its
 * coordinator socket stays up, so the coordinator does not take it out of the
 * view first): the pages linked to it report it lost within 5 s, on the page
 * and to the coordinator. When the traffic flows again the links are dialled
 * again, and all four reach the target with equal digests.
 */
import { test, expect, type Page } from "@playwright/test";
import { startCoordinatorProcess, waitFor, type CoordinatorProcess, type Status } from "../support/coordinator.ts";
import { recordPeerConnections } from "../support/peer-connections.ts";
import { digestsAgree } from "../../client/replica.ts";

interface Grid {
  workerId: string | null;
  topology: string;
  links: number;
  forwarded: number;
  peers: number;
  lostPeers: { id: string; at: number; why: string }[];
}

let coord: CoordinatorProcess;

test.beforeAll(async () => {
  // Straggler drops off: the cut page falls a few clocks behind while its links are down, and a
  // drop (10 s back-off) could outlast the job; links, not stragglers, are under test here.
  coord = await startCoordinatorProcess(["--min-workers", "4", "--mesh-max", "2", "--target-accuracy", "0.9", "--eval-interval", "500", "--drop-stragglers", "off"]);
});

test.afterEach(async ({}, testInfo) => {
  if (testInfo.status !== testInfo.expectedStatus && coord) {
    console.log(coord.output().split("\n").slice(-40).join("\n"));
  }
});

test.afterAll(async () => {
  await coord?.stop();
});

const grid = (p: Page): Promise<Grid> => p.evaluate(() => (window as unknown as { grid: Grid }).grid);

test("overlay of four; one page dropped, then cut off: lost within 5 s, links back, target reached with equal digests", async ({ browser }) => {
  const pages: Page[] = [];
  for (let i = 0; i < 4; i++) {
    const ctx = await browser.newContext();
    await recordPeerConnections(ctx);
    const page = await ctx.newPage();
    await page.goto(`${coord.url}/?name=v${i}&backend=cpu`);
    pages.push(page);
  }
  await waitFor("four workers stepping", async () => {
    const s = await coord.status();
    return s.workers.filter((w) => w.state === "active" && w.clock > 5).length === 4 ? s : null;
  }, 90_000);
  const before = await Promise.all(pages.map(grid));
  for (const g of before) expect(g.topology).toBe("overlay");
  // Every page has its links open (3 peers: with N = 4 the ring links ±1, ±2 reach all).
  await waitFor("all links open", async () => ((await Promise.all(pages.map(grid))).every((g) => g.peers === g.links) ? true : null), 20_000);

  const victim = before[3]?.workerId as string;
  const victimPage = pages[3] as Page;
  const linked = pages.slice(0, 3);

  // A transient drop: the page's peer connections close; the links are dialed again.
  const beforeDrop = (await Promise.all(linked.map(grid))).map((g) => g.lostPeers.length);
  await victimPage.evaluate(() => {
    for (const pc of (window as unknown as { peerConnections: RTCPeerConnection[] }).peerConnections) pc.close();
  });
  const reconnected = await waitFor("the links to come back", async () => {
    const g = await grid(victimPage);
    return g.lostPeers.length >= 3 && g.peers === g.links ? g : null;
  }, 30_000, 200);
  expect(reconnected.workerId).toBe(victim);
  const s1 = await coord.status();
  expect(s1.workers.find((w) => w.id === victim)?.state).toBe("active");

  // The linked pages may learn that the old connections closed after the victim has dialled them
  // again (seen: "connection closed" 64 ms after the cut below): wait until each has seen it, and
  // every link is open again, so that what follows the cut is the cut's doing.
  await waitFor("the linked pages to see the drop and links back", async () => {
    const gs = await Promise.all(pages.map(grid));
    const seen = gs.slice(0, 3).every((g, i) => g.lostPeers.slice(beforeDrop[i]).some((l) => l.id === victim));
    return seen && gs.every((g) => g.peers === g.links) ? true : null;
  }, 30_000, 200);

  // Cut its peer traffic.
  const earlier = (await Promise.all(linked.map(grid))).map((g) => g.lostPeers.length);
  // Times are the pages' own Date.now() (one machine, one clock), not when this test polled.
  const cutAt = await victimPage.evaluate(() => {
    (window as unknown as { networkCut: boolean }).networkCut = true;
    return Date.now();
  });
  const detected = await waitFor("the others to lose the cut page", async () => {
    const gs = await Promise.all(linked.map(grid));
    // Only losses after the cut: the links closed in the transient drop above can be reported by
    // the linked pages after the victim has already dialled them again (seen: 24 ms "after the cut").
    const found = gs.map((g, i) => g.lostPeers.slice(earlier[i]).find((l) => l.id === victim && l.at >= cutAt));
    return found.every((l) => l !== undefined) ? Math.max(...found.map((l) => (l?.at ?? Infinity) - cutAt)) : null;
  }, 15_000, 100);
  test.info().annotations.push({ type: "detected", description: `${detected} ms after the cut` });
  console.log(`liveness: the three linked pages found the cut page silent ${detected} ms after the cut`);
  expect(detected).toBeLessThanOrEqual(5000);
  // Each of the three links was found silent, by the linked page or by the cut page itself (whichever
  // side's timer fired first closes the link, and the other side then sees it closed).
  const linkedGrids = await Promise.all(linked.map(grid));
  const victimLost = (await grid(victimPage)).lostPeers.filter((l) => l.at >= cutAt);
  const silentLinks = linkedGrids.filter((g, i) => {
    const seenHere = g.lostPeers.slice(earlier[i]).some((l) => l.id === victim && l.at >= cutAt && /silent/.test(l.why));
    const seenThere = victimLost.some((l) => l.id === g.workerId && /silent/.test(l.why));
    return seenHere || seenThere;
  });
  console.log(`liveness: reasons ${JSON.stringify(linkedGrids.map((g, i) => g.lostPeers.slice(earlier[i]).filter((l) => l.id === victim && l.at >= cutAt).map((l) => l.why)))}; the cut page's: ${JSON.stringify(victimLost.map((l) => `${l.id}: ${l.why}`))}`);
  expect(silentLinks).toHaveLength(3);

  // Traffic flows again: the links come back and the job goes on with all four.
  await victimPage.evaluate(() => ((window as unknown as { networkCut: boolean }).networkCut = false));
  await waitFor("the links to come back after the cut", async () => ((await Promise.all(pages.map(grid))).every((g) => g.peers === g.links) ? true : null), 30_000, 200);

  const done: Status = await waitFor("the job to finish", async () => {
    const s = await coord.status();
    return s.job.state === "done" ? s : null;
  }, 3 * 60_000, 1000);
  expect(done.events.some((e) => e.kind === "peer-lost" && (e.detail ?? "").includes(`${victim}: silent`))).toBe(true);
  const best = Math.max(...done.metrics.test.series.map(([, v]) => v));
  expect(best).toBeGreaterThanOrEqual(0.9);
  const active = done.workers.filter((w) => w.state === "active");
  expect(active).toHaveLength(4);
  const digests = active.map((w) => w.digest);
  for (const d of digests) expect(d).not.toBeNull();
  for (const d of digests.slice(1)) expect(digestsAgree(digests[0]!, d!)).toBe(true);
  // N = 4 over mesh-max 2: an author sends to distances 1 and 2, distance 1 forwards to 3.
  const after = await Promise.all(pages.map(grid));
  for (const g of after) expect(g.forwarded).toBeGreaterThan(0);
});
