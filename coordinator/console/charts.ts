/**
 * A metric-versus-clock line chart: one uPlot instance per chart, created
 * once and updated in place with setData; resized with its container.
 */
import uPlot from "uplot";
import "uplot/dist/uPlot.min.css";
import { formatCount, formatMetric, seriesKey, toAligned } from "./view.ts";

const HEIGHT = 240;

export interface ClockChartOptions {
  /** Label of the value series (legend and y axis). */
  label: string;
  stroke: string;
  fill: string;
}

export class ClockChart {
  readonly #host: HTMLElement;
  readonly #summary: HTMLElement;
  readonly #empty: HTMLElement;
  #options: ClockChartOptions;
  #plot: uPlot;
  #key = "";
  #data: uPlot.AlignedData = [[], []];

  /**
   * `host` receives the canvas; `summary` gets a one-line text description
   * (latest value) for screen readers and as a caption; `empty` is shown while
   * there is nothing to plot.
   */
  constructor(host: HTMLElement, summary: HTMLElement, empty: HTMLElement, options: ClockChartOptions) {
    this.#host = host;
    this.#summary = summary;
    this.#empty = empty;
    this.#options = options;
    this.#plot = this.#create();
    new ResizeObserver(() => this.#resize()).observe(host);
  }

  /** Replaces the plotted pairs (`[clock, value]`); a no-op when they did not change. */
  update(pairs: readonly (readonly [number, number])[], label?: string): void {
    if (label !== undefined && label !== this.#options.label) {
      // A renamed metric is rare: rebuild so legend and axis agree.
      this.#options = { ...this.#options, label };
      this.#plot.destroy();
      this.#plot = this.#create();
      this.#key = "";
    }
    const key = seriesKey(pairs);
    if (key === this.#key) return;
    this.#key = key;
    this.#data = toAligned(pairs);
    this.#plot.setData(this.#data);
    this.#empty.hidden = pairs.length > 0;
    const last = pairs.reduce<readonly [number, number] | undefined>((a, p) => (a === undefined || p[0] >= a[0] ? p : a), undefined);
    this.#summary.textContent =
      last === undefined
        ? `${this.#options.label}: no data yet.`
        : `${this.#options.label}: ${formatMetric(last[1])} at clock ${formatCount(last[0])} (${pairs.length} points).`;
  }

  #create(): uPlot {
    const o = this.#options;
    const opts: uPlot.Options = {
      width: this.#width(),
      height: HEIGHT,
      scales: { x: { time: false } },
      cursor: { drag: { x: true, y: false } },
      legend: { live: true },
      series: [
        { label: "clock", value: (_u, v) => (v == null ? "—" : formatCount(v)) },
        {
          label: o.label,
          stroke: o.stroke,
          fill: o.fill,
          width: 2,
          points: { show: false },
          value: (_u, v) => (v == null ? "—" : formatMetric(v)),
        },
      ],
      axes: [
        { label: "clock", stroke: "#333", grid: { stroke: "#e3e3e3" }, ticks: { stroke: "#ccc" } },
        { label: o.label, stroke: "#333", grid: { stroke: "#e3e3e3" }, ticks: { stroke: "#ccc" }, size: 60 },
      ],
    };
    return new uPlot(opts, this.#data, this.#host);
  }

  #width(): number {
    return Math.max(240, Math.floor(this.#host.clientWidth));
  }

  #resize(): void {
    const width = this.#width();
    if (width !== this.#plot.width) this.#plot.setSize({ width, height: HEIGHT });
  }
}
