/**
 * FramedChannel over a fake data channel: messages in order, background
 * messages only while the channel is otherwise idle and its buffer low, and
 * what a closed channel does with the background messages still waiting.
 */
import { describe, expect, it } from "vitest";
import { DrainWatch, FramedChannel, HIGH_WATER, LOW_WATER, STALL_MIN_BYTES, STALL_MS, type FrameSink } from "../../client/peer/framed.ts";
import { decodeFrame, FrameType, MessageIdSource, type ReceivedMessage } from "../../client/peer/frames.ts";

/** A data channel that keeps what is sent; its buffer level is set by the test. */
class FakeChannel implements FrameSink {
  readyState: RTCDataChannelState = "open";
  bufferedAmount = 0;
  bufferedAmountLowThreshold = 0;
  readonly sent: ArrayBuffer[] = [];
  private readonly listeners = new Map<string, Set<() => void>>();
  send(data: ArrayBuffer): void {
    this.sent.push(data);
  }
  addEventListener(type: string, f: () => void): void {
    let s = this.listeners.get(type);
    if (!s) this.listeners.set(type, (s = new Set()));
    s.add(f);
  }
  removeEventListener(type: string, f: () => void): void {
    this.listeners.get(type)?.delete(f);
  }
  /** The buffer drained to `level`: "bufferedamountlow" fires when it crosses the threshold. */
  drain(level: number): void {
    this.bufferedAmount = level;
    if (level <= this.bufferedAmountLowThreshold) for (const f of [...(this.listeners.get("bufferedamountlow") ?? [])]) f();
  }
  fireClose(): void {
    for (const f of [...(this.listeners.get("close") ?? [])]) f();
  }
  /** (type, clock) of each message sent, in order (every message here is one frame). */
  order(): [FrameType, number][] {
    return this.sent.map((b) => {
      const d = decodeFrame(b);
      if (!d.ok) throw new Error(d.reason);
      return [d.frame.type, d.frame.clock];
    });
  }
}

const channel = (dc: FakeChannel, onMessage: (m: ReceivedMessage) => void = () => {}): FramedChannel =>
  new FramedChannel(dc, { maxMessageBytes: 1 << 20, ids: new MessageIdSource(), onMessage, onReject: () => {}, log: () => {} });
const payload = new Uint8Array(64);
const tick = (): Promise<void> => new Promise((r) => setTimeout(r, 0));

describe("framed channel", () => {
  it("lets messages sent after a backlog of background messages overtake all but the one in flight", async () => {
    const dc = new FakeChannel();
    const ch = channel(dc);
    const bg = [1, 2, 3, 4, 5].map((c) => ch.sendBackground(FrameType.RETAINED, 1, c, payload));
    const fg = [100, 101].map((c) => ch.send(FrameType.UPDATE, 2, c, payload));
    await Promise.all([...bg, ...fg]);
    expect(dc.order()).toEqual([
      [FrameType.RETAINED, 1],
      [FrameType.UPDATE, 100],
      [FrameType.UPDATE, 101],
      [FrameType.RETAINED, 2],
      [FrameType.RETAINED, 3],
      [FrameType.RETAINED, 4],
      [FrameType.RETAINED, 5],
    ]);
    // A receiving channel gets all seven, whole, in the order sent.
    const got: [FrameType, number][] = [];
    const rx = channel(new FakeChannel(), (m) => got.push([m.type, m.clock]));
    for (const b of dc.sent) rx.receive(b);
    expect(got).toEqual(dc.order());
  });

  it("holds background messages while the buffer is above the low-water mark, not other messages", async () => {
    const dc = new FakeChannel();
    const ch = channel(dc);
    expect(dc.bufferedAmountLowThreshold).toBe(LOW_WATER);
    dc.bufferedAmount = LOW_WATER + 1; // above low water, below high water
    expect(LOW_WATER + 1).toBeLessThan(HIGH_WATER);
    let bgDone = false;
    const bg = ch.sendBackground(FrameType.RETAINED, 1, 7, payload).then(() => (bgDone = true));
    await ch.send(FrameType.UPDATE, 2, 50, payload);
    await tick();
    expect(dc.order()).toEqual([[FrameType.UPDATE, 50]]);
    expect(bgDone).toBe(false);
    expect(ch.backgroundQueued).toBe(1); // still queued: the buffer is not low yet
    dc.drain(0);
    await bg;
    expect(dc.order()).toEqual([
      [FrameType.UPDATE, 50],
      [FrameType.RETAINED, 7],
    ]);
  });

  it("drops the background messages still waiting when it closes, and settles their promises", async () => {
    const dc = new FakeChannel();
    const ch = channel(dc);
    dc.bufferedAmount = LOW_WATER + 1;
    const bg = [1, 2, 3].map((c) => ch.sendBackground(FrameType.RETAINED, 1, c, payload));
    await tick();
    ch.close();
    dc.drain(0); // the close event of a real channel also wakes the wait
    await Promise.all(bg);
    expect(dc.sent).toHaveLength(0);
    expect(ch.backgroundQueued).toBe(0);
    await ch.sendBackground(FrameType.RETAINED, 1, 4, payload);
    expect(dc.sent).toHaveLength(0);
  });

  it("a message waiting for the buffer to drain when the channel closes is dropped, not sent into the closed channel", async () => {
    const dc = new FakeChannel();
    const failures: string[] = [];
    const ch = new FramedChannel(dc, { maxMessageBytes: 1 << 20, ids: new MessageIdSource(), onMessage: () => {}, onReject: (r) => failures.push(r), log: () => {} });
    dc.bufferedAmount = HIGH_WATER + 1;
    const sent = ch.send(FrameType.UPDATE, 1, 9, payload);
    await tick();
    expect(dc.sent).toHaveLength(0);
    // The real channel fires "close" and refuses send() from then on.
    dc.readyState = "closed";
    dc.send = () => {
      throw new Error("RTCDataChannel.readyState is not 'open'");
    };
    dc.fireClose();
    await sent;
    expect(failures).toEqual([]);
  });
});

describe("a link's drain watch", () => {
  it("reports how long buffered bytes have not gone down, and resets when some leave or the buffer empties", () => {
    const w = new DrainWatch(0);
    const kb = 1024;
    expect(w.check(0, 100)).toBe(0);
    expect(w.check(500 * kb, 200)).toBe(100); // bytes came in at 200; none left since the last progress at 100
    expect(w.check(900 * kb, 1200)).toBe(1100); // more sent, none left
    expect(w.check(900 * kb, 2300)).toBeGreaterThanOrEqual(STALL_MS);
    expect(w.check(800 * kb, 2400)).toBe(0); // some left
    expect(w.check(800 * kb, 3000)).toBe(600);
    expect(w.check(0, 3100)).toBe(0);
    expect(w.check(STALL_MIN_BYTES, 3200)).toBe(100);
  });

  it("leaves a small backlog to the silence rule: one update held back is no stall", () => {
    const w = new DrainWatch(0);
    // One mnist-softmax update (31 KB) that has not left for 5 s.
    for (let t = 0; t <= 5000; t += 250) expect(w.check(31 * 1024, t)).toBe(0);
    // The backlog grows past the floor without anything leaving: counted from the last progress.
    expect(w.check(STALL_MIN_BYTES + 1, 5250)).toBe(5250);
  });
});
