/**
 * What the console remembers of the run while it is open: one compact sample
 * per status it receives (about two a second over the stream), from which it
 * draws the wall-time charts and builds the downloadable run report. The
 * coordinator keeps metrics by clock only; wall time exists here, from the
 * moment this page was opened. Pure: no DOM, unit-tested.
 */
import type { Status } from "./status.ts";

/** One status as received at wall time `t` (ms since the epoch). */
export interface Sample {
  t: number;
  state: string;
  mode: string;
  staleness: number;
  min: number | null;
  max: number | null;
  examples: number | null;
  /** Clocks of the workers in the view (active or straggler), by id. */
  clocks: Record<string, number>;
  /** Steps per second of the same workers. */
  rates: Record<string, number>;
}

/** `[wall time ms, value]` */
export type TimePoint = [number, number];

export const MAX_SAMPLES = 4000;

function thin<T>(arr: T[], max: number): void {
  if (arr.length <= max) return;
  // Drop every other item of the older half: the history keeps its whole span.
  const half = arr.length >> 1;
  const kept = arr.slice(0, half).filter((_, i) => i % 2 === 0);
  arr.splice(0, half, ...kept);
}

function lastPair(pairs: readonly (readonly [number, number])[]): readonly [number, number] | undefined {
  let best: readonly [number, number] | undefined;
  for (const p of pairs) if (best === undefined || p[0] >= best[0]) best = p;
  return best;
}

export class RunHistory {
  readonly samples: Sample[] = [];
  /** Train loss against wall time: a point each time a newer clock's loss arrives. */
  readonly lossByTime: TimePoint[] = [];
  /** Test metric against wall time: a point each time a new evaluation arrives. */
  readonly testByTime: TimePoint[] = [];
  /** Worker ids in order of first appearance (stable chart series). */
  readonly workerIds: string[] = [];
  #lossClock = -Infinity;
  #testClock = -Infinity;
  readonly #max: number;

  constructor(maxSamples = MAX_SAMPLES) {
    this.#max = maxSamples;
  }

  /** Records `status` as seen at `t`. */
  record(status: Status, t: number): void {
    const clocks: Record<string, number> = {};
    const rates: Record<string, number> = {};
    for (const w of status.workers) {
      if (w.state !== "active" && w.state !== "straggler") continue;
      clocks[w.id] = w.clock;
      if (w.stepsPerSec != null) rates[w.id] = w.stepsPerSec;
      if (!this.workerIds.includes(w.id)) this.workerIds.push(w.id);
    }
    this.samples.push({
      t,
      state: status.job.state,
      mode: status.consistency.mode,
      staleness: status.consistency.staleness,
      min: status.clock.min,
      max: status.clock.max,
      examples: status.examples ?? null,
      clocks,
      rates,
    });
    thin(this.samples, this.#max);

    const loss = lastPair(status.metrics.trainLoss);
    if (loss !== undefined && loss[0] > this.#lossClock) {
      this.#lossClock = loss[0];
      this.lossByTime.push([t, loss[1]]);
      thin(this.lossByTime, this.#max);
    }
    const test = lastPair(status.metrics.test?.series ?? []);
    if (test !== undefined && test[0] > this.#testClock) {
      this.#testClock = test[0];
      this.testByTime.push([t, test[1]]);
      thin(this.testByTime, this.#max);
    }
  }

  /**
   * Columns for the clocks chart: x (seconds since the epoch, as uPlot's time
   * scale wants), one column per worker id (null where it was not in the
   * view), then the SSP window's top (max) and bottom (max − s; equal to max
   * under BSP, null under ASP, which has no window).
   */
  clockColumns(): { ids: string[]; columns: (number | null)[][] } {
    const ids = [...this.workerIds];
    const x = this.samples.map((s) => s.t / 1000);
    const perWorker = ids.map((id) => this.samples.map((s) => s.clocks[id] ?? null));
    const top = this.samples.map((s) => (s.mode === "asp" ? null : s.max));
    const bottom = this.samples.map((s) => {
      if (s.mode === "asp" || s.max == null) return null;
      return s.mode === "bsp" ? s.max : Math.max(0, s.max - s.staleness);
    });
    return { ids, columns: [x, ...perWorker, top, bottom] };
  }
}

/** The JSON document "Download run report" saves. */
export interface RunReport {
  kind: "grid-run-report";
  version: 1;
  generatedAt: string;
  coordinator: string;
  /** The page's samples, oldest first (thinned evenly past MAX_SAMPLES). */
  samples: Sample[];
  lossByTime: TimePoint[];
  testByTime: TimePoint[];
  /** The last status received, whole (series by clock, events, digests). */
  final: unknown;
}

export function buildReport(history: RunHistory, final: unknown, coordinator: string, now: number): RunReport {
  return {
    kind: "grid-run-report",
    version: 1,
    generatedAt: new Date(now).toISOString(),
    coordinator,
    samples: history.samples,
    lossByTime: history.lossByTime,
    testByTime: history.testByTime,
    final,
  };
}
