/**
 * A volunteer who reloads the tab: the shards come from IndexedDB (no second
 * download) and the page rejoins the job as the same volunteer.
 */
import { test, expect } from "@playwright/test";
import { startCoordinatorProcess, waitFor, type CoordinatorProcess } from "../support/coordinator.ts";

let coord: CoordinatorProcess | null = null;

test.afterEach(async ({}, testInfo) => {
  if (coord && testInfo.status !== testInfo.expectedStatus) console.log(coord.output().split("\n").slice(-30).join("\n"));
  await coord?.stop();
  coord = null;
});

test("a reload uses the cached shards and rejoins as the same volunteer", async ({ browser }) => {
  const c = await startCoordinatorProcess(["--max-clock", "100000", "--target-accuracy", "0.99"]);
  coord = c;
  const page = await (await browser.newContext()).newPage();
  await page.goto(`${c.url}/?name=reloader&backend=cpu`);
  // One volunteer holds all 60 shards; wait until it has downloaded every one.
  const before = await waitFor("every shard downloaded", async () => {
    const s = await c.status();
    const w = s.workers.find((x) => x.name === "reloader");
    return w && w.clock > 5 && s.served.shards >= 60 ? s : null;
  }, 120_000);
  expect(before.served.shards).toBe(60);
  const firstId = before.workers.find((x) => x.name === "reloader")?.id;
  await new Promise((r) => setTimeout(r, 1000)); // let the last cache writes land

  await page.reload();
  const again = await waitFor("the reloaded page to train again", async () => {
    const s = await c.status();
    const w = s.workers.find((x) => x.name === "reloader" && x.id !== firstId && x.state === "active");
    return w && w.clock > w.startClock + 3 ? s : null;
  }, 60_000);
  // Nothing downloaded again: the shards came from IndexedDB.
  expect(again.served.shards).toBe(60);
  const rejoined = again.events.find((e) => e.kind === "rejoined");
  expect(rejoined?.detail ?? "").toContain(firstId ?? "?");
  expect(again.workers.find((w) => w.id === firstId)?.state).toBe("left");
});
