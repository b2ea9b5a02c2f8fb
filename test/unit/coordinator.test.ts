/**
 * The coordinator against bad input: flags, malformed control messages, the
 * console token. Runs a real server on loopback with a tiny synthetic dataset.
 */
import { tinyJobOptions } from "../support/tiny-run.ts";
import { afterAll, beforeAll, describe, expect, it } from "vitest";
import { spawnSync } from "node:child_process";
import { mkdtempSync } from "node:fs";
import { tmpdir } from "node:os";
import { join, resolve } from "node:path";
import WebSocket from "ws";
import { parseCoordinatorArgs, UsageError } from "../../coordinator/cli.ts";
import { JobRun } from "../../coordinator/job.ts";
import { startServer, type RunningServer } from "../../coordinator/server.ts";
import { JobStore } from "../../coordinator/state.ts";
import { encodeModelUpload, parseServerMessage, type ServerMessage } from "../../coordinator/protocol.ts";

const ROOT = resolve(import.meta.dirname, "..", "..");


describe("coordinator flags", () => {
  it("rejects unknown and invalid flags with one line", () => {
    for (const argv of [["--bogus"], ["--port", "abc"], ["--port", "70000"], ["--consistency", "eventual"], ["--job", "nope"], ["--target-accuracy", "2"], ["stray"]]) {
      expect(() => parseCoordinatorArgs(argv)).toThrow(UsageError);
    }
    const cfg = parseCoordinatorArgs(["--consistency", "bsp", "--staleness", "0", "--port", "0", "--seed", "7"]);
    expect(cfg.consistency).toEqual({ mode: "bsp", staleness: 0 });
    expect(cfg.port).toBe(0);
    expect(cfg.job).toBe("mnist-softmax");
    expect(cfg.compression).toEqual({ topk: null, values: "f32" });
  });

  it("--compression takes none, fp16, int8, topk:RATIO and combinations, strictly", () => {
    expect(parseCoordinatorArgs(["--compression", "topk:0.01+int8"]).compression).toEqual({ topk: 0.01, values: "int8" });
    expect(parseCoordinatorArgs(["--compression", "fp16"]).compression).toEqual({ topk: null, values: "f16" });
    for (const bad of ["zip", "topk:2", "topk:0", "int8+fp16", ""]) {
      expect(() => parseCoordinatorArgs(["--compression", bad])).toThrow(/--compression/);
    }
    const r = spawnSync(join(ROOT, "node_modules/.bin/tsx"), ["coordinator/main.ts", "--compression", "topk:5"], { cwd: ROOT, encoding: "utf8", timeout: 30_000 });
    expect(r.status).toBe(2);
    expect(r.stderr.trim().split("\n")).toEqual(["grid: --compression: topk wants a ratio in (0, 1], got \"5\""]);
  });

  it("exits with status 2 and a one-line message on an unknown flag", () => {
    const r = spawnSync(join(ROOT, "node_modules/.bin/tsx"), ["coordinator/main.ts", "--no-such-flag"], { cwd: ROOT, encoding: "utf8", timeout: 30_000 });
    expect(r.status).toBe(2);
    const lines = r.stderr.trim().split("\n");
    expect(lines).toHaveLength(1);
    expect(lines[0]).toMatch(/no-such-flag/);
  });
});

describe("coordinator server", () => {
  let server: RunningServer;
  let run: JobRun;
  const token = "unit-test-token-123";

  beforeAll(async () => {
    run = new JobRun(tinyJobOptions({ store: new JobStore(mkdtempSync(join(tmpdir(), "grid-unit-")), "default", () => {}) }));
    server = await startServer({ host: "127.0.0.1", port: 0, token, distDir: join(ROOT, "dist"), run });
  });

  afterAll(async () => {
    await server.close();
  });

  function connect(): Promise<{ ws: WebSocket; next: (pred?: (m: ServerMessage) => boolean) => Promise<ServerMessage> }> {
    const ws = new WebSocket(server.url.replace("http", "ws") + "/ws");
    const queue: ServerMessage[] = [];
    const waiters: (() => void)[] = [];
    ws.on("message", (d, isBinary) => {
      if (isBinary) return;
      const p = parseServerMessage(d.toString());
      if (!p.ok) throw new Error(`server sent an invalid message: ${p.message}`);
      queue.push(p.value);
      waiters.splice(0).forEach((w) => w());
    });
    const next = async (pred: (m: ServerMessage) => boolean = () => true): Promise<ServerMessage> => {
      const deadline = Date.now() + 5000;
      for (;;) {
        const i = queue.findIndex(pred);
        if (i >= 0) return queue.splice(i, 1)[0]!;
        if (Date.now() > deadline) throw new Error("no matching message from the coordinator");
        await new Promise<void>((r) => {
          waiters.push(r);
          setTimeout(r, 200);
        });
      }
    };
    return new Promise((res, rej) => {
      ws.once("open", () => res({ ws, next }));
      ws.once("error", rej);
    });
  }

  const join1 = JSON.stringify({ type: "join", name: "a", backend: "cpu", kernel: "cpu-reference", adapter: "cpu" });

  it("rejects malformed control messages with a reason code and keeps serving everyone", async () => {
    const good = await connect();
    good.ws.send(join1);
    const welcome = await good.next((m) => m.type === "welcome");
    expect(welcome.type === "welcome" && welcome.workerId).toBe("w1");

    const bad = await connect();
    const cases: [string | Buffer, string][] = [
      ["not json at all", "malformed"],
      [JSON.stringify({ type: "clock", clock: 1 }), "malformed"],
      [JSON.stringify({ type: "teleport" }), "unknown-type"],
      [JSON.stringify({ type: "heartbeat" }), "not-joined"],
      [JSON.stringify({ type: "join", backend: "quantum", kernel: "x", adapter: "y" }), "malformed"],
      [JSON.stringify({ type: "join", backend: "cpu", kernel: "x".repeat(5000), adapter: "y" }), "malformed"],
      ["x".repeat(70_000), "too-large"],
      [Buffer.from([1, 2, 3]), "not-joined"],
    ];
    for (const [msg, code] of cases) {
      bad.ws.send(msg);
      const e = await bad.next((m) => m.type === "error");
      expect(e.type === "error" && e.code).toBe(code);
    }
    // A joined worker that sends garbage and a bad model upload is refused too.
    good.ws.send(JSON.stringify({ type: "clock", clock: -5, minApplied: 0, loss: 1, stepMs: 1, batch: 8, examples: 0, bytesIn: 0, bytesOut: 0, peers: 0 }));
    expect((await good.next((m) => m.type === "error")).type).toBe("error");
    // Phase counters must be six non-negative numbers.
    const report = { type: "clock", clock: 1, minApplied: 0, loss: 1, stepMs: 1, batch: 8, examples: 0, bytesIn: 0, bytesOut: 0, peers: 0 };
    good.ws.send(JSON.stringify({ ...report, phaseMs: { stepping: 5, gate: -1, loading: 0, paused: 0, draining: 0, idle: 0 } }));
    expect((await good.next((m) => m.type === "error")).type).toBe("error");
    good.ws.send(JSON.stringify({ ...report, phaseMs: { stepping: 5 } }));
    expect((await good.next((m) => m.type === "error")).type).toBe("error");
    good.ws.send(Buffer.from(encodeModelUpload(5, new Float32Array(10))));
    expect((await good.next((m) => m.type === "error")).type).toBe("error");
    good.ws.send(JSON.stringify({ type: "join", backend: "cpu", kernel: "k", adapter: "a" }));
    const again = await good.next((m) => m.type === "error");
    expect(again.type === "error" && again.code).toBe("already-joined");

    // The coordinator still serves: status answers, the first worker is active,
    // a clock report is taken, and another page can join.
    good.ws.send(JSON.stringify({ type: "clock", clock: 3, minApplied: 0, loss: 1.5, stepMs: 4, batch: 8, examples: 24, bytesIn: 0, bytesOut: 0, peers: 0 }));
    const third = await connect();
    third.ws.send(JSON.stringify({ type: "join", backend: "cpu", kernel: "cpu-reference", adapter: "cpu" }));
    const w3 = await third.next((m) => m.type === "welcome");
    expect(w3.type === "welcome" && w3.needsSnapshot).toBe(true);
    // Cumulative example counts: the worker's and the job's total follow the latest report.
    good.ws.send(JSON.stringify({ type: "clock", clock: 5, minApplied: 0, loss: 1.4, stepMs: 4, batch: 8, examples: 40, bytesIn: 0, bytesOut: 0, peers: 0 }));
    type St = { examples: number; workers: { id: string; state: string; clock: number; examples: number }[] };
    let st = (await (await fetch(`${server.url}/api/status`)).json()) as St;
    for (let i = 0; i < 40 && st.workers.find((w) => w.id === "w1")?.clock !== 5; i++) {
      await new Promise((r) => setTimeout(r, 50));
      st = (await (await fetch(`${server.url}/api/status`)).json()) as St;
    }
    expect(st.workers.find((w) => w.id === "w1")).toMatchObject({ state: "active", clock: 5, examples: 40 });
    expect(st.examples).toBe(40);
    expect(JSON.stringify(st)).not.toContain((welcome.type === "welcome" && welcome.credential) || "none");
    for (const c of [good, bad, third]) c.ws.close();
  });

  it("guards controls with the console token", async () => {
    const post = (body: unknown, auth?: string) =>
      fetch(`${server.url}/api/control`, {
        method: "POST",
        headers: { "Content-Type": "application/json", ...(auth ? { Authorization: auth } : {}) },
        body: JSON.stringify(body),
      });
    expect((await post({ action: "pause" })).status).toBe(401);
    expect((await post({ action: "pause" }, "Bearer wrong-token-xyz")).status).toBe(401);
    expect(run.state).toBe("running");
    expect((await post({ action: "pause" }, `Bearer ${token}`)).status).toBe(200);
    expect(run.state).toBe("paused");
    expect((await post({ action: "resume" }, `Bearer ${token}`)).status).toBe(200);
    expect((await post({ action: "set", consistency: "bsp", staleness: 0 }, `Bearer ${token}`)).status).toBe(200);
    expect(run.consistency).toEqual({ mode: "bsp", staleness: 0 });
    expect((await post({ action: "explode" }, `Bearer ${token}`)).status).toBe(400);
  });

  it("serves shards with their content hash and 404s unknown ones", async () => {
    const r = await fetch(`${server.url}/data/mnist-softmax/shards/1`);
    expect(r.status).toBe(200);
    expect(r.headers.get("etag")).toBe(`"${run.shard(1)?.ref.hash}"`);
    expect((await fetch(`${server.url}/data/mnist-softmax/shards/99`)).status).toBe(404);
    expect((await fetch(`${server.url}/data/other/shards/1`)).status).toBe(404);
  });
});
