/**
 * Our framing over one open RTCDataChannel (reliable, ordered): messages out
 * as chunked frames, in order, never more than HIGH_WATER bytes buffered
 * (waiting for `bufferedamountlow` at LOW_WATER); frames in decoded and
 * reassembled under the byte caps, malformed ones counted. PeerTransport
 * (transport.ts) runs one per peer link; the transport benchmark runs one
 * over a bare channel.
 *
 * Background messages (`sendBackground`) go out only while no other message
 * waits and the channel's buffer is at or below LOW_WATER, one at a time: a
 * snapshot's retained updates (MBs) no longer hold up the updates a joiner
 * and its job wait for behind them.
 */
import { decodeFrame, encodeMessage, Encoding, FrameType, MessageIdSource, Reassembler, type ReceivedMessage, type RejectReason } from "./frames.ts";
import { PEER_FRAMES, TokenBucket } from "../../coordinator/ratelimit.ts";

export const HIGH_WATER = 1 << 20;
export const LOW_WATER = 256 * 1024;

/** What FramedChannel needs of an RTCDataChannel (a fake one in unit tests). */
export interface FrameSink {
  readonly readyState: RTCDataChannelState;
  readonly bufferedAmount: number;
  bufferedAmountLowThreshold: number;
  send(data: ArrayBuffer): void;
  addEventListener(type: "bufferedamountlow" | "close", listener: () => void): void;
  removeEventListener(type: "bufferedamountlow" | "close", listener: () => void): void;
}

export interface FramedChannelOptions {
  /** Largest message accepted, in bytes. */
  readonly maxMessageBytes: number;
  readonly ids: MessageIdSource;
  readonly onMessage: (msg: ReceivedMessage) => void;
  readonly onReject: (reason: RejectReason | "send-failed" | "rate-limited") => void;
  readonly onBytes?: (direction: "in" | "out", bytes: number) => void;
  readonly log: (line: string) => void;
}

export class FramedChannel {
  private chain: Promise<void> = Promise.resolve();
  /** Messages in `chain` not sent yet (background ones wait while any are). */
  private pending = 0;
  /** Background messages not handed to `chain` yet, each with its caller's resolve. */
  private readonly background: { send: () => Promise<void>; done: () => void }[] = [];
  private pumping = false;
  private readonly reassembler: Reassembler;
  /** Frames a peer may send: far above any real traffic, it only cuts floods off (counted as rejects). */
  private readonly bucket = new TokenBucket(PEER_FRAMES.perSecond, PEER_FRAMES.burst);
  private closed = false;
  rejects = 0;

  constructor(
    private readonly dc: FrameSink,
    private readonly opts: FramedChannelOptions,
  ) {
    dc.bufferedAmountLowThreshold = LOW_WATER;
    this.reassembler = new Reassembler({ maxMessageBytes: opts.maxMessageBytes, maxPendingMessages: 64, timeoutMs: 30_000 });
  }

  send(type: FrameType, sender: number, clock: number, payload: Uint8Array, encoding: Encoding = Encoding.F32): Promise<void> {
    if (this.closed) return Promise.resolve();
    const frames = encodeMessage({ type, encoding, job: 0, sender, clock, messageId: this.opts.ids.next(), payload });
    const dc = this.dc;
    this.pending++;
    // A failed send must not poison the chain: later messages still go out in order.
    this.chain = this.chain.catch(() => {}).then(async () => {
      for (const f of frames) {
        // The channel may close mid-message.
        if (this.closed || dc.readyState !== "open") return;
        if (dc.bufferedAmount > HIGH_WATER) {
          await waitLow(dc);
          // The wait also ends when the channel closes: the rest of the message is dropped, not sent into it.
          if (this.closed || dc.readyState !== "open") return;
        }
        try {
          dc.send(f);
          this.opts.onBytes?.("out", f.byteLength);
        } catch (e) {
          this.opts.onReject("send-failed");
          this.opts.log(e instanceof Error ? e.message : String(e));
          return;
        }
      }
    }).finally(() => {
      this.pending--;
      void this.pump();
    });
    return this.chain;
  }

  /**
   * Send when the channel is otherwise idle (see the file comment). Resolves
   * once sent, or at once when the channel is closed (the message dropped).
   */
  sendBackground(type: FrameType, sender: number, clock: number, payload: Uint8Array, encoding: Encoding = Encoding.F32): Promise<void> {
    if (this.closed) return Promise.resolve();
    return new Promise((done) => {
      this.background.push({ send: () => this.send(type, sender, clock, payload, encoding), done });
      void this.pump();
    });
  }

  /** Background messages waiting (tests, diagnostics). */
  get backgroundQueued(): number {
    return this.background.length;
  }

  private async pump(): Promise<void> {
    if (this.pumping) return;
    this.pumping = true;
    try {
      while (this.background.length > 0) {
        if (this.closed) {
          for (const b of this.background.splice(0)) b.done();
          return;
        }
        // Another message waits: its completion pumps again.
        if (this.pending > 0) return;
        if (this.dc.bufferedAmount > LOW_WATER) {
          await waitLow(this.dc);
          continue;
        }
        const next = this.background.shift() as { send: () => Promise<void>; done: () => void };
        await next.send().catch(() => {});
        next.done();
      }
    } finally {
      this.pumping = false;
    }
  }

  receive(data: unknown): void {
    if (!this.bucket.take()) {
      this.opts.onReject("rate-limited");
      this.rejects++;
      return;
    }
    if (!(data instanceof ArrayBuffer)) {
      this.opts.onReject("not-binary");
      this.rejects++;
      return;
    }
    this.opts.onBytes?.("in", data.byteLength);
    const d = decodeFrame(data);
    if (!d.ok) {
      this.opts.onReject(d.reason);
      this.rejects++;
      return;
    }
    const r = this.reassembler.push(d.frame);
    if (r.status === "complete") this.opts.onMessage(r.message);
    else if (r.status === "rejected") {
      this.opts.onReject(r.reason);
      this.rejects++;
    }
  }

  /** Drop chunk sets that never completed. */
  expire(): void {
    this.reassembler.expire();
  }

  close(): void {
    this.closed = true;
    for (const b of this.background.splice(0)) b.done();
  }
}

/**
 * A link whose buffered bytes have not gone down for this long is stalled:
 * seen in harness runs after a snapshot and its catch-up (MBs) went to a
 * joiner on a loaded machine, the channel then carried nothing, heartbeats
 * included, for 3–14 s, while each side waited for the other's updates.
 * Closed and dialed again, the link came back within 0.1 s.
 */
export const STALL_MS = 2000;
/**
 * Only a backlog this large counts as a stall (the stalls above held 0.2–1 MB):
 * a link that holds back an update or two (31 KB each for mnist-softmax) for
 * 2 s on a busy machine usually drains by itself, and one that does not also
 * stops carrying heartbeats, so its peer finds it silent (SILENT_MS) anyway.
 */
export const STALL_MIN_BYTES = 128 * 1024;

/** Watches one channel's `bufferedAmount` for progress (see STALL_MS, STALL_MIN_BYTES). */
export class DrainWatch {
  private last = 0;
  private progressAt: number;

  constructor(now: number) {
    this.progressAt = now;
  }

  /**
   * One look at the buffer: how long bytes have waited in it without any
   * leaving (0 while it drains, or holds less than STALL_MIN_BYTES).
   */
  check(buffered: number, now: number): number {
    if (buffered === 0 || buffered < this.last) this.progressAt = now;
    this.last = buffered;
    return buffered >= STALL_MIN_BYTES ? now - this.progressAt : 0;
  }
}

export function waitLow(dc: Pick<FrameSink, "addEventListener" | "removeEventListener">): Promise<void> {
  return new Promise((resolve) => {
    const done = (): void => {
      dc.removeEventListener("bufferedamountlow", done);
      dc.removeEventListener("close", done);
      resolve();
    };
    dc.addEventListener("bufferedamountlow", done);
    dc.addEventListener("close", done);
  });
}
