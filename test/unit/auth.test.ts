/**
 * Who may do what: the console token guards every control action (a refused
 * one changes nothing), a credential or peer id cannot be taken over by
 * another page (a peer id registers with signaling only with its secret, also
 * while its owner is away), the public status and stream leak no secret, and a sender
 * that floods the control socket or keeps sending garbage is rate-limited,
 * counted in the status and dropped as misbehaving while the coordinator
 * keeps serving everyone else.
 */
import { afterAll, beforeAll, describe, expect, it } from "vitest";
import { mkdtempSync } from "node:fs";
import { tmpdir } from "node:os";
import { join, resolve } from "node:path";
import WebSocket from "ws";
import { JobRun } from "../../coordinator/job.ts";
import { startServer, type RunningServer } from "../../coordinator/server.ts";
import { JobStore } from "../../coordinator/state.ts";
import { parseServerMessage, type ServerMessage } from "../../coordinator/protocol.ts";
import { tinyJobOptions } from "../support/tiny-run.ts";
import { TokenBucket } from "../../coordinator/ratelimit.ts";

const ROOT = resolve(import.meta.dirname, "..", "..");
const token = "auth-test-token-4567";
const joinMsg = (extra: Record<string, unknown> = {}): string => JSON.stringify({ type: "join", backend: "cpu", kernel: "k", adapter: "a", ...extra });

interface Client {
  ws: WebSocket;
  closed: Promise<number>;
  next(pred?: (m: ServerMessage) => boolean): Promise<ServerMessage>;
  all: ServerMessage[];
}

interface WorkerStatus {
  id: string;
  state: string;
  dropReason: string | null;
  rejected: Record<string, number>;
}

describe("auth and misbehaving senders", () => {
  let server: RunningServer;
  let run: JobRun;

  beforeAll(async () => {
    run = new JobRun(tinyJobOptions({ store: new JobStore(mkdtempSync(join(tmpdir(), "grid-auth-")), "default", () => {}) }));
    server = await startServer({ host: "127.0.0.1", port: 0, token, distDir: join(ROOT, "dist"), run });
  });
  afterAll(async () => {
    await server.close();
  });

  function connect(): Promise<Client> {
    const ws = new WebSocket(server.url.replace("http", "ws") + "/ws");
    const all: ServerMessage[] = [];
    const queue: ServerMessage[] = [];
    ws.on("message", (d, isBinary) => {
      if (isBinary) return;
      const p = parseServerMessage(d.toString());
      if (!p.ok) throw new Error(`server sent an invalid message: ${p.message}`);
      all.push(p.value);
      queue.push(p.value);
    });
    const closed = new Promise<number>((r) => ws.once("close", (code) => r(code)));
    const next = async (pred: (m: ServerMessage) => boolean = () => true): Promise<ServerMessage> => {
      const deadline = Date.now() + 5000;
      for (;;) {
        const i = queue.findIndex(pred);
        if (i >= 0) return queue.splice(i, 1)[0] as ServerMessage;
        if (Date.now() > deadline) throw new Error("no matching message from the coordinator");
        await new Promise((r) => setTimeout(r, 20));
      }
    };
    return new Promise((res, rej) => {
      ws.once("open", () => res({ ws, closed, next, all }));
      ws.once("error", rej);
    });
  }

  async function status(): Promise<{ workers: WorkerStatus[]; job: { state: string }; consistency: unknown; view: unknown }> {
    return (await (await fetch(`${server.url}/api/status`)).json()) as never;
  }

  /** Signaling sockets this test opened and left open, by peer id. */
  const signals = new Map<string, WebSocket>();

  /**
   * Register `id` with the PeerJS server presenting `token`: "OPEN" when the
   * server accepted it (its first message), else the HTTP status of the refused upgrade.
   */
  function signal(id: string, token: string): Promise<number | string> {
    const url = `${server.url.replace("http", "ws")}/peerjs/peerjs?key=peerjs&id=${encodeURIComponent(id)}&token=${encodeURIComponent(token)}`;
    return new Promise((res) => {
      const ws = new WebSocket(url);
      const timer = setTimeout(() => res("no answer"), 5000);
      ws.once("unexpected-response", (_req, r) => {
        clearTimeout(timer);
        res(r.statusCode ?? 0);
      });
      ws.once("message", (d) => {
        clearTimeout(timer);
        const m = JSON.parse(d.toString()) as { type?: string };
        if (m.type === "OPEN") signals.set(id, ws);
        else ws.close();
        res(m.type ?? "?");
      });
      ws.once("error", () => {});
    });
  }

  async function closeSignal(id: string): Promise<void> {
    const ws = signals.get(id);
    if (!ws) throw new Error(`no signaling socket for ${id}`);
    signals.delete(id);
    const closed = new Promise((r) => ws.once("close", r));
    ws.close();
    await closed;
  }

  async function waitUntil(cond: () => Promise<boolean>, ms = 5000): Promise<void> {
    const deadline = Date.now() + ms;
    while (!(await cond())) {
      if (Date.now() > deadline) throw new Error("condition not reached in time");
      await new Promise((r) => setTimeout(r, 50));
    }
  }

  async function joined(name: string): Promise<{ c: Client; welcome: Extract<ServerMessage, { type: "welcome" }> }> {
    const c = await connect();
    c.ws.send(joinMsg({ name }));
    const welcome = await c.next((m) => m.type === "welcome");
    if (welcome.type !== "welcome") throw new Error("no welcome");
    return { c, welcome };
  }

  it("refuses every control action without the right token (401) and changes nothing", async () => {
    const { c, welcome } = await joined("steady");
    const snapshot = async (): Promise<string> => {
      const s = await status();
      return JSON.stringify({ job: s.job, consistency: s.consistency, view: s.view, workers: s.workers.map((w) => [w.id, w.state]) });
    };
    const before = await snapshot();
    const actions = [
      { action: "pause" },
      { action: "resume" },
      { action: "stop" },
      { action: "set", consistency: "bsp", staleness: 0 },
      { action: "drop", worker: welcome.workerId },
    ];
    const badAuth: (string | undefined)[] = [undefined, "", "Bearer", "Bearer ", "Bearer wrong-token-000", `Bearer ${token}x`, `Basic ${token}`, token, `bearer ${token}`];
    for (const body of actions) {
      for (const auth of badAuth) {
        const r = await fetch(`${server.url}/api/control`, {
          method: "POST",
          headers: { "Content-Type": "application/json", ...(auth !== undefined ? { Authorization: auth } : {}) },
          body: JSON.stringify(body),
        });
        expect(r.status, `${JSON.stringify(body)} with ${auth ?? "no header"}`).toBe(401);
      }
      // The token in the URL is not a credential for controls.
      const q = await fetch(`${server.url}/api/control?token=${token}`, { method: "POST", headers: { "Content-Type": "application/json" }, body: JSON.stringify(body) });
      expect(q.status).toBe(401);
    }
    expect(await snapshot()).toBe(before);
    expect(run.state).toBe("running");
    c.ws.close();
    await c.closed;
  });

  it("refuses a second page that presents a live worker's credential, and unissued peer ids", async () => {
    const { c: first, welcome } = await joined("owner");
    const thief = await connect();
    thief.ws.send(joinMsg({ rejoin: welcome.credential }));
    const e = await thief.next((m) => m.type === "error");
    expect(e).toMatchObject({ type: "error", message: expect.stringMatching(/credential in use/) });
    expect(thief.all.some((m) => m.type === "welcome")).toBe(false);
    thief.ws.send(joinMsg({ rejoin: "0".repeat(32) }));
    expect(await thief.next((m) => m.type === "error")).toMatchObject({ message: expect.stringMatching(/unknown credential/) });
    expect((await status()).workers.find((w) => w.id === welcome.workerId)?.state).toBe("active");

    // The signaling server accepts only ids the coordinator issued.
    expect(await signal("grid-made-up-id", "t0")).toBe(403);
    first.ws.close();
    await first.closed;
  });

  it("lets only the holder of a peer id's secret register it, also while the owner is away from signaling", async () => {
    const { c, welcome } = await joined("signaling-owner");
    const { c: other, welcome: otherWelcome } = await joined("other-session");
    expect(welcome.peerToken).toMatch(/^[0-9a-f]{32}$/);
    expect(otherWelcome.peerToken).not.toBe(welcome.peerToken);
    // The owner registers its id with its secret: the PeerJS server answers OPEN.
    const owner = await signal(welcome.peerId, welcome.peerToken);
    expect(owner).toBe("OPEN");
    // Another session cannot claim that id: no token, a wrong one, its own
    // secret, or the owner's session credential instead of the peer secret.
    const attempts = ["", "t0", otherWelcome.peerToken, welcome.credential, welcome.peerToken.slice(1), `${welcome.peerToken}0`];
    for (const t of attempts) expect(await signal(welcome.peerId, t), `token "${t}" while the owner is connected`).toBe(403);
    // The owner drops off signaling (a blip): its id is still refused to everyone else...
    await closeSignal(welcome.peerId);
    for (const t of attempts) expect(await signal(welcome.peerId, t), `token "${t}" while the owner is away`).toBe(403);
    // ...and the honest page comes back with its secret and is served again.
    expect(await signal(welcome.peerId, welcome.peerToken)).toBe("OPEN");
    await closeSignal(welcome.peerId);
    // The secret is bound to its id: the other session's secret does not open the owner's id, nor the reverse.
    expect(await signal(otherWelcome.peerId, welcome.peerToken)).toBe(403);
    expect(await signal(otherWelcome.peerId, otherWelcome.peerToken)).toBe("OPEN");
    await closeSignal(otherWelcome.peerId);
    // Once the worker has left, its id is refused even with the secret.
    c.ws.close();
    await c.closed;
    await waitUntil(async () => (await status()).workers.find((w) => w.id === welcome.workerId)?.state === "left");
    expect(await signal(welcome.peerId, welcome.peerToken)).toBe(403);
    other.ws.close();
    await other.closed;
  });

  it("serves no secret in the public status and stream", async () => {
    const { c, welcome } = await joined("secretive");
    const text = await (await fetch(`${server.url}/api/status`)).text();
    const ctrl = new AbortController();
    const stream = await fetch(`${server.url}/api/stream`, { signal: ctrl.signal });
    const reader = stream.body?.getReader();
    const first = reader ? new TextDecoder().decode((await reader.read()).value) : "";
    ctrl.abort();
    for (const body of [text, first]) {
      expect(body).toContain(welcome.workerId);
      expect(body).not.toContain(token);
      expect(body).not.toContain(welcome.credential);
      expect(body).not.toContain(welcome.peerId);
      expect(body).not.toContain(welcome.peerToken);
    }
    c.ws.close();
    await c.closed;
  });

  it("rate-limits a flood, drops the sender as misbehaving, counts it in the status and keeps serving", async () => {
    const { c, welcome } = await joined("flooder");
    for (let i = 0; i < 5000; i++) c.ws.send('{"type":"heartbeat"}');
    expect(await c.closed).toBe(1008);
    const rate = c.all.filter((m) => m.type === "error" && m.code === "rate-limited");
    expect(rate.length).toBeGreaterThan(0);
    expect(c.all.some((m) => m.type === "dropped" && m.reason === "misbehaving")).toBe(true);
    const s = await status();
    const w = s.workers.find((x) => x.id === welcome.workerId);
    expect(w?.state).toBe("dropped");
    expect(w?.dropReason).toMatch(/^misbehaving/);
    expect(w?.rejected["rate-limited"]).toBeGreaterThan(20);

    // A sender of garbage goes the same way; its reasons are counted per code.
    const { c: bad, welcome: badW } = await joined("garbage");
    for (let i = 0; i < 15; i++) bad.ws.send("not json");
    for (let i = 0; i < 10; i++) bad.ws.send(JSON.stringify({ type: "teleport" }));
    expect(await bad.closed).toBe(1008);
    const b = (await status()).workers.find((x) => x.id === badW.workerId);
    expect(b?.state).toBe("dropped");
    expect(b?.rejected).toMatchObject({ malformed: 15, "unknown-type": 6 });

    // Everyone else is still served: a new page joins and its reports are acknowledged.
    const { c: ok } = await joined("after");
    ok.ws.send(JSON.stringify({ type: "clock", clock: 1, minApplied: 0, loss: 1, stepMs: 5, batch: 8, examples: 8, bytesIn: 0, bytesOut: 0, peers: 0 }));
    expect((await ok.next((m) => m.type === "ack")).type).toBe("ack");
    ok.ws.close();
  });
});

describe("the token bucket", () => {
  it("lets a burst through, then exactly the rate", () => {
    let t = 0;
    const b = new TokenBucket(10, 5, () => t);
    let passed = 0;
    for (let i = 0; i < 100; i++) if (b.take()) passed++;
    expect(passed).toBe(5);
    t += 1000; // one second: 10 more, capped at the burst of 5
    passed = 0;
    for (let i = 0; i < 100; i++) if (b.take()) passed++;
    expect(passed).toBe(5);
    t += 300; // 3 tokens
    passed = 0;
    for (let i = 0; i < 100; i++) if (b.take()) passed++;
    expect(passed).toBe(3);
  });
});
