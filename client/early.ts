/**
 * Peers' updates that reach a worker before its replica can take them: a
 * joiner's peers send their updates as soon as its links open, but its replica
 * starts only when its snapshot is loaded (or, after a coordinator restart,
 * its base). Refused, each would be sent again after the snapshot (a re-send
 * round trip per author, and the same bytes twice over links that are busiest
 * at a join); held, they are applied the moment the replica starts.
 *
 * Bounded in count and bytes: past either bound an update is refused and
 * asked for again later like any other gap.
 */
export interface HeldUpdate {
  readonly sender: string;
  readonly clock: number;
  readonly buffer: ArrayBuffer;
}

export const EARLY_MAX_COUNT = 512;
export const EARLY_MAX_BYTES = 32 * 1024 * 1024;

export class EarlyUpdates {
  private held: HeldUpdate[] = [];
  private bytes = 0;

  constructor(
    private readonly maxCount = EARLY_MAX_COUNT,
    private readonly maxBytes = EARLY_MAX_BYTES,
  ) {}

  /** Keep one update; false (not kept) past the bounds. */
  hold(sender: string, clock: number, buffer: ArrayBuffer): boolean {
    if (this.held.length >= this.maxCount || this.bytes + buffer.byteLength > this.maxBytes) return false;
    this.held.push({ sender, clock, buffer });
    this.bytes += buffer.byteLength;
    return true;
  }

  get count(): number {
    return this.held.length;
  }

  /** Everything held, oldest clock first (each author's in order), and forget it. */
  take(): HeldUpdate[] {
    const out = this.held.sort((a, b) => a.clock - b.clock || (a.sender < b.sender ? -1 : a.sender > b.sender ? 1 : 0));
    this.held = [];
    this.bytes = 0;
    return out;
  }
}
