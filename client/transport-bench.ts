/**
 * One end of the transport benchmark (`npm run bench -- transport`): two pages
 * open one RTCDataChannel (reliable, ordered; the bench relays the SDP), then
 * move the same payload bytes two ways, alternately:
 *
 * - raw: bare `send`s of 60 KiB slices with the same bufferedAmount water
 *   marks as ours, counted on arrival;
 * - ours: mnist-mlp-sized updates through `FramedChannel` (the page
 *   transport's framing: encode, chunk, backpressure; decode, reassemble,
 *   decode the update payload with its finiteness check).
 *
 * The receiver answers a one-byte ack when everything arrived; the sender
 * times from its first send to the ack.
 */
import { FramedChannel, HIGH_WATER, LOW_WATER, waitLow } from "./peer/framed.ts";
import { DEFAULT_MAX_CHUNK_BYTES, FrameType, MessageIdSource, decodeUpdatePayload, encodeUpdatePayload } from "./peer/frames.ts";

let pc: RTCPeerConnection | null = null;
let dc: RTCDataChannel | null = null;
let onData: (data: unknown) => void = () => {};
let ackWaiter: (() => void) | null = null;

function channel(): RTCDataChannel {
  if (!dc) throw new Error("no channel yet");
  return dc;
}

function wire(c: RTCDataChannel): void {
  c.binaryType = "arraybuffer";
  c.bufferedAmountLowThreshold = LOW_WATER;
  c.onmessage = (ev: MessageEvent) => {
    if (ev.data instanceof ArrayBuffer && ev.data.byteLength === 1 && ackWaiter) {
      const w = ackWaiter;
      ackWaiter = null;
      w();
      return;
    }
    onData(ev.data);
  };
  dc = c;
}

async function gathered(p: RTCPeerConnection): Promise<void> {
  if (p.iceGatheringState === "complete") return;
  await new Promise<void>((resolve) => {
    const done = (): void => {
      if (p.iceGatheringState !== "complete") return;
      p.removeEventListener("icegatheringstatechange", done);
      resolve();
    };
    p.addEventListener("icegatheringstatechange", done);
  });
}

function opened(c: RTCDataChannel): Promise<void> {
  return c.readyState === "open" ? Promise.resolve() : new Promise((r) => c.addEventListener("open", () => r(), { once: true }));
}

function ackPromise(): Promise<void> {
  return new Promise((r) => (ackWaiter = r));
}

const ACK = new Uint8Array([1]);

const api = {
  async offer(): Promise<string> {
    pc = new RTCPeerConnection();
    wire(pc.createDataChannel("bench", { ordered: true }));
    await pc.setLocalDescription(await pc.createOffer());
    await gathered(pc);
    return JSON.stringify(pc.localDescription);
  },
  async answer(offer: string): Promise<string> {
    pc = new RTCPeerConnection();
    const got = new Promise<void>((r) => {
      (pc as RTCPeerConnection).ondatachannel = (e) => {
        wire(e.channel);
        r();
      };
    });
    await pc.setRemoteDescription(JSON.parse(offer) as RTCSessionDescriptionInit);
    await pc.setLocalDescription(await pc.createAnswer());
    await gathered(pc);
    void got.then(() => opened(channel()));
    return JSON.stringify(pc.localDescription);
  },
  async accept(answer: string): Promise<void> {
    if (!pc) throw new Error("offer first");
    await pc.setRemoteDescription(JSON.parse(answer) as RTCSessionDescriptionInit);
    await opened(channel());
  },
  /** Receiver: count `total` bytes of bare sends, then ack. */
  expectRaw(total: number): void {
    let n = 0;
    onData = (data) => {
      n += data instanceof ArrayBuffer ? data.byteLength : 0;
      if (n >= total) channel().send(ACK);
    };
  },
  /** Sender: `total` bytes as bare 60 KiB sends; ms until the ack. */
  async sendRaw(total: number): Promise<number> {
    const c = channel();
    const buf = new Uint8Array(total);
    const acked = ackPromise();
    const t0 = performance.now();
    for (let off = 0; off < total; off += DEFAULT_MAX_CHUNK_BYTES) {
      if (c.bufferedAmount > HIGH_WATER) await waitLow(c);
      c.send(buf.subarray(off, Math.min(total, off + DEFAULT_MAX_CHUNK_BYTES)));
    }
    await acked;
    return performance.now() - t0;
  },
  /** Receiver: `count` updates of `floats` parameters through our framing, then ack. */
  expectOurs(count: number, floats: number): void {
    let n = 0;
    let bad = 0;
    const ch = new FramedChannel(channel(), {
      maxMessageBytes: floats * 4 + 1024,
      ids: new MessageIdSource(),
      onMessage: (msg) => {
        const d = decodeUpdatePayload(msg.payload, floats);
        if (!d.ok) bad++;
        else if (++n === count) channel().send(ACK);
      },
      onReject: () => bad++,
      log: () => {},
    });
    onData = (data) => ch.receive(data);
    (window as unknown as { benchBad: () => number }).benchBad = () => bad;
  },
  /** Sender: `count` updates of `floats` parameters through our framing; ms until the ack. */
  async sendOurs(count: number, floats: number): Promise<number> {
    const update = new Float32Array(floats).map((_, i) => Math.sin(i));
    const ch = new FramedChannel(channel(), { maxMessageBytes: floats * 4 + 1024, ids: new MessageIdSource(), onMessage: () => {}, onReject: () => {}, log: () => {} });
    const acked = ackPromise();
    const t0 = performance.now();
    for (let k = 1; k <= count; k++) void ch.send(FrameType.UPDATE, 1, k, encodeUpdatePayload(update));
    await acked;
    return performance.now() - t0;
  },
};

declare global {
  interface Window {
    transportBench?: typeof api;
  }
}
window.transportBench = api;
