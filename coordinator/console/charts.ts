/**
 * The console's charts (uPlot): a metric against clock or wall time, every
 * worker's clock over time with the SSP window as a band, and the histogram of
 * staleness of applied updates. Each chart is created once, updated in place
 * with setData (rebuilt only when its series change), resized with its
 * container, and keeps a one-line text summary for screen readers.
 */
import uPlot from "uplot";
import "uplot/dist/uPlot.min.css";
import { formatCount, formatMetric, stalenessSummary } from "./view.ts";

const HEIGHT = 220;
const AXIS = { stroke: "#333", grid: { stroke: "#e3e3e3" }, ticks: { stroke: "#ccc" } };

/** Distinct worker colours, each at least 3:1 against white. */
export const WORKER_COLOURS = ["#1d4ed8", "#b45309", "#047857", "#9d174d", "#6d28d9", "#0e7490", "#a16207", "#be123c", "#4d7c0f", "#475569"];

type Column = (number | null)[];

/** Shared plumbing: the uPlot instance, its host, caption and empty-state text. */
abstract class Chart {
  protected readonly host: HTMLElement;
  protected readonly summary: HTMLElement;
  protected readonly empty: HTMLElement;
  protected plot: uPlot | null = null;
  #signature = "";

  constructor(host: HTMLElement, summary: HTMLElement, empty: HTMLElement) {
    this.host = host;
    this.summary = summary;
    this.empty = empty;
    new ResizeObserver(() => this.#resize()).observe(host);
  }

  protected width(): number {
    return Math.max(240, Math.floor(this.host.clientWidth));
  }

  /** Draws `data`, rebuilding the plot when `signature` (its series and axes) changed. */
  protected draw(signature: string, options: () => uPlot.Options, data: Column[]): void {
    const aligned = data as unknown as uPlot.AlignedData;
    if (this.plot === null || signature !== this.#signature) {
      this.plot?.destroy();
      this.#signature = signature;
      this.plot = new uPlot({ ...options(), width: this.width(), height: HEIGHT }, aligned, this.host);
    } else {
      this.plot.setData(aligned);
    }
  }

  #resize(): void {
    const width = this.width();
    if (this.plot !== null && width !== this.plot.width) this.plot.setSize({ width, height: HEIGHT });
  }
}

export type XAxis = "clock" | "time";

export interface MetricChartOptions {
  label: string;
  stroke: string;
  fill: string;
}

/** One metric (train loss, test accuracy) against clock or against wall time. */
export class MetricChart extends Chart {
  #options: MetricChartOptions;

  constructor(host: HTMLElement, summary: HTMLElement, empty: HTMLElement, options: MetricChartOptions) {
    super(host, summary, empty);
    this.#options = options;
  }

  /**
   * `byClock`: `[clock, value]` pairs from the status; `byTime`: `[ms, value]`
   * pairs this page collected. Plots the one `axis` asks for.
   */
  update(axis: XAxis, byClock: readonly (readonly [number, number])[], byTime: readonly (readonly [number, number])[], label?: string): void {
    if (label !== undefined) this.#options = { ...this.#options, label };
    const o = this.#options;
    const pairs = [...(axis === "clock" ? byClock : byTime)].sort((a, b) => a[0] - b[0]);
    const xs = pairs.map((p) => (axis === "time" ? p[0] / 1000 : p[0]));
    const ys = pairs.map((p) => p[1]);
    this.draw(`${axis}|${o.label}`, () => ({
      width: 0,
      height: 0,
      // An accuracy lives in [0, 1]: keep the axis there instead of auto-ranging around one point.
      scales: { x: { time: axis === "time" }, ...(/accuracy/.test(o.label) ? { y: { range: [0, 1] as uPlot.Range.MinMax } } : {}) },
      cursor: { drag: { x: true, y: false } },
      series: [
        axis === "time" ? { label: "time" } : { label: "clock", value: (_u, v) => (v == null ? "—" : formatCount(v)) },
        { label: o.label, stroke: o.stroke, fill: o.fill, width: 2, points: { show: pairs.length < 40 }, value: (_u, v) => (v == null ? "—" : formatMetric(v)) },
      ],
      axes: [
        { ...AXIS, label: axis === "time" ? "wall time" : "clock" },
        { ...AXIS, label: o.label, size: 60 },
      ],
    }), [xs, ys]);
    this.empty.hidden = pairs.length > 0;
    if (pairs.length === 0) this.empty.textContent = axis === "time" ? "Nothing yet since this page was opened." : "No data yet.";
    const last = byClock.reduce<readonly [number, number] | undefined>((a, p) => (a === undefined || p[0] >= a[0] ? p : a), undefined);
    this.summary.textContent =
      last === undefined ? `${o.label}: no data yet.` : `${o.label}: ${formatMetric(last[1])} at clock ${formatCount(last[0])} (${byClock.length} points).`;
  }
}

/** Every worker's clock over wall time, with the SSP window (max − s .. max) as a shaded band. */
export class ClocksChart extends Chart {
  /**
   * `ids`: worker ids (one series each); `columns`: x (seconds), one column per
   * id, then the window's top and bottom (see RunHistory.clockColumns).
   */
  update(ids: readonly string[], columns: Column[], mode: string, staleness: number): void {
    const n = ids.length;
    const top = n + 1;
    const bottom = n + 2;
    this.draw(`${ids.join(",")}`, () => ({
      width: 0,
      height: 0,
      scales: { x: { time: true } },
      cursor: { drag: { x: true, y: false } },
      series: [
        { label: "time" },
        ...ids.map((id, i) => ({
          label: id,
          stroke: WORKER_COLOURS[i % WORKER_COLOURS.length] ?? "#333",
          width: 2,
          points: { show: false },
          value: (_u: uPlot, v: number | null) => (v == null ? "—" : formatCount(v)),
        })),
        { label: "window top (max)", stroke: "rgba(100, 116, 139, 0.6)", width: 1, dash: [4, 4], points: { show: false } },
        { label: "window bottom (max − s)", stroke: "rgba(100, 116, 139, 0.6)", width: 1, dash: [4, 4], points: { show: false } },
      ],
      bands: [{ series: [top, bottom], fill: "rgba(100, 116, 139, 0.16)" }],
      axes: [
        { ...AXIS, label: "wall time" },
        { ...AXIS, label: "clock", size: 60 },
      ],
    }), columns);
    const samples = columns[0]?.length ?? 0;
    this.empty.hidden = samples > 0 && n > 0;
    const window =
      mode === "asp" ? "ASP: no window" : mode === "bsp" ? "BSP: window of width 0" : `SSP window: the max clock and the ${staleness} below it`;
    const latest = ids
      .map((id, i) => {
        const col = columns[i + 1] ?? [];
        const v = col[col.length - 1];
        return v == null ? null : `${id} ${formatCount(v)}`;
      })
      .filter((s): s is string => s !== null);
    this.summary.textContent = `Clocks of ${n} worker${n === 1 ? "" : "s"} since this page opened (${window}). Latest: ${latest.join(", ") || "none in the view"}.`;
  }
}

/** Applied peer updates by staleness (0 .. last bucket, which means "that many or more"). */
export class StalenessChart extends Chart {
  update(hist: readonly number[]): void {
    const buckets = Math.max(hist.length, 1);
    const xs = Array.from({ length: buckets }, (_, k) => k);
    const ys = xs.map((k) => hist[k] ?? 0);
    const lastLabel = (k: number): string => (k === buckets - 1 && buckets > 1 ? `${k}+` : String(k));
    const bars = uPlot.paths.bars?.({ size: [0.7, 48], align: 0 });
    this.draw(`${buckets}`, () => ({
      width: 0,
      height: 0,
      scales: { x: { time: false, range: [-0.6, buckets - 0.4] } },
      cursor: { drag: { x: false, y: false } },
      series: [
        { label: "staleness", value: (_u, v) => (v == null ? "—" : lastLabel(v)) },
        {
          label: "updates",
          stroke: "#6d28d9",
          fill: "rgba(109, 40, 217, 0.55)",
          width: 1,
          points: { show: false },
          ...(bars !== undefined ? { paths: bars } : {}),
          value: (_u, v) => (v == null ? "—" : formatCount(v)),
        },
      ],
      axes: [
        { ...AXIS, label: "staleness (clocks)", splits: () => xs, values: (_u, splits) => splits.map((v) => lastLabel(v)) },
        { ...AXIS, label: "updates applied", size: 60 },
      ],
    }), [xs, ys]);
    const s = stalenessSummary(hist);
    this.empty.hidden = s.count > 0;
    this.summary.textContent =
      s.count === 0
        ? "Staleness of applied updates: none applied yet."
        : `Staleness of applied updates: ${formatCount(s.count)} updates, mean ${formatMetric(s.mean)} clocks, largest ${s.max === buckets - 1 ? `${s.max}+` : String(s.max)}.`;
  }
}
