/**
 * The volunteer page's glue for job mf (client/main.ts hands over to it when
 * the coordinator runs `mf`): joins over /ws, keeps the peer transport,
 * passes column blocks arriving from peers (MF_BLOCK frames) to the mf Web
 * Worker, and runs each `mf-step` with the shared step loop (loop.ts), which
 * fetches checkpoints over HTTP, uploads them over /ws and hands column
 * blocks to the next worker peer to peer.
 */
import * as Comlink from "comlink";
import { parseServerMessage, mfProblemSchema, type ClientMessage, type MfStepMessage, type WelcomeMessage } from "../../coordinator/protocol.ts";
import { FrameType, type ReceivedMessage } from "../peer/frames.ts";
import { PeerTransport } from "../peer/transport.ts";
import { every } from "../pulse.ts";
import type { PageView } from "../ui.ts";
import { runStep, type MfIo, type TrainerPort } from "./loop.ts";
import { colBlockFloats, rowBlockFloats, type MfConfig } from "./problem.ts";
import { decodeBlock, encodeBlock, type FactorBlock } from "./wire.ts";
import type { MfWorkerApi } from "./worker.ts";

export interface MfPageContext {
  readonly coordinator: string;
  readonly backend: "webgpu" | "cpu" | null;
  readonly name: string;
  readonly ui: PageView;
  readonly log: (line: string) => void;
}

/** What tests and curious volunteers read as `window.grid` on an mf page. */
interface MfPageState {
  job: "mf";
  workerId: string | null;
  state: string;
  subEpoch: number;
  blocksDone: number;
  rows: number[];
  modelBytes: number;
  peakModelBytes: number;
  backend: string;
  kernel: string;
  cpuMs: number | null;
  gpuMs: number | null;
  maxRelDiff: number | null;
  bytesIn: number;
  bytesOut: number;
  vFrom: { peer: number; local: number; checkpoint: number };
  log: string[];
}

const PEER_WAIT_MS = 3000;
/** Delays between attempts to reach a lost coordinator: doubling from the first to the last. */
const REDIAL_MIN_MS = 1000;
const REDIAL_MAX_MS = 10_000;

function num(id: string): number {
  return Number(id.slice(1));
}

async function fetchProblem(coordinator: string): Promise<MfConfig> {
  const res = await fetch(`${coordinator}/api/status`, { cache: "no-store" });
  if (!res.ok) throw new Error(`the coordinator answered HTTP ${res.status}`);
  const body: unknown = await res.json();
  const mf = typeof body === "object" && body !== null && "mf" in body ? body.mf : null;
  const problem = typeof mf === "object" && mf !== null && "problem" in mf ? mf.problem : null;
  const parsed = mfProblemSchema.safeParse(problem);
  if (!parsed.success) throw new Error("the coordinator's status has no valid mf problem");
  return parsed.data;
}

export async function runMfPage(ctx: MfPageContext): Promise<void> {
  const { coordinator, ui } = ctx;
  const st: MfPageState = {
    job: "mf",
    workerId: null,
    state: "starting",
    subEpoch: 0,
    blocksDone: 0,
    rows: [],
    modelBytes: 0,
    peakModelBytes: 0,
    backend: "",
    kernel: "",
    cpuMs: null,
    gpuMs: null,
    maxRelDiff: null,
    bytesIn: 0,
    bytesOut: 0,
    vFrom: { peer: 0, local: 0, checkpoint: 0 },
    log: [],
  };
  (window as unknown as { grid: MfPageState }).grid = st;
  const log = (line: string): void => {
    st.log.push(line);
    if (st.log.length > 200) st.log.shift();
    ctx.log(line);
  };
  const setState = (s: string): void => {
    st.state = s;
    ui.setState(s);
  };

  setState("reading the job: matrix factorization, model parallel");
  const problem = await fetchProblem(coordinator);
  const worker = Comlink.wrap<MfWorkerApi>(new Worker(new URL("./worker.ts", import.meta.url), { type: "module" }));
  setState("generating this page's ratings and timing the kernels");
  const init = await worker.init(problem, ctx.backend);
  st.backend = init.backend;
  st.kernel = init.kernel;
  st.cpuMs = init.cpuMs;
  st.gpuMs = init.gpuMs;
  st.maxRelDiff = init.maxRelDiff;
  ui.setAdapter(`${init.backend} · ${init.kernel} · ${init.adapter}`);
  if (init.note) log(`block SGD on the ${init.backend === "cpu" ? "CPU" : "GPU"}: ${init.note}`);

  const trainer: TrainerPort = {
    version: (k, i) => worker.version(k, i),
    put: (b) => worker.put(b),
    get: (k, i) => worker.get(k, i),
    release: (k, i) => worker.release(k, i),
    keepRows: (rows) => worker.keepRows(rows),
    train: (row, col, lr) => worker.train(row, col, lr),
    memory: () => worker.memory(),
  };
  const floatsOf = (kind: "u" | "v", index: number): number | undefined =>
    Number.isInteger(index) && index >= 0 && index < problem.blocks ? (kind === "u" ? rowBlockFloats(problem, index) : colBlockFloats(problem, index)) : undefined;

  let ws: WebSocket | null = null;
  let welcome: WelcomeMessage | null = null;
  let transport: PeerTransport | null = null;
  const peerOf = new Map<string, string>(); // worker id → peer id
  let chain: Promise<void> = Promise.resolve();
  let over = false;
  const send = (m: ClientMessage): void => {
    if (ws?.readyState === WebSocket.OPEN) ws.send(JSON.stringify(m));
  };
  const live = (w: WelcomeMessage): (() => boolean) => () => !over && welcome === w && ws?.readyState === WebSocket.OPEN;

  const onPeerMessage = (from: string, msg: ReceivedMessage): void => {
    if (msg.type !== FrameType.MF_BLOCK) return;
    const d = decodeBlock(msg.payload, floatsOf);
    if (!d.ok || d.value.kind !== "v") {
      log(`dropped a block from ${from}: ${d.ok ? "not a column block" : d.reason}`);
      return;
    }
    void worker.put(Comlink.transfer(d.value, [d.value.data.buffer]));
  };

  const runOne = (w: WelcomeMessage, step: MfStepMessage): Promise<void> => {
    st.subEpoch = step.t;
    st.rows = step.rows;
    const peers = new Map<string, number>();
    peerOf.clear();
    for (const p of step.peers) {
      peerOf.set(p.id, p.peerId);
      if (p.id !== w.workerId) peers.set(p.peerId, num(p.id));
    }
    transport?.setPeers(peers);
    const io: MfIo = {
      self: w.workerId,
      peerWaitMs: PEER_WAIT_MS,
      fetchBlock: async (kind, index) => {
        const res = await fetch(`${coordinator}/api/mf/blocks/${kind}/${index}`, { cache: "no-store" });
        if (!res.ok) throw new Error(`checkpoint ${kind}${index}: HTTP ${res.status}`);
        const d = decodeBlock(new Uint8Array(await res.arrayBuffer()), floatsOf);
        if (!d.ok) throw new Error(`checkpoint ${kind}${index}: ${d.reason}`);
        return d.value;
      },
      sendPeer: async (to: string, b: FactorBlock) => {
        const peerId = peerOf.get(to);
        if (!peerId || !transport) return;
        if (!transport.isOpen(peerId)) {
          log(`no open link to ${to}; it takes V${b.index} from the checkpoint`);
          return;
        }
        await transport.send(peerId, FrameType.MF_BLOCK, num(w.workerId), b.version, encodeBlock(b));
      },
      upload: (b) => {
        if (ws?.readyState === WebSocket.OPEN) ws.send(encodeBlock(b));
      },
      send: (m) => {
        if (m.type === "mf-done") {
          st.blocksDone++;
          st.modelBytes = m.modelBytes;
          st.peakModelBytes = m.peakModelBytes;
          st.vFrom[m.vFrom]++;
        }
        send(m);
      },
      stats: () => ({ bytesIn: transport?.bytesIn ?? 0, bytesOut: transport?.bytesOut ?? 0, peers: transport?.connectedCount ?? 0 }),
      live: live(w),
      sleep: (ms) => new Promise((r) => setTimeout(r, ms)),
    };
    setState(`training row block${step.rows.length > 1 ? "s" : ""} ${step.rows.join(", ")} · sub-epoch ${step.t}`);
    return runStep(step, trainer, io).then(() => {
      st.bytesIn = transport?.bytesIn ?? 0;
      st.bytesOut = transport?.bytesOut ?? 0;
    });
  };

  const onServerMessage = (text: string): void => {
    const parsed = parseServerMessage(text);
    if (!parsed.ok) {
      log(`ignored a bad message from the coordinator: ${parsed.message}`);
      return;
    }
    const msg = parsed.value;
    switch (msg.type) {
      case "welcome": {
        welcome = msg;
        st.workerId = msg.workerId;
        ui.setWelcome(msg);
        transport?.destroy();
        transport = new PeerTransport({
          coordinator,
          peerId: msg.peerId,
          peerToken: msg.peerToken,
          selfNumber: num(msg.workerId),
          iceServers: msg.iceServers,
          maxMessageBytes: Math.max(...Array.from({ length: problem.blocks }, (_, b) => colBlockFloats(problem, b))) * 4 + 1024,
          onMessage: onPeerMessage,
          onPeerOpen: (p) => log(`peer ${p} connected`),
          onPeerLost: (p, why) => log(`peer ${p} lost: ${why}`),
          log,
        });
        transport.opened.catch((e: unknown) => log(`signaling failed: ${e instanceof Error ? e.message : String(e)}`));
        setState("joined; waiting for the first sub-epoch");
        return;
      }
      case "mf-step": {
        const w = welcome;
        if (!w) return;
        chain = chain.then(() => runOne(w, msg)).catch((e: unknown) => log(`sub-epoch ${msg.t} failed: ${e instanceof Error ? e.message : String(e)}`));
        return;
      }
      case "finish":
        over = true;
        setState(`done: ${msg.reason}`);
        return;
      case "dropped":
        over = true;
        setState(`dropped: ${msg.detail}`);
        return;
      case "error":
        log(`coordinator: ${msg.code}: ${msg.message}`);
        if (msg.code === "job-over") {
          over = true;
          setState(`not joined: ${msg.message}`);
        }
        return;
      default:
        return;
    }
  };

  const join = (): void => {
    setState("joining the job");
    send({ type: "join", ...(ctx.name ? { name: ctx.name } : {}), backend: init.backend, kernel: init.kernel, adapter: init.adapter });
  };
  // Pause leaves the job at once (its row blocks go on from the checkpoint);
  // Resume joins again as a new worker, which gets blocks at the next barrier.
  let paused = false;
  // A lost coordinator (a restart, a network blip) is dialled again with a
  // growing delay; the page then joins as a new worker and takes its blocks
  // from the coordinator's checkpoints (a restarted one resumes from disk).
  let redialMs = REDIAL_MIN_MS;
  const connect = (): void => {
    const sock = new WebSocket(coordinator.replace(/^http/, "ws") + "/ws");
    sock.binaryType = "arraybuffer";
    ws = sock;
    sock.addEventListener("open", () => {
      redialMs = REDIAL_MIN_MS;
      if (!paused) join();
    });
    sock.addEventListener("message", (ev: MessageEvent) => {
      if (typeof ev.data === "string") onServerMessage(ev.data);
    });
    sock.addEventListener("close", () => {
      if (ws !== sock) return;
      welcome = null;
      transport?.destroy();
      transport = null;
      if (over) return;
      setState(`lost the coordinator; dialling again in ${Math.round(redialMs / 1000)} s`);
      setTimeout(() => {
        if (!over) connect();
      }, redialMs);
      redialMs = Math.min(REDIAL_MAX_MS, redialMs * 2);
    });
  };
  connect();
  const stopBeat = every(1000, () => send({ type: "heartbeat" }));
  ui.onPause(() => {
    if (over) return;
    paused = !paused;
    ui.setPaused(paused);
    if (paused) {
      send({ type: "leave" });
      welcome = null;
      transport?.destroy();
      transport = null;
    } else {
      join();
    }
  });
  ui.onStop(() => {
    over = true;
    send({ type: "leave" });
    transport?.destroy();
    ws?.close();
    stopBeat();
    setState("stopped: this page no longer uses your machine");
  });
}
