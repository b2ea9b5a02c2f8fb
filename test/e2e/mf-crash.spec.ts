/**
 * Job mf across a coordinator crash, in browsers: two volunteer pages train,
 * the coordinator is killed with SIGKILL mid-run and restarted on the same
 * port and state directory; it resumes at the newest barrier on disk, the
 * pages dial it again by themselves, join as new workers, take their blocks
 * from its checkpoints and finish at 1.05 × the noise floor.
 */
import { test, expect, type Page } from "@playwright/test";
import { startCoordinatorProcess, waitFor, type CoordinatorProcess } from "../support/coordinator.ts";

interface MfStatus {
  job: { state: string };
  mf: { subEpoch: number; testRmse: number | null; floor: number };
  workers: { id: string; name: string; state: string }[];
  events: { kind: string; worker?: string; detail?: string }[];
  durable: { incarnation: number; resumedFrom: { clock: number } | null; checkpoint: { clock: number } | null };
}

const FLAGS = ["--job", "mf", "--min-workers", "2", "--seed", "4", "--mf-blocks", "2", "--mf-users", "1000", "--mf-items", "400", "--mf-rank", "4", "--mf-density", "0.3", "--mf-epochs", "40"];
let coord: CoordinatorProcess | null = null;

test.afterAll(async () => {
  await coord?.stop();
});

test("a coordinator killed mid-run resumes job mf from its checkpoints and the pages finish with it", async ({ browser }) => {
  const first = await startCoordinatorProcess(FLAGS);
  coord = first;
  const status = async (c: CoordinatorProcess): Promise<MfStatus> => (await c.status()) as unknown as MfStatus;
  const pages: Page[] = [];
  for (let i = 0; i < 2; i++) {
    const page = await (await browser.newContext()).newPage();
    await page.goto(`${first.url}/?name=mfc-${i}`);
    pages.push(page);
  }
  let acked = 0;
  await waitFor("three barriers", async () => {
    const s = await status(first);
    acked = Math.max(acked, s.durable.checkpoint?.clock ?? 0);
    return s.mf.subEpoch >= 3 && acked >= 2;
  }, 60_000, 50);
  const exited = new Promise((r) => first.child.once("exit", r));
  first.child.kill("SIGKILL");
  await exited;

  const second = await startCoordinatorProcess(FLAGS, 60_000, { stateDir: first.stateDir, port: Number(new URL(first.url).port) });
  coord = second;
  const resumed = await status(second);
  expect(resumed.durable.incarnation).toBe(2);
  expect(resumed.durable.resumedFrom?.clock ?? 0).toBeGreaterThanOrEqual(acked);
  const from = resumed.durable.resumedFrom?.clock ?? 0;

  const done = await waitFor("the job to finish", async () => {
    const s = await status(second);
    return s.job.state === "done" ? s : null;
  }, 120_000, 250);
  expect(done.mf.testRmse).not.toBeNull();
  expect(done.mf.testRmse!).toBeLessThanOrEqual(1.05 * done.mf.floor);
  expect(done.mf.subEpoch).toBeGreaterThan(from);
  // Both pages came back by themselves, as new workers (numbers go on after the first run's).
  const back = done.workers.filter((w) => w.name.startsWith("mfc-"));
  expect(back.map((w) => w.name).sort()).toEqual(["mfc-0", "mfc-1"]);
  for (const w of back) expect(Number(w.id.slice(1))).toBeGreaterThan(2);
  for (const page of pages) await expect(page.locator("body")).toContainText("done", { timeout: 10_000 });
});
