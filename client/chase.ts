/**
 * When a worker that waits for updates asks its peers for them again
 * (anti-entropy): only once none has come for a while. While they come, a
 * re-send only duplicates what is on its way, and a link carrying a long
 * catch-up clogged with the copies until it went silent.
 */
export class AskWhenStalled {
  /** What has come so far (a sum of vector-clock entries); NaN: not waiting. */
  private progress = Number.NaN;
  private since = 0;
  private asked = false;

  /**
   * @param firstMs no progress for this long before the first ask
   * @param againMs then no progress (nor ask) for this long before each next one
   */
  constructor(
    private readonly firstMs: number,
    private readonly againMs: number,
  ) {}

  /** At `now`, `progress` has come: true when it is time to ask again. */
  due(progress: number, now: number): boolean {
    if (progress !== this.progress) {
      this.progress = progress;
      this.since = now;
      return false;
    }
    if (now - this.since <= (this.asked ? this.againMs : this.firstMs)) return false;
    this.since = now;
    this.asked = true;
    return true;
  }

  /** The wait is over: the next one starts afresh. */
  reset(): void {
    this.progress = Number.NaN;
    this.asked = false;
  }
}
