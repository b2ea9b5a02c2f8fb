/**
 * Jobs submitted with `POST /api/jobs` survive a coordinator restart on the
 * same `--state-dir` (coordinator/submitted.ts): the restarted grid lists
 * them again with their entry and flags, each resumes from its checkpoint,
 * a cancelled one is forgotten, `--fresh` sets them aside, and a damaged
 * list is reported, not fatal. Node only: the real coordinator in-process on
 * a tiny data set, a job's workers driven through its run.
 */
import { afterEach, describe, expect, it } from "vitest";
import { existsSync, mkdtempSync, readFileSync, readdirSync, writeFileSync } from "node:fs";
import { tmpdir } from "node:os";
import { join } from "node:path";
import { parseCoordinatorArgs } from "../../coordinator/cli.ts";
import { startCoordinator } from "../../coordinator/main.ts";
import { baseArgs, readJobsFile, type JobGrid } from "../../coordinator/jobs.ts";
import { SUBMITTED_FILE } from "../../coordinator/submitted.ts";
import { decodeModelUpload, encodeModelUpload, type ServerMessage } from "../../coordinator/protocol.ts";
import type { RunningServer } from "../../coordinator/server.ts";
import { mnistSoftmax } from "../../client/jobs/mnist-softmax.ts";
import { tinyDataset } from "../support/tiny-run.ts";

const TOKEN = "submitted-test-token-1";
const P = mnistSoftmax.parameters;

let open: RunningServer[] = [];
afterEach(async () => {
  for (const s of open) await s.close();
  open = [];
});

/** Start the coordinator as `npm start -- --jobs FILE --state-dir DIR [extra]` would, on a tiny data set. */
async function start(dir: string, extra: string[] = []): Promise<{ grid: JobGrid; url: string; lines: string[] }> {
  const jobsFile = join(dir, "..", "jobs.json");
  if (!existsSync(jobsFile)) writeFileSync(jobsFile, JSON.stringify([{ id: "a", job: "mnist-softmax", weight: 1 }]));
  const argv = ["--port", "0", "--host", "127.0.0.1", "--no-build", "--token", TOKEN, "--state-dir", dir, "--jobs", jobsFile, ...extra];
  const cfg = parseCoordinatorArgs(argv);
  const base = baseArgs(argv);
  const lines: string[] = [];
  const { server, grid } = await startCoordinator(cfg, (l) => lines.push(l), tinyDataset(), { specs: readJobsFile(jobsFile, base), base });
  open.push(server);
  if (!grid) throw new Error("no grid");
  return { grid, url: server.url, lines };
}

async function post(url: string, path: string, body: unknown): Promise<{ status: number; body: Record<string, unknown> }> {
  const r = await fetch(url + path, { method: "POST", headers: { "Content-Type": "application/json", Authorization: `Bearer ${TOKEN}` }, body: JSON.stringify(body) });
  return { status: r.status, body: (await r.json()) as Record<string, unknown> };
}

const ENTRY = {
  id: "late",
  job: "mnist-softmax",
  weight: 3,
  minWorkers: 1,
  maxWorkers: 5,
  priority: 2,
  flags: ["--target-accuracy", "0.99", "--staleness", "1", "--checkpoint-interval", "0", "--eval-interval", "0", "--eval-every", "5"],
};

/** Two workers of the job's run step to clock 12, uploading their replica at clocks 5 and 10 (checkpoints). */
async function train(grid: JobGrid, id: string): Promise<void> {
  const run = grid.job(id)?.run;
  if (!run) throw new Error(`no job ${id}`);
  const ids: string[] = [];
  for (const name of ["x", "y"]) {
    const inbox: ServerMessage[] = [];
    const r = run.join({ type: "join", name, backend: "cpu", kernel: "k", adapter: "a" }, (m) => inbox.push(m));
    if (!r.ok) throw new Error(r.reason);
    ids.push(r.id);
  }
  for (let c = 1; c <= 12; c++) {
    for (const w of ids) run.onMessage(w, { type: "clock", clock: c, minApplied: c, loss: 1, stepMs: 5, batch: 8, examples: c * 8, bytesIn: 0, bytesOut: 0, peers: 1 });
    if (c % 5 === 0) {
      expect(run.onBinary(ids[0] as string, new Uint8Array(encodeModelUpload(c, new Float32Array(P).fill(c / 100))))).toBeNull();
      await new Promise((r) => setTimeout(r, 50)); // the checkpoint follows the evaluation
    }
  }
}

type Durable = { durable: { incarnation: number; resumedFrom: { clock: number } | null; checkpoint: { clock: number } | null } };

describe("jobs submitted with POST /api/jobs across a restart", () => {
  it("are listed again with their entry and flags and resume from their checkpoint", async () => {
    const dir = join(mkdtempSync(join(tmpdir(), "grid-submitted-")), "state");
    const first = await start(dir);
    const ok = await post(first.url, "/api/jobs", ENTRY);
    expect(ok.status).toBe(201);
    await train(first.grid, "late");
    const before = first.grid.job("late")?.run.status() as Durable;
    expect(before.durable.checkpoint?.clock).toBe(10);
    // Written whole, with the entry's defaults filled in.
    expect(JSON.parse(readFileSync(join(dir, SUBMITTED_FILE), "utf8"))).toEqual({ v: 1, jobs: [ENTRY] });
    await open.shift()?.close();

    const second = await start(dir);
    expect(second.grid.all().map((j) => j.id)).toEqual(["a", "late"]);
    expect(second.lines.join("\n")).toMatch(/submitted job late \(mnist-softmax, weight 3\) restored/);
    const list = (await (await fetch(`${second.url}/api/jobs`)).json()) as { jobs: Record<string, unknown>[] };
    const late = list.jobs.find((j) => j["id"] === "late");
    expect(late).toMatchObject({ weight: 3, minWorkers: 1, maxWorkers: 5, priority: 2, cancelled: false, target: { accuracy: 0.99 }, consistency: { staleness: 1 } });
    expect(late).toMatchObject({ durable: { incarnation: 2, resumedFrom: { clock: 10 } } });
    // Its workers start at the checkpoint.
    const inbox: ServerMessage[] = [];
    const r = second.grid.job("late")?.run.join({ type: "join", name: "z", backend: "cpu", kernel: "k", adapter: "a" }, (m) => inbox.push(m));
    expect(r?.ok).toBe(true);
    expect(inbox.find((m) => m.type === "welcome")).toMatchObject({ startClock: 10, base: { clock: 10 } });
    // ...from the job's own checkpoint, which its pages load from the job's route (not the default job's).
    const ck = await fetch(`${second.url}/api/jobs/late/checkpoint`);
    expect(ck.status).toBe(200);
    const model = decodeModelUpload(new Uint8Array(await ck.arrayBuffer()), P);
    expect(model.ok && model.value.clock).toBe(10);
    expect(model.ok && model.value.params[123]).toBeCloseTo(0.1, 6);
    expect((await fetch(`${second.url}/api/checkpoint`)).status).toBe(404);
    expect((await fetch(`${second.url}/api/jobs/zz/checkpoint`)).status).toBe(404);
    // The job file's own job is unchanged, and submitting the same id again is refused.
    expect((await post(second.url, "/api/jobs", ENTRY)).status).toBe(409);

    // Cancelled: forgotten.
    expect((await post(second.url, "/api/control", { action: "cancel", job: "late" })).body).toMatchObject({ ok: true });
    expect(JSON.parse(readFileSync(join(dir, SUBMITTED_FILE), "utf8"))).toEqual({ v: 1, jobs: [] });
    await open.shift()?.close();
    const third = await start(dir);
    expect(third.grid.all().map((j) => j.id)).toEqual(["a"]);
  });

  it("--fresh sets them aside; a damaged list or entry is reported and skipped, a job file's id wins", async () => {
    const dir = join(mkdtempSync(join(tmpdir(), "grid-submitted-")), "state");
    const first = await start(dir);
    expect((await post(first.url, "/api/jobs", ENTRY)).status).toBe(201);
    expect((await post(first.url, "/api/jobs", { id: "a2", job: "mnist-softmax" })).status).toBe(201);
    await open.shift()?.close();

    const fresh = await start(dir, ["--fresh"]);
    expect(fresh.grid.all().map((j) => j.id)).toEqual(["a"]);
    expect(readdirSync(dir).some((f) => f.startsWith(`${SUBMITTED_FILE}.`) && f.endsWith(".fresh"))).toBe(true);
    expect(existsSync(join(dir, SUBMITTED_FILE))).toBe(false);
    await open.shift()?.close();

    // One bad entry among good ones; an entry whose id the jobs file now holds.
    writeFileSync(join(dir, SUBMITTED_FILE), JSON.stringify({ v: 1, jobs: [{ id: "b", job: "mnist-softmax" }, { id: "c", job: 5 }, { id: "a", job: "mnist-mlp" }] }));
    const partial = await start(dir);
    expect(partial.grid.all().map((j) => j.id)).toEqual(["a", "b"]);
    expect(partial.lines.join("\n")).toMatch(/not a valid entry; skipped/);
    expect(partial.lines.join("\n")).toMatch(/submitted job a is not restored: the jobs file has a job with that id/);
    expect(JSON.parse(readFileSync(join(dir, SUBMITTED_FILE), "utf8")).jobs.map((e: { id: string }) => e.id)).toEqual(["b"]);
    await open.shift()?.close();

    writeFileSync(join(dir, SUBMITTED_FILE), '{"v": 1, "jobs": [');
    const torn = await start(dir);
    expect(torn.grid.all().map((j) => j.id)).toEqual(["a"]);
    expect(torn.lines.join("\n")).toMatch(/submitted-jobs\.json is unreadable/);
  });
});
