/**
 * The page's peer transport: PeerJS DataConnections (reliable, ordered, raw
 * binary) behind a small interface. Messages go out as chunked binary frames
 * (frames.ts) with backpressure on `bufferedAmount`; incoming frames are
 * decoded and reassembled per connection, and a peer that sends garbage is
 * counted and, past a threshold, disconnected. Liveness is our own heartbeat,
 * not PeerJS `close` events (which may never fire).
 *
 * Glare is avoided by construction: of two workers, only the one with the
 * larger worker number dials. The dialing side keeps dialing the wanted peers
 * it has no link to (at most once a second each), so links come back after a
 * loss, a refused dial or a time away from signaling.
 *
 * Signaling (the PeerJS socket to the coordinator) may drop while the links
 * stay up: then the page reconnects with back-off (1 s doubling to 15 s, with
 * jitter) under the same id and secret, and new links can be made again.
 */
import Peer, { type DataConnection } from "peerjs";
import { Encoding, FrameType, MessageIdSource, type ReceivedMessage, type RejectReason } from "./frames.ts";
import type { UpdateRejectReason } from "../compress.ts";
import { DrainWatch, FramedChannel, STALL_MS } from "./framed.ts";
import { every } from "../pulse.ts";

export interface TransportOptions {
  /** The coordinator's origin, e.g. http://127.0.0.1:8080. */
  readonly coordinator: string;
  readonly peerId: string;
  /** The secret the coordinator issued with `peerId`; signaling refuses the id without it. */
  readonly peerToken: string;
  readonly selfNumber: number;
  readonly iceServers: RTCIceServer[];
  /** "relay": TURN-relayed candidates only. */
  readonly iceTransportPolicy?: RTCIceTransportPolicy;
  /** Largest message accepted from a peer, in bytes. */
  readonly maxMessageBytes: number;
  readonly onMessage: (fromPeer: string, msg: ReceivedMessage) => void;
  readonly onPeerOpen: (peerId: string) => void;
  /** A link closed or went silent (`wasOpen`), or never opened in time (then it is dialled again). */
  readonly onPeerLost: (peerId: string, why: string, wasOpen: boolean) => void;
  readonly log: (line: string) => void;
}

interface Link {
  conn: DataConnection;
  open: boolean;
  /** When this side dialed or accepted; a link not open within OPEN_TIMEOUT_MS is retried. */
  readonly since: number;
  lastHeard: number;
  /** Framing over the connection's DataChannel, from when it opens. */
  ch: FramedChannel | null;
  /** Whether bytes leave its DataChannel's buffer (a stalled link is closed and dialed again). */
  drain: DrainWatch | null;
  /** Since when the view no longer wants it (it lingers LINGER_MS, see setPeers), or null. */
  unwantedSince: number | null;
}

const HEARTBEAT_MS = 500;
/** Liveness checks run this often. */
const CHECK_MS = 250;
/**
 * A link that brought no frame for this long (six heartbeats) is lost: a peer
 * whose network is cut is detected within SILENT_MS + CHECK_MS = 3.25 s of
 * its last frame, leaving room for busy timers under the 5 s target.
 */
export const SILENT_MS = 3000;
const MAX_REJECTS = 50;
/** A dialed link that is not open by then is closed and dialed again (the peer may not have been registered yet). */
const OPEN_TIMEOUT_MS = 4000;
/** A link to a peer that left the view stays open this long (see setPeers). */
export const LINGER_MS = 4000;
/** Least time between two dials of one peer. */
const REDIAL_MS = 1000;
/** Back-off between attempts to get back to signaling. */
const SIGNALING_RETRY_MIN_MS = 1000;
const SIGNALING_RETRY_MAX_MS = 15_000;

export class PeerTransport {
  private readonly peer: Peer;
  private readonly links = new Map<string, Link>();
  private readonly ids = new MessageIdSource();
  /** Stops the liveness checks (on the pulse worker's timer: a hidden tab's throttled timers must not silence its links). */
  private readonly stopChecks: () => void;
  private wanted = new Map<string, number>();
  /** Earliest next dial per peer (performance.now()). */
  private readonly nextDial = new Map<string, number>();
  private lastBeat = 0;
  private signalingDelay = SIGNALING_RETRY_MIN_MS;
  private signalingTimer: ReturnType<typeof setTimeout> | null = null;
  /** Attempts to get back to signaling since it was lost (0: never lost, or back). */
  private signalingAttempts = 0;
  /** Times this page got back to signaling after losing it. */
  signalingReconnects = 0;
  bytesIn = 0;
  bytesOut = 0;
  readonly rejected = new Map<RejectReason | UpdateRejectReason | "send-failed" | "rate-limited", number>();
  readonly opened: Promise<void>;
  /** When this transport was made, and whether signaling has registered it yet (for the log: how long links take). */
  private readonly createdAt = performance.now();
  private registered = false;
  /** Left after a move (`retire`): no dialling, no signaling reconnects. */
  private retired = false;

  constructor(private readonly opts: TransportOptions) {
    const u = new URL(opts.coordinator);
    const secure = u.protocol === "https:";
    this.peer = new Peer(opts.peerId, {
      host: u.hostname.replace(/^\[|\]$/g, ""),
      port: u.port ? Number(u.port) : secure ? 443 : 80,
      path: "/peerjs",
      key: "peerjs",
      token: opts.peerToken,
      secure,
      debug: 0,
      config: { iceServers: opts.iceServers, iceTransportPolicy: opts.iceTransportPolicy ?? "all" },
    });
    this.opened = new Promise((resolve, reject) => {
      this.peer.once("open", () => resolve());
      this.peer.once("error", (e) => reject(e instanceof Error ? e : new Error(String(e))));
    });
    this.peer.on("connection", (conn) => this.adopt(conn, "accepted"));
    this.peer.on("disconnected", () => this.signalingLost());
    this.peer.on("open", () => this.signalingBack());
    this.peer.on("error", (e) => {
      // "peer-unavailable" (dialed before the other side registered) is retried
      // by the open timeout below; everything else is logged.
      const type = typeof e === "object" && e !== null && "type" in e ? String(e.type) : "";
      if (type !== "peer-unavailable") opts.log(`peer: ${e instanceof Error ? e.message : String(e)}`);
    });
    this.stopChecks = every(CHECK_MS, () => this.heartbeat());
  }

  get connectedCount(): number {
    let n = 0;
    for (const l of this.links.values()) if (l.open) n++;
    return n;
  }

  isOpen(peerId: string): boolean {
    return this.links.get(peerId)?.open === true;
  }

  openPeers(): string[] {
    return [...this.links.entries()].filter(([, l]) => l.open).map(([id]) => id);
  }

  /**
   * This membership was left (a move to another job): its open links stay,
   * answering re-send requests until `destroy`, but nothing is dialled again
   * and signaling is not reconnected (its peer id is no longer the job's).
   */
  retire(): void {
    this.retired = true;
    if (this.signalingTimer !== null) clearTimeout(this.signalingTimer);
    this.signalingTimer = null;
  }

  /**
   * Keep connections to these peers (peer id → worker number). A link to a
   * peer no longer wanted lingers LINGER_MS before it is closed (never dialled
   * again): a worker that left after a move answers re-send requests for its
   * last updates over its old links for that long, and a drain or a gate that
   * still lacks one of them asks every linked peer.
   */
  setPeers(peers: Map<string, number>): void {
    this.wanted = peers;
    for (const peerId of this.nextDial.keys()) if (!peers.has(peerId)) this.nextDial.delete(peerId);
    this.dialMissing(true);
    const now = performance.now();
    for (const link of this.links.values()) link.unwantedSince = peers.has(link.conn.peer) ? null : (link.unwantedSince ?? now);
  }

  /**
   * Dial every wanted peer this side dials (smaller worker number) that has
   * no link; `now` also those whose redial time has not come (a new view).
   */
  private dialMissing(now = false): void {
    // PeerJS makes no connection while this peer is destroyed or away from signaling, and it drops
    // (silently) what it sends before its signaling socket is open: a dial then never opens and
    // waits out OPEN_TIMEOUT_MS. So dial only once registered; `open` dials what is missing.
    if (this.retired || this.peer.destroyed || this.peer.disconnected || !this.peer.open) return;
    const t = performance.now();
    for (const [peerId, num] of this.wanted) {
      if (peerId === this.opts.peerId || num >= this.opts.selfNumber || this.links.has(peerId)) continue;
      if (!now && (this.nextDial.get(peerId) ?? 0) > t) continue;
      this.nextDial.set(peerId, t + REDIAL_MS);
      const conn = this.peer.connect(peerId, { reliable: true, serialization: "raw" }) as DataConnection | undefined;
      if (conn) this.adopt(conn, "dialed");
    }
  }

  /** Signaling dropped (PeerJS "disconnected"): open links stay; try again after the back-off. */
  private signalingLost(): void {
    if (this.retired || this.peer.destroyed || this.signalingTimer !== null) return;
    const delay = this.signalingDelay * (0.8 + 0.4 * Math.random());
    this.signalingDelay = Math.min(SIGNALING_RETRY_MAX_MS, this.signalingDelay * 2);
    this.opts.log(`signaling lost; reconnecting in ${(delay / 1000).toFixed(1)} s (open links stay up)`);
    this.signalingTimer = setTimeout(() => {
      this.signalingTimer = null;
      if (this.peer.destroyed || !this.peer.disconnected) return;
      this.signalingAttempts++;
      try {
        // Same id, same secret: a refusal closes the socket, which lands in signalingLost again.
        this.peer.reconnect();
      } catch (e) {
        this.opts.log(`signaling reconnect failed: ${e instanceof Error ? e.message : String(e)}`);
      }
    }, delay);
  }

  /** Registered with signaling (first time or again): dial what is missing. */
  private signalingBack(): void {
    if (!this.registered) {
      this.registered = true;
      this.opts.log(`signaling: registered ${Math.round(performance.now() - this.createdAt)} ms after start`);
    }
    if (this.signalingAttempts > 0) {
      this.signalingReconnects++;
      this.opts.log(`signaling back after ${this.signalingAttempts} attempt(s)`);
    }
    this.signalingAttempts = 0;
    this.signalingDelay = SIGNALING_RETRY_MIN_MS;
    this.dialMissing(true);
  }

  private adopt(conn: DataConnection, how: string): void {
    const existing = this.links.get(conn.peer);
    if (existing && existing.conn !== conn) existing.conn.close();
    const link: Link = {
      conn,
      open: false,
      since: performance.now(),
      lastHeard: performance.now(),
      ch: null,
      drain: null,
      unwantedSince: null,
    };
    this.links.set(conn.peer, link);
    conn.on("open", () => {
      this.opts.log(`link to ${this.wanted.has(conn.peer) ? `w${this.wanted.get(conn.peer)}` : conn.peer} (${how}) open after ${Math.round(performance.now() - link.since)} ms`);
      link.open = true;
      link.lastHeard = performance.now();
      this.frame(conn, link);
      this.opts.onPeerOpen(conn.peer);
    });
    conn.on("data", (data: unknown) => this.onData(conn.peer, link, data));
    conn.on("close", () => this.lose(conn.peer, link, "connection closed"));
    conn.on("error", (e) => this.opts.log(`peer ${conn.peer}: ${e instanceof Error ? e.message : String(e)}`));
  }

  private lose(peerId: string, link: Link, why: string): void {
    if (this.links.get(peerId) !== link) return;
    const wasOpen = link.open;
    this.close(peerId, link);
    this.opts.onPeerLost(peerId, why, wasOpen);
    // The dialing side dials it again (dialMissing) after REDIAL_MS if it is still wanted.
    this.nextDial.set(peerId, performance.now() + REDIAL_MS);
  }

  /** Forget a link and close its framing and connection. */
  private close(peerId: string, link: Link): void {
    this.links.delete(peerId);
    link.open = false;
    link.ch?.close();
    try {
      link.conn.close();
    } catch {
      // already closed
    }
  }

  private count(reason: RejectReason | UpdateRejectReason | "send-failed" | "rate-limited"): void {
    this.rejected.set(reason, (this.rejected.get(reason) ?? 0) + 1);
  }

  /** The link's framing, made when it opens or when its first frame comes, whichever is first. */
  private frame(conn: DataConnection, link: Link): FramedChannel {
    link.ch ??= new FramedChannel(conn.dataChannel, {
      maxMessageBytes: this.opts.maxMessageBytes,
      ids: this.ids,
      onMessage: (msg) => {
        if (msg.type !== FrameType.HEARTBEAT) this.opts.onMessage(conn.peer, msg);
      },
      onReject: (reason) => this.count(reason),
      onBytes: (dir, n) => (dir === "in" ? (this.bytesIn += n) : (this.bytesOut += n)),
      log: (line) => this.opts.log(`send to ${conn.peer} failed: ${line}`),
    });
    return link.ch;
  }

  private onData(peerId: string, link: Link, data: unknown): void {
    link.lastHeard = performance.now();
    // The side that accepted a link can get the dialer's first frames (a snapshot
    // or re-send request sent the moment the dialer saw it open) before its own
    // "open": they were dropped here, and the asker waited for its retry.
    const ch = this.frame(link.conn, link);
    ch.receive(data);
    if (ch.rejects > MAX_REJECTS) this.lose(peerId, link, `${ch.rejects} malformed frames`);
  }

  private heartbeat(): void {
    this.dialMissing();
    const now = performance.now();
    const beat = now - this.lastBeat >= HEARTBEAT_MS - CHECK_MS / 2;
    if (beat) this.lastBeat = now;
    for (const [peerId, link] of this.links) {
      link.ch?.expire();
      if (link.unwantedSince !== null && (!link.open || now - link.unwantedSince >= LINGER_MS)) {
        // Out of the view: closed quietly (not a loss to report, nor to dial again).
        this.close(peerId, link);
        continue;
      }
      if (!link.open) {
        if (now - link.since > OPEN_TIMEOUT_MS) this.lose(peerId, link, "did not open in time");
        continue;
      }
      if (now - link.lastHeard > SILENT_MS) {
        this.lose(peerId, link, `silent for ${Math.round(now - link.lastHeard)} ms`);
        continue;
      }
      const buffered = link.conn.dataChannel?.bufferedAmount ?? 0;
      link.drain ??= new DrainWatch(now);
      const stuck = link.drain.check(buffered, now);
      if (stuck >= STALL_MS) {
        // The connection's own states, for the log: what the browser thinks of a link that carries nothing.
        const pc = link.conn.peerConnection as RTCPeerConnection | undefined;
        const states = pc ? `; connection ${pc.connectionState}, ICE ${pc.iceConnectionState}, SCTP ${pc.sctp?.state ?? "?"}` : "";
        this.lose(peerId, link, `stalled: ${Math.round(buffered / 1024)} KB unsent for ${Math.round(stuck)} ms${states}`);
        continue;
      }
      if (beat) void this.send(peerId, FrameType.HEARTBEAT, 0, 0, new Uint8Array(0));
    }
  }

  /** Send one message to one peer, in order, respecting backpressure. */
  send(peerId: string, type: FrameType, sender: number, clock: number, payload: Uint8Array, encoding: Encoding = Encoding.F32): Promise<void> {
    return this.openChannel(peerId)?.send(type, sender, clock, payload, encoding) ?? Promise.resolve();
  }

  /** Send when the link is otherwise idle (FramedChannel.sendBackground): bulk that nothing waits for. */
  sendBackground(peerId: string, type: FrameType, sender: number, clock: number, payload: Uint8Array, encoding: Encoding = Encoding.F32): Promise<void> {
    return this.openChannel(peerId)?.sendBackground(type, sender, clock, payload, encoding) ?? Promise.resolve();
  }

  /** The framing of the link to `peerId` if that link is open (what is sent otherwise is dropped). */
  private openChannel(peerId: string): FramedChannel | null {
    const link = this.links.get(peerId);
    return link?.open === true ? link.ch : null;
  }

  broadcast(type: FrameType, sender: number, clock: number, payload: Uint8Array, encoding: Encoding = Encoding.F32): Promise<void> {
    return Promise.all(this.openPeers().map((p) => this.send(p, type, sender, clock, payload, encoding))).then(() => {});
  }

  /**
   * A message from `peerId` that reassembled but whose payload was refused
   * (e.g. an update that does not decode): counted like a malformed frame;
   * past the threshold the peer is disconnected.
   */
  malformed(peerId: string, reason: UpdateRejectReason): void {
    const link = this.links.get(peerId);
    this.count(reason);
    if (!link?.ch) return;
    link.ch.rejects++;
    if (link.ch.rejects > MAX_REJECTS) this.lose(peerId, link, `${link.ch.rejects} malformed messages`);
  }

  destroy(): void {
    this.stopChecks();
    if (this.signalingTimer !== null) clearTimeout(this.signalingTimer);
    for (const [peerId, link] of [...this.links]) this.close(peerId, link);
    this.peer.destroy();
  }
}
