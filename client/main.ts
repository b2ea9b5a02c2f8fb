/**
 * The volunteer page: joins the coordinator over the control WebSocket, runs
 * the training worker (comlink), carries updates between the worker and the
 * peers (RTCPeerConnection exists only in pages, not in workers), and shows
 * what it is doing. URL parameters: ?coordinator=URL ?backend=webgpu|cpu
 * ?slowdown=F ?name=LABEL.
 */
import * as Comlink from "comlink";
import {
  encodeModelUpload,
  parseServerMessage,
  type ClientMessage,
  type ViewMessage,
  type WelcomeMessage,
} from "../coordinator/protocol.ts";
import { JOBS } from "./jobs/registry.ts";
import { FrameType, decodeResendRequestPayload, decodeSnapshotPayload, decodeUpdatePayload, encodeResendRequestPayload, encodeSnapshotPayload, encodeUpdatePayload, type ReceivedMessage } from "./peer/frames.ts";
import { PeerTransport } from "./peer/transport.ts";
import type { TrainingWorkerApi, WorkerReport } from "./worker.ts";
import { PageView } from "./ui.ts";

const params = new URLSearchParams(location.search);
const coordinator = (params.get("coordinator") ?? location.origin).replace(/\/+$/, "");
const forced = params.get("backend");
const backendParam = forced === "webgpu" || forced === "cpu" ? forced : null;
const slowdownRaw = Number(params.get("slowdown") ?? "1");
const slowdown = Number.isFinite(slowdownRaw) && slowdownRaw >= 1 ? slowdownRaw : 1;
const name = (params.get("name") ?? "").slice(0, 60);

const ui = new PageView(document);

/** What tests and curious volunteers can read from the console: `window.grid`. */
interface PageState {
  workerId: string | null;
  state: string;
  clock: number;
  peers: number;
  bytesIn: number;
  bytesOut: number;
  backend: string;
  digest: unknown;
  log: string[];
}
const pageState: PageState = { workerId: null, state: "starting", clock: 0, peers: 0, bytesIn: 0, bytesOut: 0, backend: "", digest: null, log: [] };
(window as unknown as { grid: PageState }).grid = pageState;

function log(line: string): void {
  pageState.log.push(line);
  if (pageState.log.length > 200) pageState.log.shift();
  ui.log(line);
}

function num(id: string): number {
  return Number(id.slice(1));
}

/** The job the coordinator runs (public status), so the right kernels are prepared before joining. */
async function fetchJobName(): Promise<string> {
  let res: Response;
  try {
    res = await fetch(`${coordinator}/api/status`, { cache: "no-store" });
  } catch {
    throw new Error(`cannot reach the coordinator at ${coordinator}`);
  }
  if (!res.ok) throw new Error(`the coordinator answered HTTP ${res.status}`);
  const body: unknown = await res.json();
  const name = typeof body === "object" && body !== null && "job" in body && typeof body.job === "object" && body.job !== null && "name" in body.job ? body.job.name : null;
  if (typeof name !== "string") throw new Error("the coordinator's status has no job name");
  return name;
}

async function main(): Promise<void> {
  if (backendParam !== "cpu" && !("gpu" in navigator)) {
    ui.notice("This browser has no WebGPU (navigator.gpu is missing): training runs on the CPU instead, more slowly.");
  }
  const worker = Comlink.wrap<TrainingWorkerApi>(new Worker(new URL("./worker.ts", import.meta.url), { type: "module" }));
  ui.setState("asking the coordinator which job runs");
  const jobName = await fetchJobName();
  const job = JOBS[jobName];
  if (!job) throw new Error(`this page does not know the job "${jobName}": reload to get the current version`);
  ui.setState("preparing the GPU");
  const init = await worker.init(backendParam, job.name, 512);
  pageState.backend = init.backend;
  ui.setAdapter(`${init.backend} · ${init.kernel} · ${init.adapter}`);
  if (init.fallbackReason && backendParam !== "cpu") {
    ui.notice(`WebGPU is not available (${init.fallbackReason}); training on the CPU.`);
  }

  const wsUrl = coordinator.replace(/^http/, "ws") + "/ws";
  const ws = new WebSocket(wsUrl);
  ws.binaryType = "arraybuffer";
  const send = (m: ClientMessage): void => {
    if (ws.readyState === WebSocket.OPEN) ws.send(JSON.stringify(m));
  };

  let welcome: WelcomeMessage | null = null;
  let view: ViewMessage | null = null;
  let transport: PeerTransport | null = null;
  let started = false;
  let snapshotLoaded = false;
  let stopped = false;
  let paused = false;
  const peerOf = new Map<string, string>(); // peer id → worker id

  const heartbeat = setInterval(() => send({ type: "heartbeat" }), 1000);

  const onPeerMessage = (fromPeer: string, msg: ReceivedMessage): void => {
    if (!welcome) return;
    const w = welcome;
    switch (msg.type) {
      case FrameType.UPDATE: {
        const d = decodeUpdatePayload(msg.payload, w.job.parameters);
        if (!d.ok) {
          log(`dropped an update from ${fromPeer}: ${d.reason}`);
          return;
        }
        const buf = d.value.buffer as ArrayBuffer;
        void worker.receive(`w${msg.sender}`, msg.clock, Comlink.transfer(buf, [buf]));
        return;
      }
      case FrameType.SNAPSHOT_REQUEST:
        void worker.snapshot().then((s) => {
          if (!s || !transport) return;
          const vectorClock = new Map(Object.entries(s.vector).map(([id, c]) => [num(id), c] as [number, number]));
          void transport.send(fromPeer, FrameType.SNAPSHOT, num(w.workerId), 0, encodeSnapshotPayload({ vectorClock, params: new Float32Array(s.params) }));
        });
        return;
      case FrameType.SNAPSHOT: {
        if (snapshotLoaded) return;
        const d = decodeSnapshotPayload(msg.payload, w.job.parameters);
        if (!d.ok) {
          log(`bad snapshot from ${fromPeer}: ${d.reason}`);
          return;
        }
        snapshotLoaded = true;
        const vector: Record<string, number> = {};
        for (const [k, c] of d.value.vectorClock) vector[`w${k}`] = c;
        const buf = d.value.params.buffer as ArrayBuffer;
        void worker.loadSnapshot(Comlink.transfer(buf, [buf]), vector);
        return;
      }
      case FrameType.RESEND_REQUEST: {
        const d = decodeResendRequestPayload(msg.payload);
        if (!d.ok) return;
        const target = `w${d.value.target}`;
        void worker.retained(target, d.value.fromClock, Number.MAX_SAFE_INTEGER).then((list) => {
          for (const u of list) void transport?.send(fromPeer, FrameType.UPDATE, d.value.target, u.clock, new Uint8Array(u.buffer));
        });
        return;
      }
    }
  };

  const requestSnapshot = (): void => {
    if (snapshotLoaded || !transport || !welcome) return;
    const open = transport.openPeers();
    const pick = open[Math.floor(Math.random() * open.length)];
    if (pick) void transport.send(pick, FrameType.SNAPSHOT_REQUEST, num(welcome.workerId), 0, new Uint8Array(0));
  };

  const applyView = (v: ViewMessage): void => {
    view = v;
    if (!welcome) return;
    const peers = new Map<string, number>();
    peerOf.clear();
    for (const m of v.active) {
      peerOf.set(m.peerId, m.id);
      if (m.id !== welcome.workerId) peers.set(m.peerId, num(m.id));
    }
    transport?.setPeers(peers);
    ui.setView(v, welcome.workerId);
    if (v.state === "done") ui.setState("done: the job is finished, thank you");
  };

  const callbacks = {
    update(clock: number, buffer: ArrayBuffer): void {
      if (!welcome || !transport) return;
      void transport.broadcast(FrameType.UPDATE, num(welcome.workerId), clock, encodeUpdatePayload(new Float32Array(buffer)));
    },
    report(r: WorkerReport): void {
      pageState.clock = r.clock;
      pageState.state = r.state;
      pageState.peers = transport?.connectedCount ?? 0;
      pageState.bytesIn = transport?.bytesIn ?? 0;
      pageState.bytesOut = transport?.bytesOut ?? 0;
      ui.setReport(r, pageState.peers, pageState.bytesIn, pageState.bytesOut, paused);
      send({
        type: "clock",
        clock: r.clock,
        minApplied: r.minApplied,
        loss: r.loss,
        stepMs: r.stepMs,
        batch: r.batch,
        examples: r.examples,
        bytesIn: pageState.bytesIn,
        bytesOut: pageState.bytesOut,
        peers: pageState.peers,
        stalenessHist: r.stalenessHist,
      });
    },
    model(clock: number, buffer: ArrayBuffer): void {
      if (ws.readyState === WebSocket.OPEN) ws.send(encodeModelUpload(clock, new Float32Array(buffer)));
    },
    final(clock: number): void {
      send({ type: "final", clock });
    },
    digest(d: { sum: number; l2: number; proj: number[] }, vector: Record<string, number>): void {
      pageState.digest = d;
      send({ type: "digest", digest: d, vector });
      ui.setState("done: replica digest reported");
    },
    missing(id: string, fromClock: number): void {
      if (!transport) return;
      void transport.broadcast(FrameType.RESEND_REQUEST, welcome ? num(welcome.workerId) : 0, 0, encodeResendRequestPayload({ target: num(id), fromClock }));
    },
    log,
  };

  ws.addEventListener("open", () => {
    ui.setState("joining the job");
    send({ type: "join", ...(name ? { name } : {}), backend: init.backend, kernel: init.kernel, adapter: init.adapter });
  });
  ws.addEventListener("close", () => {
    clearInterval(heartbeat);
    if (!stopped) ui.setState("disconnected from the coordinator (reload the page to rejoin)");
  });
  ws.addEventListener("message", (ev: MessageEvent) => {
    if (typeof ev.data !== "string") return;
    const parsed = parseServerMessage(ev.data);
    if (!parsed.ok) {
      log(`ignored a bad message from the coordinator: ${parsed.message}`);
      return;
    }
    const m = parsed.value;
    switch (m.type) {
      case "welcome": {
        welcome = m;
        pageState.workerId = m.workerId;
        ui.setWelcome(m);
        const w = m;
        transport = new PeerTransport({
          coordinator,
          peerId: m.peerId,
          selfNumber: num(m.workerId),
          iceServers: m.iceServers,
          maxMessageBytes: m.job.parameters * 4 + 1024 * 1024,
          onMessage: onPeerMessage,
          onPeerOpen: (p) => {
            log(`peer ${peerOf.get(p) ?? p} connected`);
            // Ask the new peer for its own updates this replica lacks (some
            // may have been sent before this link was open).
            const wid = peerOf.get(p);
            if (wid) {
              void worker.vectorOf(wid).then((v) => {
                void transport?.send(p, FrameType.RESEND_REQUEST, num(w.workerId), 0, encodeResendRequestPayload({ target: num(wid), fromClock: v }));
              });
            }
            if (w.needsSnapshot && !snapshotLoaded) requestSnapshot();
          },
          onPeerLost: (p, why) => log(`peer ${peerOf.get(p) ?? p} lost: ${why}`),
          log,
        });
        transport.opened.catch((e: unknown) => log(`signaling failed: ${e instanceof Error ? e.message : String(e)}`));
        if (m.needsSnapshot) {
          const retry = setInterval(() => (snapshotLoaded ? clearInterval(retry) : requestSnapshot()), 3000);
        }
        return;
      }
      case "assign":
        void worker.assign(m);
        ui.setShards(m.shards.length, m.shards.reduce((s, x) => s + x.bytes, 0));
        return;
      case "view":
        applyView(m);
        if (!started && welcome) {
          started = true;
          ui.setState("training");
          void worker.start(coordinator, welcome, m, slowdown, Comlink.proxy(callbacks));
        } else {
          void worker.setView(m);
        }
        return;
      case "finish":
        ui.setState(`finishing: ${m.reason}`);
        void worker.finish();
        return;
      case "drain":
        void worker.drain(m.target);
        return;
      case "ack":
        ui.setGridClock(m.min, m.max, m.active);
        return;
      case "error":
        log(`coordinator: ${m.code}: ${m.message}`);
        if (m.code === "job-over") ui.setState(`not joined: ${m.message}`);
        if (m.code === "dropped") {
          stopped = true;
          void worker.finish();
          ui.setState(`dropped: ${m.message}`);
        }
        return;
    }
  });

  ui.onPause(() => {
    paused = !paused;
    void worker.setPaused(paused);
    send({ type: "paused", paused });
    ui.setPaused(paused);
  });
  ui.onStop(() => {
    stopped = true;
    send({ type: "leave" });
    void worker.finish();
    transport?.destroy();
    ws.close();
    clearInterval(heartbeat);
    ui.setState("stopped: this page no longer uses your machine");
    ui.setPaused(true);
  });
  void view;
}

main().catch((e: unknown) => {
  const msg = e instanceof Error ? e.message : String(e);
  ui.setState(`error: ${msg}`);
  log(`error: ${msg}`);
});
