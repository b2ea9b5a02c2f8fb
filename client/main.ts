/**
 * The volunteer page: joins the coordinator over the control WebSocket, runs
 * the training worker (comlink), carries updates between the worker and the
 * peers (RTCPeerConnection exists only in pages, not in workers), and shows
 * what it is doing. URL parameters: ?coordinator=URL ?backend=webgpu|cpu
 * ?slowdown=F ?steptime=MS ?name=LABEL (pacing: client/pace.ts)
 * ?threads=N (the CPU path's WASM threads: client/gpu/wasm-threads.ts).
 *
 * One page lives through several memberships: a drop (straggler, pause) or a
 * lost coordinator connection ends one; the page joins again with its
 * credential (after the coordinator's back-off, on resume, or on reconnect),
 * takes a snapshot from a peer and goes on. Shards stay cached in IndexedDB.
 */
import * as Comlink from "comlink";
import {
  encodeModelUpload,
  parseServerMessage,
  type ClientMessage,
  type MoveMessage,
  type ViewMessage,
  type WelcomeMessage,
} from "../coordinator/protocol.ts";
import { applyViewDelta } from "../coordinator/views.ts";
import { jobFor } from "./jobs/registry.ts";
import {
  FrameType,
  decodeResendRequestPayload,
  decodeSnapshotPayload,
  encodeResendRequestPayload,
  encodeSnapshotPayload,
  type Encoding,
  type ReceivedMessage,
} from "./peer/frames.ts";
import { decodeUpdate } from "./compress.ts";
import { PeerTransport } from "./peer/transport.ts";
import { every } from "./pulse.ts";
import { buildTopology, DEFAULT_MESH_MAX, SeenClocks, type Topology } from "./peer/overlay.ts";
import type { TrainingWorkerApi, WorkerReport } from "./worker.ts";
import { PageView } from "./ui.ts";
import { runMfPage } from "./mf/page.ts";
import { paceFromParams } from "./pace.ts";
import { parseThreadsParam } from "./gpu/wasm-threads.ts";

const params = new URLSearchParams(location.search);
const coordinator = (params.get("coordinator") ?? location.origin).replace(/\/+$/, "");
const forced = params.get("backend");
const backendParam = forced === "webgpu" || forced === "cpu" ? forced : null;
const threadsParam = parseThreadsParam(params.get("threads"));
const pace = paceFromParams(params);
const name = (params.get("name") ?? "").slice(0, 60);

const ui = new PageView(document);

/** Installed as `window.gridTest` with `?test-hooks` only; tests provoke faults through it. */
interface GridTestHooks {
  /** Destroys the trainer worker's WebGPU device; resolves false on the CPU path. */
  loseDevice(): Promise<boolean>;
}

/** What tests and curious volunteers can read from the console: `window.grid`. */
interface PageState {
  workerId: string | null;
  /** "starting" until the worker's first report, then that report's state. */
  state: WorkerReport["state"] | "starting";
  clock: number;
  peers: number;
  bytesIn: number;
  bytesOut: number;
  backend: string;
  digest: unknown;
  memberships: number;
  /** "mesh" or "overlay" (client/peer/overlay.ts), the links wanted, and updates forwarded for others. */
  topology: string;
  links: number;
  forwarded: number;
  /** Peers this page found silent or closed: worker id and when (Date.now()). */
  lostPeers: { id: string; at: number; why: string }[];
  /** Largest lead over the slowest active worker this page saw at a step start (≤ s + 1). */
  maxLead: number;
  /** Grid of several jobs: the job this page works for (id) and why; its moves. */
  job: string | null;
  jobReason: string;
  moves: { at: number; job: string; reason: string }[];
  log: string[];
}
const pageState: PageState = {
  workerId: null,
  state: "starting",
  clock: 0,
  peers: 0,
  bytesIn: 0,
  bytesOut: 0,
  backend: "",
  digest: null,
  memberships: 0,
  topology: "mesh",
  links: 0,
  forwarded: 0,
  lostPeers: [],
  maxLead: 0,
  job: null,
  jobReason: "",
  moves: [],
  log: [],
};
(window as unknown as { grid: PageState }).grid = pageState;

function log(line: string): void {
  // Also to the console, where the harness and the developer tools read it.
  console.debug(line);
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
  const job = typeof body === "object" && body !== null && "job" in body ? body.job : null;
  const name = typeof job === "object" && job !== null && "name" in job ? job.name : null;
  if (typeof name !== "string") throw new Error("the coordinator's status has no job name");
  return name;
}

function readSession(key: string): string | null {
  try {
    return sessionStorage.getItem(key);
  } catch {
    return null;
  }
}

function writeSession(key: string, value: string | null): void {
  try {
    if (value === null) sessionStorage.removeItem(key);
    else sessionStorage.setItem(key, value);
  } catch {
    // Storage disabled: a reload joins as a new volunteer.
  }
}

/** One membership: a worker id, its peer transport and its replica in the worker. */
interface Membership {
  readonly welcome: WelcomeMessage;
  readonly transport: PeerTransport;
  readonly peerOf: Map<string, string>;
  /** Worker number → PeerJS id, for the members of the current view. */
  readonly peerByNum: Map<number, string>;
  topology: Topology;
  /** (worker, clock) of updates already forwarded (overlay de-duplication). */
  readonly seen: SeenClocks;
  started: boolean;
  /** The last full view (deltas apply to it); null until the first. */
  view: ViewMessage | null;
  /** A `view-request` is out: deltas are ignored until the whole view arrives. */
  viewRequested: boolean;
  snapshotLoaded: boolean;
  snapshotTimer: ReturnType<typeof setInterval> | null;
  /** PeerJS ids of the view's members in the gate (not syncing): only they can answer a snapshot request. */
  synced: Set<string>;
  /** When a snapshot was last asked for (performance.now()), 0 never; and of whom (PeerJS id). */
  snapshotAskedAt: number;
  snapshotAskedOf: string | null;
  /** The replica has its starting point (the snapshot is applied, or none was needed): gaps can be asked for. */
  replicaStarted: boolean;
  /** Left after a `move`: its own updates still retained, served to peers' re-send requests until its links close. */
  leaving: { clock: number; encoding: Encoding; buffer: ArrayBuffer }[] | null;
}

/**
 * A joiner asks one peer at a time for its snapshot, and another (in the gate,
 * when there is one) after this long without it. Each answer carries the
 * giver's retained updates (MBs in a busy job): asking every peer as its link
 * opened flooded a joiner with four snapshots, its links carried nothing else
 * for seconds and the whole job waited for it.
 */
const SNAPSHOT_RETRY_MS = 2500;

/** After a move, the old job's peer links stay open this long for re-sends of this page's last updates. */
const MOVE_GRACE_MS = 4000;

/** A main-thread task this long is logged: links go silent after SILENT_MS without one (client/peer/transport.ts). */
const LONG_TASK_LOG_MS = 300;

/** Log the page's long main-thread tasks (where a stalled link or step went), where the browser reports them. */
function watchLongTasks(): void {
  if (typeof PerformanceObserver === "undefined" || !PerformanceObserver.supportedEntryTypes.includes("longtask")) return;
  new PerformanceObserver((list) => {
    for (const e of list.getEntries()) if (e.duration >= LONG_TASK_LOG_MS) log(`main thread busy for ${Math.round(e.duration)} ms in one task`);
  }).observe({ type: "longtask" });
}

async function main(): Promise<void> {
  watchLongTasks();
  ui.setState("asking the coordinator which job runs");
  const jobName = await fetchJobName();
  if (jobName === "mf") {
    // Model parallelism: its own page glue and worker (client/mf/).
    await runMfPage({ coordinator, backend: backendParam, name, ui, log });
    return;
  }
  const job = jobFor(jobName);
  if (!job) throw new Error(`this page does not know the job "${jobName}": reload to get the current version`);
  ui.setState("preparing the GPU");
  const worker = Comlink.wrap<TrainingWorkerApi>(new Worker(new URL("./worker.ts", import.meta.url), { type: "module" }));
  ui.onThrottle((share) => void worker.setThrottle(share));
  // `?test-hooks` (for tests only, test/e2e/gpu-faults.spec.ts): `window.gridTest.loseDevice()`
  // destroys the trainer's WebGPU device mid-training, as a driver reset would.
  if (params.has("test-hooks")) {
    const hooks: GridTestHooks = { loseDevice: () => worker.loseDevice() };
    (window as unknown as { gridTest: GridTestHooks }).gridTest = hooks;
  }
  const init = await worker.init(backendParam, job.name, 512, threadsParam);
  /** The job kind the worker's kernels are prepared for (a move to another kind prepares again). */
  let kernels: Promise<string> = Promise.resolve(job.name);
  pageState.backend = init.backend;
  ui.setAdapter(`${init.backend} · ${init.kernel} · ${init.adapter}`);
  if (init.fallbackReason && backendParam !== "cpu") {
    ui.webgpuUnavailable(init.fallbackReason);
  }
  if (init.threadsNote !== null) {
    ui.notice(init.threadsNote, "info", "wasm-threads");
    log(init.threadsNote);
  }

  let ws: WebSocket | null = null;
  let member: Membership | null = null;
  // A reload of this tab rejoins as the same volunteer (the coordinator links
  // the memberships: a "rejoined" event); the shards come from IndexedDB.
  const credentialKey = `grid-credential:${coordinator}`;
  let credential: string | null = readSession(credentialKey);
  let stopped = false;
  let paused = false;
  let jobOver = false;
  let reconnectDelay = 1000;
  let rejoinTimer: ReturnType<typeof setTimeout> | null = null;

  const send = (m: ClientMessage): void => {
    if (ws?.readyState === WebSocket.OPEN) ws.send(JSON.stringify(m));
  };

  const join = (): void => {
    if (stopped || jobOver || paused) return;
    ui.setState(credential ? "joining the job again" : "joining the job");
    send({
      type: "join",
      ...(name ? { name } : {}),
      backend: init.backend,
      kernel: init.kernel,
      adapter: init.adapter,
      ...(credential ? { rejoin: credential } : {}),
    });
  };

  /** End the current membership (dropped, disconnected, stopped). */
  const leaveMembership = (): void => {
    const m = member;
    if (!m) return;
    member = null;
    if (m.snapshotTimer) clearInterval(m.snapshotTimer);
    m.transport.destroy();
    void worker.stop();
    pageState.workerId = null;
  };

  const onPeerMessage = (m: Membership, fromPeer: string, msg: ReceivedMessage): void => {
    const w = m.welcome;
    // A membership left after a move only answers re-send requests (the worker runs another job now).
    if (m.leaving !== null && msg.type !== FrameType.RESEND_REQUEST) return;
    switch (msg.type) {
      case FrameType.UPDATE: {
        // Checked before it is forwarded: a malformed update stops here and is
        // counted against the peer that sent it, not against this forwarder.
        const d = decodeUpdate(msg.encoding, msg.payload, w.job.parameters);
        if (!d.ok) {
          log(`dropped an update from ${m.peerOf.get(fromPeer) ?? fromPeer}: ${d.reason}`);
          m.transport.malformed(fromPeer, d.reason);
          return;
        }
        // Overlay: pass it down the author's broadcast tree, once per (worker, clock).
        if (m.seen.mark(msg.sender, msg.clock)) {
          for (const child of m.topology.forwardTo(msg.sender, num(w.workerId))) {
            const p = m.peerByNum.get(child);
            if (p === undefined || p === fromPeer) continue;
            void m.transport.send(p, FrameType.UPDATE, msg.sender, msg.clock, msg.payload, msg.encoding);
            pageState.forwarded++;
          }
        }
        const buf = d.value.buffer as ArrayBuffer;
        void worker.receive(`w${msg.sender}`, msg.clock, Comlink.transfer(buf, [buf])).then((r) => {
          if (r !== "applied" && r !== "duplicate" && r !== "held") noteRefused(`u(w${msg.sender},${msg.clock}) from ${m.peerOf.get(fromPeer) ?? fromPeer}: ${r}`);
        });
        return;
      }
      case FrameType.SNAPSHOT_REQUEST:
        void worker.snapshot().then((s) => {
          if (!s || member !== m) return;
          const vectorClock = new Map(Object.entries(s.vector).map(([id, c]) => [num(id), c] as [number, number]));
          // The frame's clock: robust aggregation's frontier of the snapshot (0 with mean).
          void m.transport.send(fromPeer, FrameType.SNAPSHOT, num(w.workerId), s.frontier, encodeSnapshotPayload({ vectorClock, params: new Float32Array(s.params) }));
          // The retained updates (only kept by the joiner, for reverts and re-sends) go when the link is
          // otherwise idle: the updates the joiner and the job wait for go first.
          for (const u of s.retained) void m.transport.sendBackground(fromPeer, FrameType.RETAINED, num(u.author), u.clock, new Uint8Array(u.buffer), u.encoding);
        });
        return;
      case FrameType.SNAPSHOT: {
        if (m.snapshotLoaded) return;
        const d = decodeSnapshotPayload(msg.payload, w.job.parameters);
        if (!d.ok) {
          log(`bad snapshot from ${m.peerOf.get(fromPeer) ?? fromPeer}: ${d.reason}`);
          return;
        }
        m.snapshotLoaded = true;
        const vector: Record<string, number> = {};
        for (const [k, c] of d.value.vectorClock) vector[`w${k}`] = c;
        const buf = d.value.params.buffer as ArrayBuffer;
        void worker.loadSnapshot(Comlink.transfer(buf, [buf]), vector, msg.clock).then(() => {
          // The updates its giver had not seen yet: each author's from the one linked peer they come through.
          m.replicaStarted = true;
          if (member === m) for (const p of m.transport.openPeers()) askForGaps(m, p);
        });
        log(`took a snapshot from ${m.peerOf.get(fromPeer) ?? fromPeer}`);
        return;
      }
      case FrameType.RETAINED: {
        const d = decodeUpdate(msg.encoding, msg.payload, w.job.parameters);
        if (!d.ok) {
          m.transport.malformed(fromPeer, d.reason);
          return;
        }
        const buf = d.value.buffer as ArrayBuffer;
        void worker.importRetained(`w${msg.sender}`, msg.clock, Comlink.transfer(buf, [buf]));
        return;
      }
      case FrameType.RESEND_REQUEST: {
        const d = decodeResendRequestPayload(msg.payload);
        if (!d.ok) return;
        if (m.leaving) {
          for (const u of m.leaving) if (d.value.target === num(w.workerId) && u.clock > d.value.fromClock) void m.transport.send(fromPeer, FrameType.UPDATE, d.value.target, u.clock, new Uint8Array(u.buffer), u.encoding);
          return;
        }
        void worker.retained(`w${d.value.target}`, d.value.fromClock, Number.MAX_SAFE_INTEGER).then((list) => {
          for (const u of list) void m.transport.send(fromPeer, FrameType.UPDATE, d.value.target, u.clock, new Uint8Array(u.buffer), u.encoding);
        });
        return;
      }
    }
  };

  /**
   * Ask peer `p` for what this replica lacks of the updates that come through
   * it (its own in a mesh; the authors whose tree has it as our parent in an
   * overlay): some may have been sent before the link was open, or before the
   * snapshot this replica started from.
   */
  const askForGaps = (m: Membership, p: string): void => {
    const wid = m.peerOf.get(p);
    if (!wid) return;
    const self = num(m.welcome.workerId);
    for (const origin of m.topology.members) {
      if (m.topology.parentOf(origin, self) !== num(wid)) continue;
      void worker.vectorOf(`w${origin}`).then((v) => {
        if (member === m) void m.transport.send(p, FrameType.RESEND_REQUEST, self, 0, encodeResendRequestPayload({ target: origin, fromClock: v }));
      });
    }
  };

  /** An update the replica did not take (beyond a cut, before the snapshot): logged, at most one line a second. */
  let refusedAt = 0;
  let refusedSince = 0;
  const noteRefused = (what: string): void => {
    refusedSince++;
    const now = performance.now();
    if (now - refusedAt < 1000) return;
    log(`the replica did not take ${what}${refusedSince > 1 ? ` (and ${refusedSince - 1} more since the last such line)` : ""}`);
    refusedAt = now;
    refusedSince = 0;
  };

  /**
   * Ask one open peer for a snapshot, unless a request is out: `to` if given
   * and it can answer, else one that can. Only members in the gate can (a peer
   * still syncing has none and never answers; several volunteers moved into a
   * job at once often link to each other first); any linked peer only while
   * the view names none in the gate.
   */
  const requestSnapshot = (m: Membership, to?: string): void => {
    if (m.snapshotLoaded || performance.now() - m.snapshotAskedAt < SNAPSHOT_RETRY_MS) return;
    const canAnswer = (p: string): boolean => m.synced.size === 0 || m.synced.has(p);
    const from = m.transport.openPeers().filter(canAnswer);
    const pick = to === undefined ? from[Math.floor(Math.random() * from.length)] : canAnswer(to) ? to : undefined;
    if (pick === undefined) return;
    m.snapshotAskedAt = performance.now();
    m.snapshotAskedOf = pick;
    void m.transport.send(pick, FrameType.SNAPSHOT_REQUEST, num(m.welcome.workerId), 0, new Uint8Array(0));
  };

  /**
   * The peer asked for a snapshot cannot answer any more (its link closed, or
   * it left the view: a volunteer moved to another job as this one joined):
   * ask another now rather than after the retry time.
   */
  const snapshotGiverGone = (m: Membership, p: string): void => {
    if (m.snapshotLoaded || m.snapshotAskedOf !== p) return;
    m.snapshotAskedAt = 0;
    m.snapshotAskedOf = null;
    requestSnapshot(m);
  };

  const startMembership = (w: WelcomeMessage): Membership => {
    leaveMembership();
    credential = w.credential;
    writeSession(credentialKey, w.credential);
    pageState.workerId = w.workerId;
    pageState.memberships++;
    pageState.job = w.grid?.job ?? null;
    pageState.jobReason = w.grid?.reason ?? "";
    ui.setWelcome(w);
    const peerOf = new Map<string, string>();
    const m: Membership = {
      welcome: w,
      peerOf,
      peerByNum: new Map(),
      topology: buildTopology([], w.meshMax ?? DEFAULT_MESH_MAX),
      seen: new SeenClocks(),
      started: false,
      view: null,
      viewRequested: false,
      snapshotLoaded: !w.needsSnapshot,
      snapshotTimer: null,
      synced: new Set(),
      snapshotAskedAt: 0,
      snapshotAskedOf: null,
      replicaStarted: !w.needsSnapshot,
      leaving: null,
      transport: new PeerTransport({
        coordinator,
        peerId: w.peerId,
        peerToken: w.peerToken,
        selfNumber: num(w.workerId),
        iceServers: w.iceServers,
        ...(w.iceTransportPolicy ? { iceTransportPolicy: w.iceTransportPolicy } : {}),
        maxMessageBytes: w.job.parameters * 4 + 1024 * 1024,
        onMessage: (from, msg) => onPeerMessage(m, from, msg),
        onPeerOpen: (p) => {
          log(`peer ${peerOf.get(p) ?? p} connected`);
          requestSnapshot(m, p);
          // A joiner asks once its snapshot is in (before, its replica has no clocks
          // and the peer would re-send everything it retains, to be thrown away).
          if (m.replicaStarted) askForGaps(m, p);
        },
        onPeerLost: (p, why, wasOpen) => {
          const wid = peerOf.get(p);
          log(`${member === m ? "" : "(a job left) "}peer ${wid ?? p} lost: ${why}`);
          snapshotGiverGone(m, p);
          // Only the current membership reports: after a move, the old job's links close under this page
          // and those ids mean other workers in the new job.
          if (!wid || !wasOpen || member !== m) return;
          pageState.lostPeers.push({ id: wid, at: Date.now(), why });
          if (pageState.lostPeers.length > 50) pageState.lostPeers.shift();
          send({ type: "peer-lost", peer: wid, why: why.slice(0, 200) });
        },
        log,
      }),
    };
    m.transport.opened.catch((e: unknown) => log(`signaling failed: ${e instanceof Error ? e.message : String(e)}`));
    if (!m.snapshotLoaded) m.snapshotTimer = setInterval(() => (m.snapshotLoaded ? null : requestSnapshot(m)), SNAPSHOT_RETRY_MS / 5);
    member = m;
    return m;
  };

  const applyView = (m: Membership, v: ViewMessage): void => {
    m.peerOf.clear();
    m.peerByNum.clear();
    const synced = new Set<string>();
    for (const a of v.active) {
      m.peerOf.set(a.peerId, a.id);
      m.peerByNum.set(num(a.id), a.peerId);
      if (a.syncing !== true) synced.add(a.peerId);
    }
    // Still without a snapshot and a linked peer has just entered the gate: ask it (unless a request is out).
    const ready = [...synced].find((p) => !m.synced.has(p) && m.transport.isOpen(p));
    m.synced = synced;
    if (m.snapshotAskedOf !== null && !m.peerOf.has(m.snapshotAskedOf)) snapshotGiverGone(m, m.snapshotAskedOf);
    if (ready !== undefined) requestSnapshot(m, ready);
    // Links only to this member's neighbours: all others in a mesh, O(log N) in an overlay.
    m.topology = buildTopology(m.peerByNum.keys(), m.welcome.meshMax ?? DEFAULT_MESH_MAX);
    m.seen.retain(new Set(m.peerByNum.keys()));
    const peers = new Map<string, number>();
    for (const n of m.topology.neighbours(num(m.welcome.workerId))) {
      const p = m.peerByNum.get(n);
      if (p !== undefined) peers.set(p, n);
    }
    m.transport.setPeers(peers);
    pageState.topology = m.topology.kind;
    pageState.links = peers.size;
    ui.setView(v, m.welcome.workerId);
    if (v.state === "done") {
      jobOver = true;
      ui.setState("done: the job is finished, thank you");
    }
  };

  const callbacks = {
    update(clock: number, encoding: Encoding, buffer: ArrayBuffer): void {
      const m = member;
      if (!m) return;
      const self = num(m.welcome.workerId);
      m.seen.mark(self, clock);
      const payload = new Uint8Array(buffer);
      for (const n of m.topology.forwardTo(self, self)) {
        const p = m.peerByNum.get(n);
        if (p !== undefined) void m.transport.send(p, FrameType.UPDATE, self, clock, payload, encoding);
      }
    },
    report(r: WorkerReport): void {
      const t = member?.transport;
      pageState.clock = r.clock;
      pageState.state = r.state;
      pageState.maxLead = Math.max(pageState.maxLead, r.maxLead);
      pageState.peers = t?.connectedCount ?? 0;
      pageState.bytesIn = t?.bytesIn ?? pageState.bytesIn;
      pageState.bytesOut = t?.bytesOut ?? pageState.bytesOut;
      ui.setReport(r, pageState.peers, pageState.bytesIn, pageState.bytesOut, paused);
      if (!member) return;
      send({
        type: "clock",
        clock: r.clock,
        minApplied: r.minApplied,
        loss: r.loss,
        stepMs: r.stepMs,
        ...(r.computeMs > 0 ? { computeMs: r.computeMs } : {}),
        batch: r.batch,
        examples: r.examples,
        bytesIn: pageState.bytesIn,
        bytesOut: pageState.bytesOut,
        peers: pageState.peers,
        stalenessHist: r.stalenessHist,
        waitMs: r.waitMs,
        phaseMs: r.phaseMs,
        ...(r.shardsDone.length > 0 ? { shardsDone: r.shardsDone } : {}),
      });
    },
    model(clock: number, buffer: ArrayBuffer): void {
      if (member && ws?.readyState === WebSocket.OPEN) ws.send(encodeModelUpload(clock, new Float32Array(buffer)));
    },
    final(clock: number): void {
      send({ type: "final", clock });
      finalSeen?.(clock);
    },
    digest(d: { sum: number; l2: number; proj: number[] }, vector: Record<string, number>): void {
      pageState.digest = d;
      send({ type: "digest", digest: d, vector });
      ui.setState("done: replica digest reported");
    },
    ready(): void {
      log("snapshot and data loaded; entering the staleness gate");
      send({ type: "ready" });
    },
    unavailable(id: string, clock: number): void {
      log(`no peer holds u(${id},${clock}); asking the coordinator to lower ${id}'s cut`);
      send({ type: "missing", id, clock });
    },
    missing(id: string, fromClock: number): void {
      const m = member;
      if (!m) return;
      log(`still waiting for ${id}'s updates after clock ${fromClock}; asking every linked peer`);
      void m.transport.broadcast(FrameType.RESEND_REQUEST, num(m.welcome.workerId), 0, encodeResendRequestPayload({ target: num(id), fromClock }));
    },
    log,
    storageProblem(detail: string): void {
      ui.notice(`This browser would not keep the training data (${detail}), so it is downloaded instead when needed. Training goes on.`, "info", "storage");
    },
  };
  const proxied = Comlink.proxy(callbacks);

  /** Resolves a move's wait for the worker's last clock. */
  let finalSeen: ((clock: number) => void) | null = null;
  let moving = false;

  /**
   * The coordinator gives this page to another job: stop stepping, report the
   * last clock, leave (the old job reassigns its shards; nothing of ours is
   * lost: our updates stay servable over the old links for a few seconds),
   * then join again, as an ordinary joiner of the new job. Shards stay cached
   * per job in IndexedDB, so coming back costs no download.
   */
  const moveTo = async (mv: MoveMessage): Promise<void> => {
    log(`moving to job ${mv.job} (${mv.name}): ${mv.reason}`);
    pageState.moves.push({ at: Date.now(), job: mv.job, reason: mv.reason });
    if (pageState.moves.length > 50) pageState.moves.shift();
    ui.setState(`moving to job ${mv.job}: ${mv.reason}`);
    if (moving) return;
    moving = true;
    try {
      const m = member;
      // Moved while its job finishes (a finishing job keeps only a few pages to drain):
      // its final clock is reported already, and its updates are still wanted by those.
      const reported = pageState.state === "finished" || pageState.state === "drained";
      if (m?.started && !jobOver && pageState.state !== "starting") {
        let clock: number | null = pageState.clock;
        if (!reported) {
          const last = new Promise<number | null>((r) => {
            finalSeen = r;
            setTimeout(() => r(null), 5000);
          });
          void worker.finish();
          clock = await last;
          finalSeen = null;
        }
        if (clock !== null) m.leaving = await worker.retained(m.welcome.workerId, 0, clock);
      }
      if (m) m.leaving ??= [];
      send({ type: "leave" });
      if (m && member === m) {
        member = null;
        if (m.snapshotTimer) clearInterval(m.snapshotTimer);
        void worker.stop();
        // Its links answer re-send requests for MOVE_GRACE_MS; none is dialled again meanwhile.
        m.transport.retire();
        setTimeout(() => m.transport.destroy(), MOVE_GRACE_MS);
      }
      pageState.workerId = null;
      jobOver = false;
      credential = null;
      writeSession(credentialKey, null);
      if ((await kernels) !== mv.name) {
        kernels = worker.init(backendParam, mv.name, 512).then((r) => {
          pageState.backend = r.backend;
          ui.setAdapter(`${r.backend} · ${r.kernel} · ${r.adapter}`);
          return mv.name;
        });
        await kernels;
      }
    } finally {
      moving = false;
    }
    join();
  };

  const onServerMessage = (text: string): void => {
    const parsed = parseServerMessage(text);
    if (!parsed.ok) {
      log(`ignored a bad message from the coordinator: ${parsed.message}`);
      return;
    }
    const msg = parsed.value;
    switch (msg.type) {
      case "move":
        void moveTo(msg).catch((e: unknown) => log(`move failed: ${e instanceof Error ? e.message : String(e)}`));
        return;
      case "welcome":
        reconnectDelay = 1000;
        startMembership(msg);
        return;
      case "assign":
        void worker.assign(msg);
        ui.setShards(msg.shards.length, msg.shards.reduce((s, x) => s + x.bytes, 0));
        return;
      case "view-delta":
      case "view": {
        const m = member;
        if (!m) return;
        let full: ViewMessage | null;
        if (msg.type === "view-delta") {
          full = m.view ? applyViewDelta(m.view, msg) : null;
          if (!full) {
            // A missed epoch (or no view yet): ask once for the whole view.
            if (!m.viewRequested) send({ type: "view-request" });
            m.viewRequested = true;
            return;
          }
        } else {
          if (m.view && msg.epoch < m.view.epoch) return;
          full = msg;
        }
        m.view = full;
        m.viewRequested = false;
        applyView(m, full);
        if (!m.started) {
          m.started = true;
          ui.setState("training");
          void worker.start(coordinator, m.welcome, full, pace, proxied);
        } else {
          void worker.setView(full);
        }
        return;
      }
      case "finish":
        ui.setState(`finishing: ${msg.reason}`);
        void worker.finish();
        return;
      case "drain":
        void worker.drain(msg.target);
        return;
      case "spot": {
        // A spot-check task (coordinator/spotcheck.ts): computed between steps, answered with its digest.
        const task = msg.task;
        void worker.spotCheck(coordinator, msg).then(
          (digest) => send({ type: "spot-result", task, digest }),
          (e: unknown) => send({ type: "spot-result", task, error: (e instanceof Error ? e.message : String(e)).slice(0, 200) }),
        );
        return;
      }
      case "ack":
        ui.setGridClock(msg.min, msg.max, msg.active);
        void worker.setStable(msg.stable);
        if (msg.batch !== undefined) void worker.setBatch(msg.batch);
        return;
      case "dropped": {
        leaveMembership();
        log(`dropped from the view (${msg.reason}): ${msg.detail}`);
        if (msg.reason === "paused") {
          ui.setState("paused by you; the others go on without this page");
          return;
        }
        if (msg.rejoinAfterMs === null) {
          ui.setState(`dropped: ${msg.detail}`);
          return;
        }
        ui.setState(`dropped (${msg.detail}); joining again in ${Math.round(msg.rejoinAfterMs / 1000)} s`);
        if (rejoinTimer) clearTimeout(rejoinTimer);
        rejoinTimer = setTimeout(join, msg.rejoinAfterMs);
        return;
      }
      case "error":
        log(`coordinator: ${msg.code}: ${msg.message}`);
        if (msg.code === "job-over" && credential !== null && /credential/.test(msg.message)) {
          // A stale credential (another coordinator run): join as a new volunteer.
          credential = null;
          writeSession(credentialKey, null);
          join();
          return;
        }
        if (msg.code === "job-over") {
          jobOver = true;
          ui.setState(`not joined: ${msg.message}`);
        }
        return;
    }
  };

  const connect = (): void => {
    const sock = new WebSocket(coordinator.replace(/^http/, "ws") + "/ws");
    sock.binaryType = "arraybuffer";
    ws = sock;
    sock.addEventListener("open", join);
    sock.addEventListener("message", (ev: MessageEvent) => {
      if (typeof ev.data === "string") onServerMessage(ev.data);
    });
    sock.addEventListener("close", () => {
      if (ws !== sock) return;
      leaveMembership();
      if (stopped || jobOver) return;
      ui.setState(`lost the coordinator; reconnecting in ${Math.round(reconnectDelay / 1000)} s`);
      setTimeout(connect, reconnectDelay);
      reconnectDelay = Math.min(15_000, reconnectDelay * 2);
    });
  };
  connect();
  // On the pulse worker's timer: a hidden tab's throttled page timers must not make it look gone.
  every(1000, () => send({ type: "heartbeat" }));

  ui.onPause(() => {
    paused = !paused;
    void worker.setPaused(paused);
    ui.setPaused(paused);
    if (paused) {
      // The coordinator takes a paused page out of the view, so nobody waits for it.
      send({ type: "paused", paused: true });
    } else if (member) {
      send({ type: "paused", paused: false });
    } else {
      join();
    }
  });
  ui.onStop(() => {
    stopped = true;
    send({ type: "leave" });
    leaveMembership();
    ws?.close();
    ui.setState("stopped: this page no longer uses your machine");
    ui.setPaused(true);
  });
}

main().catch((e: unknown) => {
  const msg = e instanceof Error ? e.message : String(e);
  ui.fail(msg);
  log(`error: ${msg}`);
});
