/**
 * Job mf survives its coordinator: a real coordinator process running job mf
 * with four volunteers (the real trainer and step loop in Node, over the real
 * /ws and /api/mf/blocks) is killed with SIGKILL mid-run and restarted on the
 * same port and state directory. The restart must resume at the newest
 * barrier on disk (at or past the last one the status acknowledged) with
 * every factor block exactly as checkpointed, the volunteers (reconnecting by
 * themselves, as new workers) must finish the job at the target from there,
 * and a restart with another problem on that directory must be refused.
 */
import { afterAll, describe, expect, it } from "vitest";
import { mkdtempSync, readFileSync } from "node:fs";
import { tmpdir } from "node:os";
import { join } from "node:path";
import type WebSocket from "ws";
import { dialAndJoin } from "../support/sim-socket.ts";
import { runStep, type MfIo, type TrainerPort } from "../../client/mf/loop.ts";
import { modelFloats, type MfConfig } from "../../client/mf/problem.ts";
import { MfTrainer } from "../../client/mf/trainer.ts";
import { decodeBlock, encodeBlock, type FactorBlock } from "../../client/mf/wire.ts";
import { MF_DEFAULTS } from "../../coordinator/mf/config.ts";
import { mfStateKey } from "../../coordinator/mf/run.ts";
import { decodeModelUpload, type ClientMessage } from "../../coordinator/protocol.ts";
import { decodeCheckpointFile, JobStore, openJobState, StateMismatchError } from "../../coordinator/state.ts";
import { startCoordinatorProcess, waitFor, type CoordinatorProcess } from "../support/coordinator.ts";

const problem: MfConfig = { ...MF_DEFAULTS, users: 1000, items: 400, rank: 4, density: 0.3, seed: 9 };
const FLAGS = ["--job", "mf", "--mf-users", "1000", "--mf-items", "400", "--mf-rank", "4", "--mf-density", "0.3", "--seed", "9", "--min-workers", "4"];
const P = modelFloats(problem);
const sleep = (ms: number): Promise<void> => new Promise((r) => setTimeout(r, ms));

interface MfStatus {
  job: { state: string };
  mf: { subEpoch: number; testRmse: number | null };
  view: { active: string[] };
  metrics: { test: { series: [number, number][] } };
  events: { kind: string; detail?: string }[];
  durable: { incarnation: number; resumedFrom: { clock: number } | null; checkpoint: { clock: number } | null };
}

/** Volunteers reachable in-process by worker id: column blocks travel between them. */
const byId = new Map<string, NodeVolunteer>();

/** A volunteer without a browser: redials a lost coordinator and joins again as a new worker with a fresh trainer. */
class NodeVolunteer {
  trainer = new MfTrainer(problem);
  id: string | null = null;
  /** While set, it does not dial (the test holds it off a restarted coordinator). */
  hold = false;
  readonly errors: string[] = [];
  private ws: WebSocket | null = null;
  private closed = false;
  private chain: Promise<void> = Promise.resolve();

  constructor(private readonly url: () => string) {}

  start(): void {
    if (this.closed) return;
    if (this.hold) {
      setTimeout(() => this.start(), 50);
      return;
    }
    const ws = dialAndJoin(this.url(), "node", this.errors, (m) => {
      if (m.type === "welcome") {
        this.id = m.workerId;
        this.trainer = new MfTrainer(problem);
        byId.set(m.workerId, this);
      } else if (m.type === "mf-step") {
        const io = this.io(ws);
        this.chain = this.chain.then(() => runStep(m, this.port(), io)).catch((e: unknown) => {
          // A step cut short by the coordinator's death is expected; others are not.
          if (ws.readyState === ws.OPEN) this.errors.push(e instanceof Error ? e.message : String(e));
        });
      }
    });
    this.ws = ws;
    ws.on("close", () => {
      if (this.id) byId.delete(this.id);
      this.id = null;
      if (!this.closed) setTimeout(() => this.start(), 100);
    });
  }

  private port(): TrainerPort {
    const tr = this.trainer;
    return {
      version: async (k, i) => tr.version(k, i),
      put: async (b) => tr.put(b),
      get: async (k, i) => tr.get(k, i),
      release: async (k, i) => tr.release(k, i),
      keepRows: async (rows) => tr.keepRows(rows),
      // Paced, so that the run lasts long enough to be killed in the middle.
      train: async (row, col, lr) => {
        await sleep(40);
        return { ...(await tr.train(row, col, lr)), ms: 40 };
      },
      memory: async () => ({ modelBytes: tr.modelBytes(), peakModelBytes: tr.peakModelBytes() }),
    };
  }

  private io(ws: WebSocket): MfIo {
    return {
      self: this.id ?? "",
      peerWaitMs: 300,
      fetchBlock: async (kind, index) => {
        const res = await fetch(`${this.url()}/api/mf/blocks/${kind}/${index}`);
        const d = decodeBlock(new Uint8Array(await res.arrayBuffer()), (k, i) => this.trainer.floatsOf(k, i));
        if (!d.ok) throw new Error(d.reason);
        return d.value;
      },
      sendPeer: async (to: string, b: FactorBlock) => {
        byId.get(to)?.trainer.put(b);
      },
      upload: (b) => {
        if (ws.readyState === ws.OPEN) ws.send(encodeBlock(b));
      },
      send: (m: ClientMessage) => {
        if (ws.readyState === ws.OPEN) ws.send(JSON.stringify(m));
      },
      stats: () => ({ bytesIn: 0, bytesOut: 0, peers: 3 }),
      live: () => ws.readyState === ws.OPEN && this.ws === ws,
      sleep,
    };
  }

  stop(): void {
    this.closed = true;
    this.ws?.terminate();
  }
}

describe("job mf across a coordinator crash", () => {
  const vols: NodeVolunteer[] = [];
  let coord: CoordinatorProcess | null = null;
  afterAll(async () => {
    for (const v of vols) v.stop();
    await coord?.stop();
  });

  it("resumes at the newest barrier with every block as checkpointed after kill -9, and finishes at the target", async () => {
    coord = await startCoordinatorProcess(FLAGS);
    const stateDir = coord.stateDir;
    const port = Number(new URL(coord.url).port);
    let url = coord.url;
    for (let i = 0; i < 4; i++) {
      const v = new NodeVolunteer(() => url);
      vols.push(v);
      v.start();
    }
    // Train to sub-epoch 6 (the target needs about 18), noting the newest acknowledged checkpoint.
    let acked = 0;
    const first = coord;
    await waitFor(
      "sub-epoch 6",
      async () => {
        const s = (await first.status()) as unknown as MfStatus;
        acked = Math.max(acked, s.durable.checkpoint?.clock ?? 0);
        return s.mf.subEpoch >= 6;
      },
      60_000,
      20,
    );
    expect(acked).toBeGreaterThanOrEqual(5);
    for (const v of vols) v.hold = true;
    const exited = new Promise((r) => first.child.once("exit", r));
    first.child.kill("SIGKILL");
    await exited;

    // On disk: the newest checkpoint, at or past the acknowledged one.
    const file = decodeCheckpointFile(new Uint8Array(readFileSync(join(stateDir, "default", "model.bin"))), P);
    if (typeof file === "string") throw new Error(file);
    expect(file.clock).toBeGreaterThanOrEqual(acked);
    // The directory holds this problem's job: another problem is refused, not resumed.
    const other = { ...problem, density: 0.2 };
    expect(() => openJobState(new JobStore(stateDir, "default", () => {}), { name: mfStateKey(other), parameters: modelFloats(other) }, false, () => {})).toThrow(
      StateMismatchError,
    );

    coord = await startCoordinatorProcess(FLAGS, 60_000, { stateDir, port });
    url = coord.url;
    const resumed = (await coord.status()) as unknown as MfStatus;
    expect(resumed.durable.incarnation).toBe(2);
    expect(resumed.durable.resumedFrom?.clock).toBe(file.clock);
    expect(resumed.mf.subEpoch).toBe(file.clock);
    expect(resumed.job.state).toBe("waiting");
    expect(resumed.metrics.test.series.at(-1)?.[0]).toBe(file.clock);
    // No factor lost: every block the restarted coordinator serves is the checkpointed one.
    const model = decodeModelUpload(new Uint8Array(await (await fetch(`${url}/api/model`)).arrayBuffer()), P);
    if (!model.ok) throw new Error(model.message);
    expect(model.value.clock).toBe(file.clock);
    expect(Buffer.from(model.value.params.buffer).equals(Buffer.from(file.params.buffer))).toBe(true);

    // The volunteers redial, join as new workers and take their row blocks from the checkpoint.
    for (const v of vols) v.hold = false;
    const c = coord;
    const end = await waitFor(
      "the job to finish",
      async () => {
        const s = (await c.status()) as unknown as MfStatus;
        return s.job.state === "done" ? s : null;
      },
      90_000,
      100,
    );
    expect(end.events.some((e) => e.kind === "finishing" && /target reached/.test(e.detail ?? ""))).toBe(true);
    expect(end.mf.testRmse).toBeLessThanOrEqual(1.05 * problem.noise);
    expect(end.mf.subEpoch).toBeGreaterThan(file.clock);
    // The series goes on from the checkpoint: one point per sub-epoch, none lost or repeated.
    const clocks = end.metrics.test.series.map(([t]) => t);
    expect(clocks).toEqual(Array.from({ length: clocks.length }, (_, i) => i + 1));
    for (const v of vols) expect(v.errors).toEqual([]);
  }, 180_000);
});
