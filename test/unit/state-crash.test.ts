/**
 * Crash run without a browser: a real coordinator process (its real start-up
 * path on a tiny dataset) is killed with SIGKILL at 10 random moments while
 * simulated workers report clocks and the evaluator uploads its replica. After
 * every kill the state directory must parse, and after every restart (same
 * port, same directory, same flags) the workers rejoin and the job resumes at
 * a clock no lower than the last checkpoint the status acknowledged, from
 * exactly that checkpoint's parameters.
 */
import { afterAll, describe, expect, it } from "vitest";
import { spawn, type ChildProcess } from "node:child_process";
import { appendFileSync, existsSync, mkdtempSync, readFileSync } from "node:fs";
import { tmpdir } from "node:os";
import { join, resolve } from "node:path";
import type WebSocket from "ws";
import { dialAndJoin } from "../support/sim-socket.ts";
import { replayLog } from "../../coordinator/resume.ts";
import { decodeCheckpointFile } from "../../coordinator/state.ts";
import { decodeModelUpload, encodeModelUpload } from "../../coordinator/protocol.ts";
import { mnistSoftmax } from "../../client/jobs/mnist-softmax.ts";

const ROOT = resolve(import.meta.dirname, "..", "..");
const P = mnistSoftmax.parameters;
const KILLS = 10;
const sleep = (ms: number): Promise<void> => new Promise((r) => setTimeout(r, ms));

interface Durable {
  incarnation: number;
  resumedFrom: { clock: number; file: string } | null;
  checkpoint: { clock: number; t: number } | null;
}
interface Status {
  job: { state: string };
  clock: { min: number; max: number };
  view: { active: string[] };
  durable: Durable;
}

/** A simulated volunteer: joins, steps every 15 ms, uploads when it is the evaluator, rejoins after a lost connection. */
class SimWorker {
  clock = 0;
  id: string | null = null;
  /** Checkpoint clocks this worker resumed from, checked against the parameters it fetched. */
  readonly resumedAt: number[] = [];
  private ws: WebSocket | null = null;
  private timer: ReturnType<typeof setInterval> | null = null;
  private evaluator: string | null = null;
  private closed = false;
  errors: string[] = [];

  constructor(private url: () => string) {}

  start(): void {
    if (this.closed) return;
    const ws = dialAndJoin(this.url(), "sim", this.errors, (m) => {
      if (m.type === "welcome") {
        this.id = m.workerId;
        this.clock = m.startClock;
        if (m.base) void this.checkBase(m.base.clock);
        this.timer ??= setInterval(() => this.step(), 15);
      } else if (m.type === "view") {
        this.evaluator = m.evaluator;
      }
    });
    this.ws = ws;
    ws.on("close", () => {
      if (this.timer) clearInterval(this.timer);
      this.timer = null;
      this.id = null;
      if (!this.closed) setTimeout(() => this.start(), 100);
    });
  }

  /** The checkpoint served to joiners holds the parameters uploaded at its clock (all equal to it). */
  private async checkBase(clock: number): Promise<void> {
    const res = await fetch(`${this.url()}/api/checkpoint`);
    const r = decodeModelUpload(new Uint8Array(await res.arrayBuffer()), P);
    if (!r.ok || r.value.clock !== clock || r.value.params[P - 1] !== clock) this.errors.push(`bad checkpoint for clock ${clock}`);
    else this.resumedAt.push(clock);
  }

  private step(): void {
    const ws = this.ws;
    if (!ws || ws.readyState !== ws.OPEN || this.id === null) return;
    this.clock++;
    ws.send(JSON.stringify({ type: "clock", clock: this.clock, minApplied: this.clock - 1, loss: 1, stepMs: 15, batch: 8, examples: 8 * this.clock, bytesIn: 0, bytesOut: 0, peers: 1 }));
    if (this.evaluator === this.id && this.clock % 5 === 0) ws.send(Buffer.from(encodeModelUpload(this.clock, new Float32Array(P).fill(this.clock))));
  }

  stop(): void {
    this.closed = true;
    if (this.timer) clearInterval(this.timer);
    this.ws?.terminate();
  }
}

function startChild(port: number, stateDir: string): Promise<{ child: ChildProcess; url: string; out: () => string }> {
  // One process (node with tsx's loader, not the tsx wrapper), so SIGKILL hits the coordinator itself.
  const child = spawn(
    process.execPath,
    ["--import", "tsx", "test/support/tiny-coordinator.ts", "--port", String(port), "--state-dir", stateDir, "--token", "crash-test-token", "--no-build",
      "--eval-every", "5", "--eval-interval", "0", "--checkpoint-interval", "150", "--target-accuracy", "0.99", "--staleness", "1000"],
    { cwd: ROOT, stdio: ["ignore", "pipe", "pipe"] },
  );
  let out = "";
  child.stdout?.on("data", (d: Buffer) => (out += d.toString()));
  child.stderr?.on("data", (d: Buffer) => (out += d.toString()));
  return new Promise((res, rej) => {
    const t = setTimeout(() => rej(new Error(`no start in 60 s:\n${out}`)), 60_000);
    child.stdout?.on("data", () => {
      const m = /volunteer URL: (http:\/\/\S+?)\/\s/.exec(out);
      if (m?.[1]) {
        clearTimeout(t);
        res({ child, url: m[1], out: () => out });
      }
    });
    child.once("exit", (code) => {
      clearTimeout(t);
      rej(new Error(`exited with ${code}:\n${out}`));
    });
  });
}

async function status(url: string): Promise<Status> {
  return (await (await fetch(`${url}/api/status`)).json()) as Status;
}

/** Read the state directory as a restart would, without changing it. */
function parseStateDir(dir: string): { logNotes: string[]; checkpoints: number[]; newest: number | null } {
  const log = replayLog(existsSync(join(dir, "events.jsonl")) ? readFileSync(join(dir, "events.jsonl"), "utf8") : "");
  let newest: number | null = null;
  for (const f of ["model.bin", "model.prev.bin"]) {
    if (!existsSync(join(dir, f))) continue;
    const r = decodeCheckpointFile(new Uint8Array(readFileSync(join(dir, f))), P);
    if (typeof r === "string") throw new Error(`${f}: ${r}`);
    newest = Math.max(newest ?? 0, r.clock);
  }
  return { logNotes: log.notes, checkpoints: log.checkpoints.map((c) => c.clock), newest };
}

describe("coordinator crash and restart", () => {
  const workers: SimWorker[] = [];
  let child: ChildProcess | null = null;
  afterAll(() => {
    for (const w of workers) w.stop();
    child?.kill("SIGKILL");
  });

  it(`resumes from the last acknowledged checkpoint after ${KILLS} SIGKILLs at random moments`, async () => {
    const stateDir = mkdtempSync(join(tmpdir(), "grid-crash-"));
    const jobDir = join(stateDir, "default");
    let c = await startChild(0, stateDir);
    child = c.child;
    const port = Number(new URL(c.url).port);
    let url = c.url;
    for (let i = 0; i < 3; i++) {
      const w = new SimWorker(() => url);
      workers.push(w);
      w.start();
    }
    let acked = 0;
    for (let kill = 1; kill <= KILLS; kill++) {
      // Run for a random while, noting the newest checkpoint the status acknowledges.
      const until = Date.now() + 400 + Math.random() * 1200;
      while (Date.now() < until) {
        const s = await status(url);
        acked = Math.max(acked, s.durable.checkpoint?.clock ?? 0);
        await sleep(20 + Math.random() * 60);
      }
      const exited = new Promise((r) => c.child.once("exit", r));
      c.child.kill("SIGKILL");
      await exited;
      // The directory parses and holds a checkpoint at least as new as the acknowledged one.
      const parsed = parseStateDir(jobDir);
      expect(parsed.newest ?? 0, `kill ${kill}: newest checkpoint on disk`).toBeGreaterThanOrEqual(acked);
      // Every third kill also tears the log's last line, as a kill in the middle of a write would.
      if (kill % 3 === 0) appendFileSync(join(jobDir, "events.jsonl"), '{"k":"event","t":1,"kind":"jo');

      c = await startChild(port, stateDir);
      child = c.child;
      url = c.url;
      const resumed = await (async () => {
        const deadline = Date.now() + 30_000;
        for (;;) {
          const s = await status(url);
          if (s.view.active.length === 3 && s.clock.min > (s.durable.resumedFrom?.clock ?? 0)) return s;
          if (Date.now() > deadline) throw new Error(`kill ${kill}: workers did not resume:\n${c.out()}\n${JSON.stringify(s)}`);
          await sleep(100);
        }
      })();
      expect(resumed.durable.incarnation, `kill ${kill}`).toBe(kill + 1);
      expect(resumed.durable.resumedFrom?.clock ?? 0, `kill ${kill}: resumed clock`).toBeGreaterThanOrEqual(acked);
      expect(resumed.clock.min).toBeGreaterThan(resumed.durable.resumedFrom?.clock ?? 0);
      if (kill % 3 === 0) expect(c.out()).toMatch(/torn last line/);
      acked = Math.max(acked, resumed.durable.resumedFrom?.clock ?? 0);
    }
    for (const w of workers) expect(w.errors).toEqual([]);
    // Workers took the checkpoint as their starting point after restarts.
    expect(workers.reduce((n, w) => n + w.resumedAt.length, 0)).toBeGreaterThanOrEqual(KILLS - 1);
    expect(acked).toBeGreaterThan(20);
  }, 240_000);
});
