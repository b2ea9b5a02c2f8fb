/**
 * The console's live feed: `GET /api/stream`, server-sent events (public and
 * read-only, like /api/status).
 *
 * Wire protocol (text/event-stream):
 *
 *   retry: 2000                                  reconnect delay for EventSource
 *   event: full   data: {"seq": S, "status": <the /api/status JSON>}
 *   event: delta  data: {"seq": S+1, ...}        see coordinator/console/delta.ts for the fields
 *   : keepalive                                  a comment, every 15 s when nothing else was sent
 *
 * A connection gets one `full` first, then `delta`s, each numbered one more
 * than the message before it on that connection. A delta applies to the status
 * of the message before it; a client that sees a gap in `seq` (it never
 * should) reconnects and starts again from a `full`.
 *
 * Pace: one status snapshot every 500 ms at most (so at most 2 deltas a second),
 * computed once and shared by all connected consoles; no snapshot is taken
 * while nobody is connected, and a delta with no change is not sent. A client
 * that does not read (more than 1 MiB queued) is disconnected; its
 * EventSource reconnects and gets a fresh `full`.
 */
import type { Express, Request, Response } from "express";
import type { JobRun } from "./job.ts";
import { diffStatus, isEmptyDelta, type JsonObject } from "./console/delta.ts";

/** Snapshot period: at most two deltas a second. */
export const STREAM_INTERVAL_MS = 500;
const KEEPALIVE_MS = 15_000;
const MAX_CLIENTS = 200;
const MAX_QUEUED_BYTES = 1 << 20;

/** The status as plain JSON, detached from the job's live arrays (status() shares them). */
function snapshot(run: Pick<JobRun, "status">): JsonObject {
  return JSON.parse(JSON.stringify(run.status())) as JsonObject;
}

/** Registers `GET /api/stream` on `app`; call before any catch-all /api handler. */
export function attachStatusStream(app: Express, run: Pick<JobRun, "status">): void {
  const clients = new Set<Response>();
  let last: JsonObject | null = null;
  let seq = 0;
  let timer: ReturnType<typeof setInterval> | null = null;
  let lastWriteAt = 0;

  const write = (res: Response, chunk: string): void => {
    if (res.writableLength > MAX_QUEUED_BYTES) {
      clients.delete(res);
      res.end();
      return;
    }
    res.write(chunk);
  };

  const tick = (): void => {
    if (clients.size === 0 || last === null) {
      stop();
      return;
    }
    const next = snapshot(run);
    const delta = diffStatus(last, next, seq + 1);
    last = next;
    const now = Date.now();
    if (isEmptyDelta(delta)) {
      if (now - lastWriteAt >= KEEPALIVE_MS) {
        lastWriteAt = now;
        for (const res of [...clients]) write(res, ": keepalive\n\n");
      }
      return;
    }
    seq = delta.seq;
    lastWriteAt = now;
    const frame = `event: delta\ndata: ${JSON.stringify(delta)}\n\n`;
    for (const res of [...clients]) write(res, frame);
  };

  const stop = (): void => {
    if (timer !== null) clearInterval(timer);
    timer = null;
    last = null;
  };

  app.get("/api/stream", (req: Request, res: Response) => {
    if (clients.size >= MAX_CLIENTS) {
      res.status(503).set("Retry-After", "10").json({ error: "too many consoles connected" });
      return;
    }
    res.status(200).set({
      "Content-Type": "text/event-stream; charset=utf-8",
      "Cache-Control": "no-store",
      Connection: "keep-alive",
      "X-Accel-Buffering": "no",
    });
    res.flushHeaders();
    req.socket.setNoDelay(true);
    if (last === null) last = snapshot(run);
    clients.add(res);
    res.write(`retry: 2000\nevent: full\ndata: ${JSON.stringify({ seq, status: last })}\n\n`);
    if (timer === null) {
      timer = setInterval(tick, STREAM_INTERVAL_MS);
      timer.unref();
    }
    const drop = (): void => {
      clients.delete(res);
      if (clients.size === 0) stop();
    };
    // The response's "close" fires when the client goes (the request's may fire once its empty body is read).
    res.on("close", drop);
    res.on("error", drop);
  });
}
