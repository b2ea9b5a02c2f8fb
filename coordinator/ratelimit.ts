/**
 * Per-connection limits against floods and misbehaving senders (pure, no
 * I/O; used by the coordinator's /ws and by the page for peer frames).
 *
 * - `TokenBucket`: `rate` tokens per second up to `burst`; each message takes
 *   one. A sender within its rate never notices; a flood is cut off at once
 *   and costs O(1) per message.
 * - `RejectionBook`: rejections per reason code for one sender, and whether it
 *   went over the threshold after which it is dropped as `misbehaving`.
 */

export class TokenBucket {
  private tokens: number;
  private last: number;

  constructor(
    private readonly rate: number,
    private readonly burst: number,
    private readonly now: () => number = () => performance.now(),
  ) {
    this.tokens = burst;
    this.last = now();
  }

  /** Take `n` tokens if there are that many; false (nothing taken) otherwise. */
  take(n = 1): boolean {
    const t = this.now();
    this.tokens = Math.min(this.burst, this.tokens + ((t - this.last) / 1000) * this.rate);
    this.last = t;
    if (this.tokens < n) return false;
    this.tokens -= n;
    return true;
  }
}

/** Limits of the control socket: clock reports come ~5/s, heartbeats 1/s. */
export const CONTROL_RATE = { perSecond: 100, burst: 300 } as const;
/**
 * Frames a page accepts from one peer: a full update is at most a few dozen
 * 64 KiB chunks and a joiner's snapshot a few thousand, so only a flood
 * reaches this; past it frames are dropped and counted as rejects, and the
 * peer is disconnected after enough of them.
 */
export const PEER_FRAMES = { perSecond: 20_000, burst: 40_000 } as const;
/** Rejections (of any code) after which a sender is dropped and its socket closed. */
export const MAX_REJECTIONS = 20;

export class RejectionBook<Code extends string> {
  private readonly byCode = new Map<Code, number>();
  private totalCount = 0;

  constructor(private readonly max: number = MAX_REJECTIONS) {}

  /** Count one rejection; true when the sender is now over the threshold. */
  add(code: Code): boolean {
    this.byCode.set(code, (this.byCode.get(code) ?? 0) + 1);
    this.totalCount++;
    return this.totalCount > this.max;
  }

  get total(): number {
    return this.totalCount;
  }

  /** `{ code: count }` for the status. */
  counts(): Partial<Record<Code, number>> {
    const out: Partial<Record<Code, number>> = {};
    for (const [k, v] of this.byCode) out[k] = v;
    return out;
  }
}
