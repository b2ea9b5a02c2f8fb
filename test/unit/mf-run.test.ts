import { describe, expect, it } from "vitest";
import { MfRun } from "../../coordinator/mf/run.ts";
import { MF_DEFAULTS } from "../../coordinator/mf/config.ts";
import { parseClientMessage, parseServerMessage, type ServerMessage } from "../../coordinator/protocol.ts";
import { runStep, type MfIo, type TrainerPort } from "../../client/mf/loop.ts";
import { MfTrainer } from "../../client/mf/trainer.ts";
import { decodeBlock, encodeBlock } from "../../client/mf/wire.ts";
import type { MfConfig } from "../../client/mf/problem.ts";

const problem: MfConfig = { ...MF_DEFAULTS, users: 1000, items: 400, rank: 4, density: 0.3, seed: 3 };

/** Volunteers do not start sub-epochs at or past `holdAt.t` (the test paces the run). */
const holdAt = { t: Infinity };

/** A volunteer without a browser: the real trainer and step loop, messages through the real schemas. */
class FakeVolunteer {
  readonly trainer = new MfTrainer(problem);
  id = "";
  alive = true;
  chain: Promise<void> = Promise.resolve();
  errors: unknown[] = [];
  bytesOut = 0;
  readonly port: TrainerPort;

  constructor(private readonly run: MfRun, private readonly net: Map<string, FakeVolunteer>) {
    const tr = this.trainer;
    this.port = {
      version: async (k, i) => tr.version(k, i),
      put: async (b) => tr.put(b),
      get: async (k, i) => tr.get(k, i),
      release: async (k, i) => tr.release(k, i),
      keepRows: async (rows) => tr.keepRows(rows),
      train: async (row, col, lr) => ({ ...(await tr.train(row, col, lr)), ms: 0 }),
      memory: async () => ({ modelBytes: tr.modelBytes(), peakModelBytes: tr.peakModelBytes() }),
    };
  }

  join(): void {
    const r = this.run.join({ type: "join", backend: "cpu", kernel: "js", adapter: "none" }, (m) => this.receive(m));
    if (!r.ok) throw new Error(r.reason);
  }

  private receive(m: ServerMessage): void {
    const parsed = parseServerMessage(JSON.stringify(m));
    if (!parsed.ok) throw new Error(parsed.message);
    const msg = parsed.value;
    if (msg.type === "welcome") {
      this.id = msg.workerId;
      this.net.set(this.id, this);
    }
    if (msg.type !== "mf-step") return;
    const io: MfIo = {
      self: this.id,
      peerWaitMs: 200,
      fetchBlock: async (kind, index) => {
        const d = decodeBlock(this.run.block(kind, index)!, (k, i) => this.trainer.floatsOf(k, i));
        if (!d.ok) throw new Error(d.reason);
        return d.value;
      },
      sendPeer: async (to, b) => {
        this.bytesOut += b.data.byteLength;
        const peer = this.net.get(to);
        if (peer?.alive) peer.trainer.put(b);
      },
      upload: (b) => {
        const err = this.run.onBinary(this.id, encodeBlock(b));
        if (err) throw new Error(err);
      },
      send: (c) => {
        const p = parseClientMessage(JSON.stringify(c));
        if (!p.ok) throw new Error(p.message);
        this.run.onMessage(this.id, p.value);
      },
      stats: () => ({ bytesIn: 0, bytesOut: this.bytesOut, peers: this.net.size - 1 }),
      live: () => this.alive,
      sleep: (ms) => new Promise((r) => setTimeout(r, ms)),
    };
    this.chain = this.chain
      .then(async () => {
        while (msg.t >= holdAt.t) await new Promise((r) => setTimeout(r, 5));
      })
      .then(() => (this.alive ? runStep(msg, this.port, io) : undefined)).catch((e: unknown) => void this.errors.push(e));
  }
}

async function until(cond: () => boolean, ms: number): Promise<void> {
  const end = Date.now() + ms;
  while (!cond() && Date.now() < end) await new Promise((r) => setTimeout(r, 10));
}

interface Status {
  job: { state: string };
  mf: { subEpoch: number; testRmse: number; owners: (string | null)[]; wholeModelBytes: number; boundBytes: number };
  workers: { id: string; state: string; peakModelBytes: number; rowBlocks: number[]; vFrom: { peer: number; local: number; checkpoint: number } }[];
  events: { kind: string; worker?: string }[];
}

describe("mf coordinator with in-process volunteers", () => {
  it("trains to test RMSE ≤ 1.05 × noise over the protocol, survives a volunteer leaving mid-run, and keeps each worker's share of the model small", async () => {
    const run = new MfRun({ config: { problem, maxEpochs: 40, target: 1.05 }, minWorkers: 4, store: null });
    const net = new Map<string, FakeVolunteer>();
    const vols = Array.from({ length: 4 }, () => new FakeVolunteer(run, net));
    holdAt.t = 6;
    for (const v of vols) v.join();
    expect(run.status()["job"]).toMatchObject({ state: "running" });
    // Before the fault: every worker holds at most 1/K of the model plus one column block.
    await until(() => (run.status() as unknown as Status).mf.subEpoch >= 6, 20_000);
    const before = run.status() as unknown as Status;
    expect(before.job.state).toBe("running");
    expect(before.mf.subEpoch).toBe(6);
    for (const w of before.workers) {
      expect(w.rowBlocks).toHaveLength(1);
      expect(w.peakModelBytes).toBeGreaterThan(0);
      expect(w.peakModelBytes).toBeLessThanOrEqual(before.mf.boundBytes);
      expect(w.peakModelBytes).toBeLessThan(before.mf.wholeModelBytes / 2);
    }
    // Column blocks travelled peer to peer.
    expect(before.workers.reduce((s, w) => s + w.vFrom.peer, 0)).toBeGreaterThan(0);
    const leaver = vols[2]!;
    leaver.alive = false;
    run.remove(leaver.id, "left", "connection closed");
    const leftAt = (run.status() as unknown as Status).mf.subEpoch;
    // A newcomer (or the same volunteer resuming) stands by and takes a block at the next barrier.
    const late = new FakeVolunteer(run, net);
    vols.push(late);
    late.join();
    holdAt.t = Infinity;
    await until(() => run.state === "done", 60_000);
    for (const v of vols) await v.chain;
    expect(vols.flatMap((v) => v.errors)).toEqual([]);
    const end = run.status() as unknown as Status;
    expect(end.job.state).toBe("done");
    expect(end.mf.testRmse).toBeLessThanOrEqual(1.05 * problem.noise);
    // The leaver's row block went to someone else; no block is without an owner.
    expect(end.mf.owners.every((o) => o !== null && o !== leaver.id)).toBe(true);
    expect(end.events.some((e) => e.kind === "left" && e.worker === leaver.id)).toBe(true);
    expect(end.mf.subEpoch).toBeGreaterThan(leftAt + 1);
    expect(end.events.some((e) => e.kind === "rebalanced" && e.worker === late.id)).toBe(true);
    for (const w of end.workers.filter((x) => x.state === "active")) expect(w.rowBlocks).toHaveLength(1);
  }, 90_000);

  it("refuses uploads that are not the worker's open task", () => {
    const run = new MfRun({ config: { problem, maxEpochs: 1, target: 1.05 }, minWorkers: 2, store: null });
    const ids: string[] = [];
    for (let i = 0; i < 2; i++) {
      run.join({ type: "join", backend: "cpu", kernel: "js", adapter: "none" }, (m) => {
        if (m.type === "welcome") ids.push(m.workerId);
      });
    }
    const [a, b] = ids as [string, string];
    const tr = new MfTrainer(problem);
    const u1 = { kind: "u" as const, index: 1, version: 1, data: new Float32Array(tr.floatsOf("u", 1)!) };
    // w1 owns row block 0, not 1.
    expect(run.onBinary(a, encodeBlock(u1))).toMatch(/not .*open task/);
    expect(run.onBinary(b, encodeBlock({ ...u1, version: 5 }))).toMatch(/version/);
    expect(run.onBinary(b, new Uint8Array(7))).toMatch(/bytes/);
    expect(run.onBinary(b, encodeBlock(u1))).toBeNull();
    // Done without the V upload is not counted.
    run.onMessage(b, { type: "mf-done", t: 0, row: 1, col: 1, sq: 1, ratings: 1, ms: 1, modelBytes: 0, peakModelBytes: 0, bytesIn: 0, bytesOut: 0, peers: 0, vFrom: "checkpoint" });
    expect((run.status() as unknown as Status).mf.subEpoch).toBe(0);
    expect((run.status()["mf"] as { done: number[] }).done).toEqual([]);
  });
});

describe("mf flags", () => {
  it("takes --job mf with its sizes and refuses bad or misplaced ones with one line", async () => {
    const { parseCoordinatorArgs, UsageError } = await import("../../coordinator/cli.ts");
    const cfg = parseCoordinatorArgs(["--job", "mf", "--mf-users", "300", "--mf-items", "200", "--mf-rank", "8", "--mf-density", "0.1", "--mf-noise", "0.2", "--seed", "5", "--lr", "0.02"]);
    expect(cfg.mf?.problem).toMatchObject({ users: 300, items: 200, rank: 8, density: 0.1, noise: 0.2, seed: 5, lr: 0.02, blocks: 4 });
    expect(parseCoordinatorArgs(["--job", "mf"]).mf?.problem).toMatchObject({ users: 20_000, items: 5_000, rank: 16, density: 0.02, noise: 0.1 });
    expect(parseCoordinatorArgs([]).mf).toBeNull();
    for (const bad of [["--job", "mf", "--mf-rank", "0"], ["--job", "mf", "--mf-density", "2"], ["--job", "mf", "--mf-users", "x"], ["--mf-rank", "4"], ["--job", "mf", "--mf-blocks", "300"]]) {
      expect(() => parseCoordinatorArgs(bad)).toThrow(UsageError);
    }
  });
});
