/**
 * Spreads a large fan-out (one view epoch to thousands of workers) over
 * event-loop turns, without changing the order in which any one worker
 * receives its messages.
 *
 * Each send on a loopback or LAN socket is one system call (~10–25 µs of the
 * coordinator's CPU). A view delta to 2,000 workers done in one synchronous
 * loop kept the event loop busy for 30–50 ms, and every clock report that
 * arrived meanwhile waited that long for its ack. The outbox sends the first
 * `chunk` deliveries at once and the rest `chunk` per turn (`setImmediate`,
 * so incoming reports are read and acked between chunks).
 *
 * Order per worker is exactly that of a synchronous fan-out: anything sent
 * to a worker that still has queued deliveries (an ack, `finish`, the next
 * epoch) first sends those. Across workers there is no order to keep: each
 * page has its own socket.
 *
 * Those deliveries and the message that released them go out together when
 * the sink can group sends (`together`: the socket corked around them, so a
 * view delta still queued when its worker reports rides in the same write as
 * the ack: one system call instead of two). The messages and their order on
 * the wire are unchanged.
 */

/**
 * Where messages for one worker go (the function identifies the worker).
 * `together`, when present, runs `sends` (several calls of this sink) as one
 * write to the worker's connection.
 */
export type Sink<M> = ((message: M) => void) & { readonly together?: (sends: () => void) => void };

/** `send` with the grouping of `like` (a wrapper of a sink keeps the sink's `together`). */
export function sinkLike<M>(send: (message: M) => void, like: Sink<M>): Sink<M> {
  return like.together ? Object.assign(send, { together: like.together }) : send;
}

export class Outbox<M> {
  /** Queued deliveries per worker, in the order they were posted; Map order is the drain order. */
  private readonly queued = new Map<Sink<M>, M[]>();
  private scheduled = false;

  /**
   * `chunk`: deliveries per event-loop turn (and sent at once by `fanout`).
   * `schedule`: how the next turn is requested (setImmediate; tests may drive it).
   */
  constructor(
    private readonly chunk = 128,
    private readonly schedule: (fn: () => void) => void = (fn) => void setImmediate(fn),
  ) {
    if (!Number.isInteger(chunk) || chunk < 1) throw new Error(`outbox chunk ${chunk}: want an integer ≥ 1`);
  }

  /** Deliveries not made yet (for tests and status). */
  get pending(): number {
    let n = 0;
    for (const ms of this.queued.values()) n += ms.length;
    return n;
  }

  /** Send `message` now, after whatever is still queued for this worker. */
  send(sink: Sink<M>, message: M): void {
    const q = this.queued.get(sink);
    if (!q) {
      sink(message);
      return;
    }
    this.queued.delete(sink);
    q.push(message);
    deliver(sink, q);
  }

  /**
   * One message per worker (`deliveries` in the order to serve them): the
   * first `chunk` workers at once, the others over the next turns.
   */
  fanout(deliveries: Iterable<readonly [Sink<M>, M]>): void {
    let now = this.chunk;
    for (const [sink, message] of deliveries) {
      if (now > 0 && !this.queued.has(sink)) {
        now--;
        sink(message);
        continue;
      }
      const q = this.queued.get(sink);
      if (q) q.push(message);
      else this.queued.set(sink, [message]);
    }
    this.arm();
  }

  /** Send now whatever is still queued for this worker (e.g. it is leaving: what a synchronous fan-out would have given it). */
  release(sink: Sink<M>): void {
    const q = this.queued.get(sink);
    if (!q) return;
    this.queued.delete(sink);
    deliver(sink, q);
  }

  private arm(): void {
    if (this.scheduled || this.queued.size === 0) return;
    this.scheduled = true;
    this.schedule(() => {
      this.scheduled = false;
      let n = 0;
      for (const sink of this.queued.keys()) {
        if (n++ >= this.chunk) break;
        this.release(sink);
      }
      this.arm();
    });
  }
}

/** `messages` to `sink` in order, as one write when the sink can group them. */
function deliver<M>(sink: Sink<M>, messages: readonly M[]): void {
  if (messages.length > 1 && sink.together) sink.together(() => {
    for (const m of messages) sink(m);
  });
  else for (const m of messages) sink(m);
}
