/**
 * GET /api/stream (coordinator/push.ts) on loopback with a stand-in job: one
 * `full` status on connect, then numbered deltas that rebuild the job's
 * status, nothing while nothing changes, and no timer left once the client goes.
 */
import { createServer, type Server } from "node:http";
import { afterEach, describe, expect, it } from "vitest";
import express from "express";
import { attachStatusStream } from "../../coordinator/push.ts";
import { applyDelta, jsonEqual, parseDelta, parseFull, type JsonObject } from "../../coordinator/console/delta.ts";
import type { JobRun } from "../../coordinator/job.ts";

interface Frame {
  event: string;
  data: string;
}

/** Reads SSE frames from a fetch body until `count` data frames arrived or `ms` passed. */
async function readFrames(body: ReadableStream<Uint8Array>, count: number, ms: number): Promise<Frame[]> {
  const reader = body.getReader();
  const decoder = new TextDecoder();
  const frames: Frame[] = [];
  let buffer = "";
  const deadline = Date.now() + ms;
  while (frames.length < count && Date.now() < deadline) {
    const chunk = await Promise.race([
      reader.read(),
      new Promise<null>((r) => setTimeout(() => r(null), Math.max(1, deadline - Date.now()))),
    ]);
    if (chunk === null || chunk.done) break;
    buffer += decoder.decode(chunk.value, { stream: true });
    let end: number;
    while ((end = buffer.indexOf("\n\n")) >= 0) {
      const block = buffer.slice(0, end);
      buffer = buffer.slice(end + 2);
      const event = /^event: (.*)$/m.exec(block)?.[1];
      const data = /^data: (.*)$/m.exec(block)?.[1];
      if (event !== undefined && data !== undefined) frames.push({ event, data });
    }
  }
  await reader.cancel();
  return frames;
}

let server: Server | null = null;

afterEach(async () => {
  const s = server;
  server = null;
  if (s) {
    s.closeAllConnections();
    await new Promise<void>((r) => s.close(() => r()));
  }
});

async function serve(status: () => JsonObject): Promise<string> {
  const app = express();
  attachStatusStream(app, { status } as unknown as JobRun);
  const s = createServer(app);
  server = s;
  await new Promise<void>((r) => s.listen(0, "127.0.0.1", () => r()));
  const addr = s.address();
  if (addr === null || typeof addr === "string") throw new Error("no port");
  return `http://127.0.0.1:${addr.port}/api/stream`;
}

describe("GET /api/stream", () => {
  it("sends the full status, then deltas that rebuild it, at most twice a second", async () => {
    let clock = 0;
    const loss: [number, number][] = [];
    const current = (): JsonObject => ({
      job: { name: "j", parameters: 1, state: "running" },
      clock: { min: clock, max: clock },
      workers: [{ id: "w1", state: "active", clock }],
      metrics: { trainLoss: loss, test: null },
      events: [],
    });
    const ticker = setInterval(() => {
      clock++;
      loss.push([clock, 1 / clock]);
    }, 100);
    try {
      const url = await serve(current);
      const t0 = Date.now();
      const res = await fetch(url);
      expect(res.headers.get("content-type")).toMatch(/^text\/event-stream/);
      const frames = await readFrames(res.body as ReadableStream<Uint8Array>, 4, 5000);
      const elapsed = Date.now() - t0;
      expect(frames.map((f) => f.event)).toEqual(["full", "delta", "delta", "delta"]);
      expect(elapsed).toBeGreaterThanOrEqual(3 * 500 - 100);

      const full = parseFull(JSON.parse(frames[0]?.data ?? "null"));
      expect(full).not.toBeNull();
      let state = full?.status ?? {};
      let seq = full?.seq ?? -1;
      for (const f of frames.slice(1)) {
        const d = parseDelta(JSON.parse(f.data));
        expect(d?.seq).toBe(seq + 1);
        if (d === null) return;
        seq = d.seq;
        state = applyDelta(state, d);
      }
      // The rebuilt status is one the job had: its loss series is a prefix of the live one.
      const rebuilt = state["metrics"] as { trainLoss: [number, number][] };
      expect(rebuilt.trainLoss.length).toBeGreaterThan(5);
      expect(jsonEqual(rebuilt.trainLoss, loss.slice(0, rebuilt.trainLoss.length))).toBe(true);
      expect((state["clock"] as { max: number }).max).toBe(rebuilt.trainLoss.length);
    } finally {
      clearInterval(ticker);
    }
  });

  it("stops taking snapshots once the last client is gone", async () => {
    let calls = 0;
    const url = await serve(() => {
      calls++;
      return { job: { name: "j", parameters: 1, state: "running" }, workers: [], events: [], n: calls };
    });
    const res = await fetch(url);
    const frames = await readFrames(res.body as ReadableStream<Uint8Array>, 2, 3000); // cancels the body: the client goes
    expect(frames.map((f) => f.event)).toEqual(["full", "delta"]);
    await new Promise((r) => setTimeout(r, 300));
    const after = calls;
    await new Promise((r) => setTimeout(r, 1200));
    expect(calls).toBe(after);
  });

  it("sends nothing but the full status while nothing changes", async () => {
    const fixed: JsonObject = { job: { name: "j", parameters: 1, state: "paused" }, workers: [], events: [] };
    const url = await serve(() => fixed);
    const res = await fetch(url);
    const frames = await readFrames(res.body as ReadableStream<Uint8Array>, 2, 1600);
    expect(frames.map((f) => f.event)).toEqual(["full"]);
  });
});
