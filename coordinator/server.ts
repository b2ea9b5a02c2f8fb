/**
 * The coordinator's network face on one port: HTTP (the built pages from
 * dist/, the JSON API, data shards), the control WebSocket for volunteer pages
 * at /ws, and PeerJS signaling at /peerjs (a dumb relay that knows nothing of
 * jobs; it only refuses a peer id unless the coordinator issued it and the
 * socket presents the id's secret token, coordinator/peer-ids.ts).
 */
import { createServer, type IncomingMessage, type Server } from "node:http";
import type { Duplex } from "node:stream";
import { Socket } from "node:net";
import { existsSync } from "node:fs";
import { join, resolve } from "node:path";
import { timingSafeEqual } from "node:crypto";
import express, { type Express, type Request, type Response } from "express";
import { WebSocketServer, type WebSocket, type RawData } from "ws";
import { ExpressPeerServer } from "peer";
import { z } from "zod";
import { CONSISTENCY_MODES, gridJobId, MAX_CONTROL_MESSAGE_BYTES, parseClientMessage, type RejectCode, type ServerMessage } from "./protocol.ts";
import type { JobRun } from "./job.ts";
import { attachStatusStream } from "./push.ts";
import { JobGrid } from "./jobs.ts";
import { CONTROL_RATE, RejectionBook, TokenBucket } from "./ratelimit.ts";
import { isolationMiddleware } from "./isolation.ts";

/**
 * What the server needs of a job's run: JobRun (data-parallel jobs) or
 * MfRun (job mf, coordinator/mf/run.ts), which may add routes under /api.
 */
export type GridRun = Pick<
  JobRun,
  "status" | "model" | "drop" | "consistency" | "setConsistency" | "control" | "state" | "countServed" | "onBinary" | "isLive" | "join" | "onMessage" | "remove" | "ownsPeerId" | "tick"
> & {
  readonly job: { readonly name: string; readonly parameters: number };
  shard(id: number): ReturnType<JobRun["shard"]>;
  mount?(app: Express): void;
  /** Count a rejected message of a joined worker (per code, in the status). */
  countRejection?(id: string, code: RejectCode): void;
  /** The job is ending (target reached or stopped): its workers drain and report digests. */
  isFinishing?(): boolean;
  /** Its most advanced worker's clock and its max clock (0: none): the grid's estimate of when it ends. */
  progress?(): { clock: number; maxClock: number };
  /** The checkpoint this run resumed from (GET /api/checkpoint), for jobs that resume. */
  baseModel?(): Uint8Array | null;
  /** Whether a page presenting this credential is one of this run's volunteers (this incarnation's or an earlier one's). */
  knowsCredential?(credential: string): boolean;
};

export interface ServerOptions {
  readonly host: string;
  readonly port: number;
  readonly token: string;
  readonly distDir: string;
  /** One job (routed as before), or `grid`: several (coordinator/jobs.ts). */
  readonly run?: GridRun;
  readonly grid?: JobGrid;
  readonly log?: (line: string) => void;
  /** COOP/COEP on every response (`--cross-origin-isolation on`; coordinator/isolation.ts). */
  readonly crossOriginIsolation?: boolean;
}

export interface RunningServer {
  readonly url: string;
  readonly port: number;
  close(): Promise<void>;
}

const TICK_MS = 500;

/** `job`: which job of the grid (default: the default job). */
const jobField = { job: gridJobId.optional() };
const controlSchema = z.discriminatedUnion("action", [
  z.object({ action: z.enum(["pause", "resume", "stop", "cancel"]), ...jobField }),
  z.object({ action: z.literal("drop"), worker: z.string().regex(/^w[0-9]{1,9}$/), ...jobField }),
  z.object({
    action: z.literal("set"),
    consistency: z.enum(CONSISTENCY_MODES).optional(),
    staleness: z.number().int().min(0).max(1000).optional(),
    ...jobField,
  }),
]);

function tokenMatches(header: string | undefined, token: string): boolean {
  if (!header?.startsWith("Bearer ")) return false;
  const given = Buffer.from(header.slice(7));
  const want = Buffer.from(token);
  return given.length === want.length && timingSafeEqual(given, want);
}

function rawToBuffer(data: RawData): Buffer {
  if (Buffer.isBuffer(data)) return data;
  if (Array.isArray(data)) return Buffer.concat(data);
  return Buffer.from(data);
}

export async function startServer(opts: ServerOptions): Promise<RunningServer> {
  const log = opts.log ?? (() => {});
  const grid = opts.grid ?? new JobGrid({ multi: false, log });
  if (!opts.grid) {
    if (!opts.run) throw new Error("startServer needs a run or a grid");
    grid.add({ id: "default", weight: 1, minWorkers: 0, maxWorkers: 100_000, priority: 0 }, opts.run);
  }
  /** The default job: /api/status, /api/model, /api/stream, the console. */
  const run = grid.defaultJob.run;
  const app = express();
  app.disable("x-powered-by");
  if (opts.crossOriginIsolation === true) app.use(isolationMiddleware(true));
  const http: Server = createServer(app);
  const dist = resolve(opts.distDir);

  // ------------------------------------------------------------ PeerJS signaling
  let peerWss: WebSocketServer | null = null;
  const peerApp = ExpressPeerServer(http, {
    path: "/",
    key: "peerjs",
    allow_discovery: false,
    createWebSocketServer: () => {
      peerWss = new WebSocketServer({ noServer: true, maxPayload: 64 * 1024 });
      return peerWss;
    },
  });
  app.use("/peerjs", peerApp);

  // ------------------------------------------------------------ HTTP API
  app.get("/api/status", (_req, res) => {
    res.set("Cache-Control", "no-store").json(run.status());
  });
  app.get("/api/jobs", (_req, res) => {
    res.set("Cache-Control", "no-store").json(grid.list());
  });
  app.get("/api/jobs/:id/status", (req, res) => {
    const s = grid.jobStatus(req.params["id"] ?? "");
    if (!s) {
      res.status(404).json({ error: "no such job" });
      return;
    }
    res.set("Cache-Control", "no-store").json(s);
  });
  app.post("/api/jobs", express.json({ limit: "16kb" }), (req: Request, res: Response) => {
    if (!tokenMatches(req.headers.authorization, opts.token)) {
      res.status(401).json({ error: "missing or wrong console token" });
      return;
    }
    const r = grid.submit(req.body);
    if (!r.ok) {
      res.status(r.status).json({ error: r.error });
      return;
    }
    res.status(201).json(grid.jobStatus(r.job.id));
  });
  app.get("/api/model", (_req, res) => {
    const body = run.model();
    if (!body) {
      res.status(404).json({ error: "no model evaluated yet" });
      return;
    }
    res
      .set({
        "Content-Type": "application/octet-stream",
        "Content-Disposition": `attachment; filename="${run.job.name}.bin"`,
        "X-Grid-Job": run.job.name,
        "X-Grid-Parameters": String(run.job.parameters),
        "X-Grid-Layout": "u32 magic 'GMDL', u32 clock, f32[parameters] little-endian",
      })
      .send(Buffer.from(body.buffer, body.byteOffset, body.byteLength));
  });
  // The checkpoint a job resumed from: the default job's, or one job's of a grid (its workers load it).
  app.get(["/api/checkpoint", "/api/jobs/:id/checkpoint"], (req, res) => {
    const id: unknown = req.params["id"];
    const of = typeof id !== "string" ? run : grid.job(id)?.run;
    if (!of) {
      res.status(404).json({ error: "no such job" });
      return;
    }
    const body = of.baseModel?.() ?? null;
    if (!body) {
      res.status(404).json({ error: "this run did not resume from a checkpoint" });
      return;
    }
    res
      .set({ "Content-Type": "application/octet-stream", "Cache-Control": "no-store" })
      .send(Buffer.from(body.buffer, body.byteOffset, body.byteLength));
  });
  app.post("/api/control", express.json({ limit: "4kb" }), (req: Request, res: Response) => {
    if (!tokenMatches(req.headers.authorization, opts.token)) {
      res.status(401).json({ error: "missing or wrong console token" });
      return;
    }
    const parsed = controlSchema.safeParse(req.body);
    if (!parsed.success) {
      res.status(400).json({ error: parsed.error.issues[0]?.message ?? "invalid control" });
      return;
    }
    const c = parsed.data;
    const target = c.job === undefined ? grid.defaultJob : grid.job(c.job);
    if (!target) {
      res.status(404).json({ error: `no job ${c.job ?? ""}` });
      return;
    }
    const run = target.run;
    if (c.action === "cancel") {
      if (!grid.multi) run.control("stop");
      else if (!grid.cancel(target.id)) {
        res.status(409).json({ error: `job ${target.id} is over` });
        return;
      }
    } else if (c.action === "drop") {
      if (!run.drop(c.worker, "organizer", "dropped by the organizer", null)) {
        res.status(404).json({ error: `no active worker ${c.worker}` });
        return;
      }
    } else if (c.action === "set") {
      const mode = c.consistency ?? run.consistency.mode;
      const staleness = c.staleness ?? run.consistency.staleness;
      try {
        run.setConsistency({ mode, staleness });
      } catch (e) {
        if (!(e instanceof RangeError)) throw e;
        res.status(400).json({ error: e.message });
        return;
      }
    } else {
      run.control(c.action);
      grid.controlled(target.id, c.action === "pause" ? "was paused" : c.action === "resume" ? "was resumed" : "was stopped");
    }
    res.json({ ok: true, job: target.id, state: run.state, consistency: run.consistency });
  });
  attachStatusStream(app, run);
  run.mount?.(app);
  app.use("/api", (_req, res) => {
    res.status(404).json({ error: "no such endpoint" });
  });

  // ------------------------------------------------------------ data shards
  app.get("/data/:job/shards/:id", (req, res) => {
    const id = Number(req.params["id"]);
    const owner = grid.byDataKey(req.params["job"] ?? "");
    const shard = owner && Number.isInteger(id) ? owner.run.shard(id) : undefined;
    if (!owner || !shard) {
      res.status(404).json({ error: "no such shard" });
      return;
    }
    owner.run.countServed(shard.bytes.byteLength);
    res
      .set({
        "Content-Type": "application/octet-stream",
        ETag: `"${shard.ref.hash}"`,
        "Cache-Control": "public, max-age=3600",
      })
      .send(Buffer.from(shard.bytes.buffer, shard.bytes.byteOffset, shard.bytes.byteLength));
  });

  // ------------------------------------------------------------ pages
  const consolePage = join(dist, "coordinator/console/index.html");
  app.get(["/console", "/console/"], (_req, res) => {
    if (!existsSync(consolePage)) {
      res.status(503).send("The client is not built: run `npm run build`.");
      return;
    }
    res.sendFile(consolePage);
  });
  app.use(express.static(dist, { index: "index.html" }));
  app.use((_req, res) => {
    res.status(404).send("Not found");
  });

  // ------------------------------------------------------------ control WebSocket
  const controlWss = new WebSocketServer({
    noServer: true,
    // Oversized text is refused with a reason by the parser; only far larger
    // frames close the socket.
    maxPayload: Math.max(4 * MAX_CONTROL_MESSAGE_BYTES, grid.maxParameters() * 4 + 64),
  });
  controlWss.on("connection", (ws: WebSocket) => {
    let joined = false;
    // Per connection: a token bucket against floods, rejections by code; past
    // MAX_REJECTIONS the sender is dropped as misbehaving and the socket closed.
    const rejections = new RejectionBook<RejectCode>();
    const bucket = new TokenBucket(CONTROL_RATE.perSecond, CONTROL_RATE.burst);
    let closing = false;
    const send = Object.assign(
      (m: ServerMessage): void => {
        if (ws.readyState === ws.OPEN) ws.send(serialize(m), { binary: false });
      },
      { together: corked(ws) },
    );
    const vid = grid.connect(send);
    const reject = (code: RejectCode, message: string): void => {
      grid.countRejection(vid, code);
      send(rejectMessage(code, message));
      if (!rejections.add(code)) return;
      closing = true;
      grid.drop(vid, `${rejections.total} rejected messages`);
      ws.close(1008, "too many rejected messages");
    };
    ws.on("error", () => {});
    ws.on("message", (data: RawData, isBinary: boolean) => {
      if (closing) return;
      if (!bucket.take()) {
        reject("rate-limited", `more than ${CONTROL_RATE.perSecond} messages a second`);
        return;
      }
      const buf = rawToBuffer(data);
      if (isBinary) {
        if (!joined) {
          reject("not-joined", "join first");
          return;
        }
        const err = grid.onBinary(vid, new Uint8Array(buf.buffer, buf.byteOffset, buf.byteLength));
        if (err !== null) reject("malformed", err);
        return;
      }
      const parsed = parseClientMessage(buf.toString("utf8"));
      if (!parsed.ok) {
        reject(parsed.code, parsed.message);
        return;
      }
      const msg = parsed.value;
      if (msg.type === "join") {
        const live = grid.membership(vid);
        if (live !== null && grid.isLive(vid)) {
          reject("already-joined", `already joined as ${live.worker}`);
          return;
        }
        const r = grid.join(vid, msg);
        if (!r.ok) {
          send(rejectMessage("job-over", r.reason));
          return;
        }
        joined = true;
        return;
      }
      if (!joined) {
        reject("not-joined", "join first");
        return;
      }
      grid.onMessage(vid, msg);
    });
    ws.on("close", () => {
      grid.disconnect(vid);
    });
  });

  http.on("upgrade", (req: IncomingMessage, socket: Duplex, head: Buffer) => {
    const url = new URL(req.url ?? "/", "http://localhost");
    if (url.pathname === "/ws") {
      controlWss.handleUpgrade(req, socket, head, (ws) => controlWss.emit("connection", ws, req));
      return;
    }
    if (url.pathname.startsWith("/peerjs") && peerWss) {
      const id = url.searchParams.get("id") ?? "";
      const peerToken = url.searchParams.get("token") ?? "";
      if (!grid.ownsPeerId(id, peerToken)) {
        socket.end("HTTP/1.1 403 Forbidden\r\nConnection: close\r\n\r\n");
        return;
      }
      const wss = peerWss;
      wss.handleUpgrade(req, socket, head, (ws) => wss.emit("connection", ws, req));
      return;
    }
    socket.end("HTTP/1.1 404 Not Found\r\nConnection: close\r\n\r\n");
  });

  const timer = setInterval(() => grid.tick(TICK_MS), TICK_MS);

  await new Promise<void>((resolvePromise, reject) => {
    http.once("error", reject);
    http.listen(opts.port, opts.host, () => {
      http.off("error", reject);
      resolvePromise();
    });
  });
  const addr = http.address();
  const port = typeof addr === "object" && addr ? addr.port : opts.port;
  const hostForUrl = opts.host === "0.0.0.0" || opts.host === "::" ? "127.0.0.1" : opts.host.includes(":") ? `[${opts.host}]` : opts.host;
  const url = `http://${hostForUrl}:${port}`;
  log(`listening on ${url}`);

  return {
    url,
    port,
    close: async () => {
      clearInterval(timer);
      for (const ws of controlWss.clients) ws.terminate();
      if (peerWss) for (const ws of (peerWss as WebSocketServer).clients) ws.terminate();
      http.closeAllConnections();
      await new Promise<void>((r) => http.close(() => r()));
    },
  };
}

/**
 * Runs `sends` with the connection's TCP socket corked, so the frames they
 * write leave in one write system call (ws writes each frame's header and
 * payload separately and corks only around one frame). The socket is ws's
 * internal `_socket`; without it the sends go out one by one as before.
 */
function corked(ws: WebSocket): (sends: () => void) => void {
  return (sends) => {
    const socket: unknown = Reflect.get(ws, "_socket");
    if (!(socket instanceof Socket) || socket.destroyed) {
      sends();
      return;
    }
    socket.cork();
    try {
      sends();
    } finally {
      socket.uncork();
    }
  };
}

/**
 * UTF-8 JSON of a server message (sent as a text frame), computed once when
 * the same message object is sent to many sockets in one synchronous loop (a
 * view broadcast to N workers was N stringifications of an N-member view).
 * The one-entry memo is cleared at the next microtask, so an object mutated
 * and re-sent later is serialized afresh.
 */
let memo: { msg: ServerMessage; bytes: Buffer } | null = null;
function serialize(m: ServerMessage): Buffer {
  // An ack goes to one socket only: no memo (and no microtask per report).
  if (m.type === "ack") return Buffer.from(JSON.stringify(m), "utf8");
  if (memo !== null && memo.msg === m) return memo.bytes;
  const bytes = Buffer.from(JSON.stringify(m), "utf8");
  if (memo === null) queueMicrotask(() => (memo = null));
  memo = { msg: m, bytes };
  return bytes;
}

function rejectMessage(code: import("./protocol.ts").RejectCode, message: string): ServerMessage {
  return { type: "error", code, message: message.slice(0, 200) };
}
