/**
 * Pure formatting and ordering for the console: no DOM, no I/O, so every
 * function here is unit-tested (test/unit/console-format.test.ts).
 */
import type { Digest, GridEvent, Status, WorkerStatus } from "./status.ts";

/** Shown where a value does not exist (yet). */
export const MISSING = "—";

const counts = new Intl.NumberFormat("en-US", { maximumFractionDigits: 0 });

/** `7850` → `"7,850"`. */
export function formatCount(n: number | null | undefined): string {
  return n == null ? MISSING : counts.format(n);
}

/** A rate with about three significant digits: `4.1` → `"4.10"`, `525.4` → `"525"`. */
export function formatRate(x: number | null | undefined): string {
  if (x == null) return MISSING;
  const abs = Math.abs(x);
  if (abs >= 1000) return counts.format(x);
  if (abs >= 100) return x.toFixed(0);
  if (abs >= 10) return x.toFixed(1);
  return x.toFixed(2);
}

/** A metric value (loss, accuracy) with four significant digits. */
export function formatMetric(x: number | null | undefined): string {
  if (x == null) return MISSING;
  if (x === 0) return "0";
  const abs = Math.abs(x);
  if (abs >= 1e5 || abs < 1e-3) return x.toExponential(3);
  return String(Number(x.toPrecision(4)));
}

/** Time since a worker was last heard from: `250` → `"250 ms"`, `3200` → `"3.2 s"`. */
export function formatAge(ms: number | null | undefined): string {
  if (ms == null) return MISSING;
  if (ms < 1000) return `${Math.round(ms)} ms`;
  if (ms < 60_000) return `${(ms / 1000).toFixed(1)} s`;
  if (ms < 3_600_000) return `${Math.floor(ms / 60_000)} min ${Math.floor((ms % 60_000) / 1000)} s`;
  return `${Math.floor(ms / 3_600_000)} h ${Math.floor((ms % 3_600_000) / 60_000)} min`;
}

/** A byte count in decimal units: `1234567` → `"1.23 MB"`. */
export function formatBytes(n: number | null | undefined): string {
  if (n == null) return MISSING;
  const units = ["B", "kB", "MB", "GB", "TB"];
  let x = n;
  let u = 0;
  while (Math.abs(x) >= 1000 && u < units.length - 1) {
    x /= 1000;
    u++;
  }
  return u === 0 ? `${Math.round(x)} B` : `${x >= 100 ? x.toFixed(0) : x >= 10 ? x.toFixed(1) : x.toFixed(2)} ${units[u]}`;
}

/** Local wall-clock time of an event: `"14:03:07"`. */
export function formatTime(t: number): string {
  const d = new Date(t);
  const two = (n: number): string => String(n).padStart(2, "0");
  return `${two(d.getHours())}:${two(d.getMinutes())}:${two(d.getSeconds())}`;
}

/** Short form of a replica digest for the table, and the full text for a tooltip. */
export function formatDigest(digest: Digest | null | undefined): { short: string; full: string } {
  if (digest == null) return { short: MISSING, full: "" };
  if (typeof digest === "string") {
    const short = digest.length > 10 ? `${digest.slice(0, 10)}…` : digest;
    return { short, full: digest };
  }
  const short = `sum ${formatMetric(digest.sum)} · l2 ${formatMetric(digest.l2)}`;
  const proj = digest.proj.map((p) => String(p)).join(", ");
  return { short, full: `sum ${digest.sum}, l2 ${digest.l2}, proj [${proj}]` };
}

/** `"ssp", 3` → `"SSP, staleness 3"`; BSP and ASP ignore the bound. */
export function consistencyLabel(mode: string, staleness: number): string {
  const upper = mode.toUpperCase();
  if (mode === "ssp") return `${upper}, staleness ${staleness}`;
  return upper;
}

/** The clock everyone's lag is measured against: the status's max, else the workers' max. */
export function maxClock(status: Pick<Status, "clock" | "workers">): number | null {
  if (status.clock.max != null) return status.clock.max;
  let max: number | null = null;
  for (const w of status.workers) if (w.state !== "dropped" && w.state !== "left") max = max == null ? w.clock : Math.max(max, w.clock);
  return max;
}

/**
 * How many clocks a worker is behind the maximum (never negative); null for a
 * worker that is out of the view (dropped or left), whose lag would only grow.
 */
export function workerLag(worker: Pick<WorkerStatus, "clock" | "state">, max: number | null): number | null {
  if (max == null || worker.state === "dropped" || worker.state === "left") return null;
  return Math.max(0, max - worker.clock);
}

/** True when a lag holds the fast workers back under the given consistency. */
export function lagExceedsBound(lag: number | null, mode: string, staleness: number): boolean {
  if (lag == null) return false;
  if (mode === "bsp") return lag > 0;
  if (mode === "ssp") return lag > staleness;
  return false;
}

/** The row class that makes a worker stand out (`worker-straggler`, …), or "" for a healthy one. */
export function workerRowClass(state: string): string {
  return state === "straggler" || state === "dropped" || state === "left" ? `worker-${state}` : "";
}

/** A worker not heard from for this long is flagged in the table. */
export const SILENT_AFTER_MS = 5000;

const KNOWN_JOB_STATES = new Set(["running", "paused", "done", "failed", "waiting"]);

/** CSS class of the job-state badge; unknown states get a neutral one. */
export function jobStateClass(state: string): string {
  return KNOWN_JOB_STATES.has(state) ? `state-${state}` : "state-other";
}

/** Which control buttons make sense in a job state. */
export function controlsFor(state: string | null): { pause: boolean; resume: boolean; stop: boolean } {
  switch (state) {
    case "running":
    case "waiting":
      return { pause: true, resume: false, stop: true };
    case "paused":
      return { pause: false, resume: true, stop: true };
    case "done":
    case "failed":
      return { pause: false, resume: false, stop: false };
    default:
      // Unknown or not loaded yet: let the coordinator decide.
      return { pause: true, resume: true, stop: true };
  }
}

// ---------------------------------------------------------------- worker table

export interface TableContext {
  maxClock: number | null;
  mode: string;
  staleness: number;
}

export type SortKey =
  | "id" | "name" | "state" | "clock" | "lag" | "stepsPerSec" | "batch" | "examplesPerSec"
  | "backend" | "kernel" | "adapter" | "bytesIn" | "bytesOut" | "peers" | "lastSeenMs" | "digest";

export interface Column {
  key: SortKey;
  label: string;
  numeric: boolean;
  /** Value compared when sorting; null sorts last whichever the direction. */
  sortValue(w: WorkerStatus, ctx: TableContext): string | number | null;
  text(w: WorkerStatus, ctx: TableContext): string;
}

const str = (s: string | null | undefined): string => (s == null || s === "" ? MISSING : s);

export const COLUMNS: readonly Column[] = [
  { key: "id", label: "ID", numeric: false, sortValue: (w) => w.id, text: (w) => w.id },
  { key: "name", label: "Name", numeric: false, sortValue: (w) => w.name ?? null, text: (w) => str(w.name) },
  { key: "state", label: "State", numeric: false, sortValue: (w) => w.state, text: (w) => (w.paused === true ? `${w.state} (paused)` : w.state) },
  { key: "clock", label: "Clock", numeric: true, sortValue: (w) => w.clock, text: (w) => formatCount(w.clock) },
  {
    key: "lag", label: "Lag", numeric: true,
    sortValue: (w, c) => workerLag(w, c.maxClock),
    text: (w, c) => formatCount(workerLag(w, c.maxClock)),
  },
  { key: "stepsPerSec", label: "Steps/s", numeric: true, sortValue: (w) => w.stepsPerSec ?? null, text: (w) => formatRate(w.stepsPerSec) },
  { key: "batch", label: "Batch", numeric: true, sortValue: (w) => w.batch ?? null, text: (w) => formatCount(w.batch) },
  { key: "examplesPerSec", label: "Examples/s", numeric: true, sortValue: (w) => w.examplesPerSec ?? null, text: (w) => formatRate(w.examplesPerSec) },
  { key: "backend", label: "Backend", numeric: false, sortValue: (w) => w.backend ?? null, text: (w) => str(w.backend) },
  { key: "kernel", label: "Kernel", numeric: false, sortValue: (w) => w.kernel ?? null, text: (w) => str(w.kernel) },
  { key: "adapter", label: "Adapter", numeric: false, sortValue: (w) => w.adapter ?? null, text: (w) => str(w.adapter) },
  { key: "bytesIn", label: "In", numeric: true, sortValue: (w) => w.bytesIn ?? null, text: (w) => formatBytes(w.bytesIn) },
  { key: "bytesOut", label: "Out", numeric: true, sortValue: (w) => w.bytesOut ?? null, text: (w) => formatBytes(w.bytesOut) },
  { key: "peers", label: "Peers", numeric: true, sortValue: (w) => w.peers ?? null, text: (w) => formatCount(w.peers) },
  { key: "lastSeenMs", label: "Last seen", numeric: true, sortValue: (w) => w.lastSeenMs ?? null, text: (w) => formatAge(w.lastSeenMs) },
  {
    key: "digest", label: "Digest", numeric: false,
    sortValue: (w) => (w.digest == null ? null : formatDigest(w.digest).full),
    text: (w) => formatDigest(w.digest).short,
  },
];

export interface SortState {
  key: SortKey | null;
  dir: "asc" | "desc";
}

const collator = new Intl.Collator("en", { numeric: true, sensitivity: "base" });

function compareValues(a: string | number | null, b: string | number | null): number {
  if (typeof a === "number" && typeof b === "number") return a - b;
  return collator.compare(String(a), String(b));
}

/**
 * Workers in table order: the coordinator's order when no column is chosen,
 * else by that column (ties by id, missing values last in both directions).
 */
export function sortWorkers(workers: readonly WorkerStatus[], sort: SortState, ctx: TableContext): WorkerStatus[] {
  const column = COLUMNS.find((c) => c.key === sort.key);
  if (column === undefined) return [...workers];
  const sign = sort.dir === "asc" ? 1 : -1;
  return [...workers].sort((x, y) => {
    const a = column.sortValue(x, ctx);
    const b = column.sortValue(y, ctx);
    if (a == null || b == null) {
      if (a == null && b == null) return collator.compare(x.id, y.id);
      return a == null ? 1 : -1;
    }
    const c = compareValues(a, b);
    return c !== 0 ? sign * c : collator.compare(x.id, y.id);
  });
}

/** Clicking a header: a new column sorts ascending (numbers descending: biggest lag first), the same one flips. */
export function nextSort(current: SortState, key: SortKey): SortState {
  if (current.key === key) return { key, dir: current.dir === "asc" ? "desc" : "asc" };
  const column = COLUMNS.find((c) => c.key === key);
  return { key, dir: column?.numeric === true ? "desc" : "asc" };
}

// ---------------------------------------------------------------- events, charts

/** Newest first, at most `limit` (stable for equal times: later in the list counts as newer). */
export function eventsNewestFirst(events: readonly GridEvent[], limit = 200): GridEvent[] {
  return events
    .map((e, i) => ({ e, i }))
    .sort((a, b) => b.e.t - a.e.t || b.i - a.i)
    .slice(0, limit)
    .map(({ e }) => e);
}

/** `[clock, value]` pairs as uPlot's aligned columns, ordered by clock. */
export function toAligned(pairs: readonly (readonly [number, number])[]): [number[], number[]] {
  const sorted = [...pairs].sort((a, b) => a[0] - b[0]);
  return [sorted.map((p) => p[0]), sorted.map((p) => p[1])];
}

/** A cheap fingerprint of a series, to skip redrawing a chart whose data did not change. */
export function seriesKey(pairs: readonly (readonly [number, number])[]): string {
  const last = pairs[pairs.length - 1];
  const first = pairs[0];
  return `${pairs.length}:${first?.[0]}:${first?.[1]}:${last?.[0]}:${last?.[1]}`;
}

// ---------------------------------------------------------------- token, retry

/**
 * Takes `?token=` out of a URL: returns the token (null when absent or empty)
 * and the URL without it, other parameters and the hash kept.
 */
export function takeTokenFromUrl(href: string): { token: string | null; url: string } {
  const url = new URL(href);
  const token = url.searchParams.get("token");
  if (token === null) return { token: null, url: href };
  url.searchParams.delete("token");
  return { token: token === "" ? null : token, url: url.toString() };
}

/** Poll delay after `failures` consecutive failures: 1 s, then backing off to 5 s. */
export function retryDelayMs(failures: number, baseMs = 1000, maxMs = 5000): number {
  if (failures <= 0) return baseMs;
  return Math.min(maxMs, baseMs * 2 ** Math.min(failures - 1, 10));
}

/** A one-line message from a control response body (JSON `{error}`/`{message}` or text). */
export function describeControlResponse(httpStatus: number, body: string): string {
  let detail = body.trim();
  try {
    const parsed: unknown = JSON.parse(body);
    if (typeof parsed === "object" && parsed !== null) {
      const o = parsed as Record<string, unknown>;
      const field = o["error"] ?? o["message"] ?? o["reason"];
      detail = typeof field === "string" ? field : "";
    }
  } catch {
    // Not JSON: keep the text.
  }
  if (detail.length > 200) detail = `${detail.slice(0, 200)}…`;
  return detail === "" ? `HTTP ${httpStatus}` : `HTTP ${httpStatus}: ${detail}`;
}

// ---------------------------------------------------------------- staleness

/**
 * The staleness histograms of all workers added bucket by bucket (workers
 * that left keep counting: their applied updates happened). Bucket k counts
 * peer updates applied k clocks stale; the last bucket is "k or more".
 */
export function totalStaleness(workers: readonly Pick<WorkerStatus, "stalenessHist">[]): number[] {
  const total: number[] = [];
  for (const w of workers) {
    (w.stalenessHist ?? []).forEach((n, k) => {
      total[k] = (total[k] ?? 0) + n;
    });
  }
  for (let k = 0; k < total.length; k++) total[k] ??= 0;
  return total;
}

/** Count, mean and largest bucket with any update, for the histogram's caption. */
export function stalenessSummary(hist: readonly number[]): { count: number; mean: number | null; max: number | null } {
  let count = 0;
  let sum = 0;
  let max: number | null = null;
  hist.forEach((n, k) => {
    count += n;
    sum += n * k;
    if (n > 0) max = k;
  });
  return { count, mean: count === 0 ? null : sum / count, max };
}

/** Whether a worker can still be dropped (it is in the view). */
export function canDrop(state: string): boolean {
  return state === "active" || state === "straggler";
}
