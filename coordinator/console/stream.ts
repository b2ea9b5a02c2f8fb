/**
 * The console's side of GET /api/stream (protocol in coordinator/push.ts):
 * keeps the last full status as plain JSON, applies each delta to it and hands
 * the merged status to `onStatus`. Reports its state so the page can fall
 * back to polling while the stream is down.
 */
import { applyDelta, parseDelta, parseFull, type JsonObject } from "./delta.ts";

export const STREAM_URL = "/api/stream";

export type StreamState =
  /** Connecting or reconnecting: no status from the stream yet. */
  | "connecting"
  /** A full status arrived; deltas follow. */
  | "live"
  /** The stream failed (or the browser has no EventSource); poll instead. */
  | "down";

export interface StreamCallbacks {
  onStatus(status: JsonObject): void;
  onState(state: StreamState, why: string): void;
}

/** When the server refuses the stream outright (no event-stream answer), try again after this long. */
const REOPEN_AFTER_MS = 10_000;

export class StatusStream {
  readonly #url: string;
  readonly #cb: StreamCallbacks;
  #source: EventSource | null = null;
  #base: JsonObject | null = null;
  #seq = -1;
  #reopen: ReturnType<typeof setTimeout> | undefined;
  #closed = false;

  constructor(url: string, callbacks: StreamCallbacks) {
    this.#url = url;
    this.#cb = callbacks;
  }

  /** Opens the stream (idempotent). */
  start(): void {
    this.#closed = false;
    if (this.#source !== null) return;
    if (typeof EventSource === "undefined") {
      this.#cb.onState("down", "this browser has no EventSource");
      return;
    }
    const source = new EventSource(this.#url);
    this.#source = source;
    this.#cb.onState("connecting", "opening the live stream");
    source.addEventListener("full", (ev: MessageEvent<string>) => this.#onFull(ev.data));
    source.addEventListener("delta", (ev: MessageEvent<string>) => this.#onDelta(ev.data));
    source.addEventListener("error", () => {
      this.#base = null;
      if (source.readyState === EventSource.CLOSED) {
        // Refused (HTTP error, wrong content type): EventSource gives up; we retry later.
        this.#drop();
        this.#cb.onState("down", "the coordinator refused the live stream");
        this.#scheduleReopen();
      } else {
        this.#cb.onState("down", "the live stream was interrupted; reconnecting");
      }
    });
  }

  close(): void {
    this.#closed = true;
    clearTimeout(this.#reopen);
    this.#drop();
  }

  #drop(): void {
    this.#source?.close();
    this.#source = null;
    this.#base = null;
    this.#seq = -1;
  }

  #scheduleReopen(): void {
    clearTimeout(this.#reopen);
    this.#reopen = setTimeout(() => {
      if (!this.#closed) this.start();
    }, REOPEN_AFTER_MS);
  }

  /** Starts over from a fresh `full` (after a gap or an unreadable message). */
  #restart(why: string): void {
    this.#drop();
    this.#cb.onState("down", why);
    if (!this.#closed) this.start();
  }

  #onFull(data: string): void {
    const full = parseFull(safeJson(data));
    if (full === null) {
      this.#restart("the live stream sent an unreadable status");
      return;
    }
    this.#base = full.status;
    this.#seq = full.seq;
    this.#cb.onState("live", "live");
    this.#cb.onStatus(full.status);
  }

  #onDelta(data: string): void {
    const delta = parseDelta(safeJson(data));
    if (delta === null || this.#base === null || delta.seq !== this.#seq + 1) {
      this.#restart("the live stream skipped an update; starting over");
      return;
    }
    this.#seq = delta.seq;
    this.#base = applyDelta(this.#base, delta);
    this.#cb.onStatus(this.#base);
  }
}

function safeJson(text: string): unknown {
  try {
    return JSON.parse(text) as unknown;
  } catch {
    return undefined;
  }
}
