/**
 * Line charts as inline SVG text, for the self-contained report.html: no
 * scripts, no fonts or styles fetched from anywhere. Pure functions.
 *
 * Contract: every series is drawn as a polyline (and dots when `dots`), with
 * linear axes from the data's extent (the y axis includes `yMin`/`yMax` when
 * given), about five "nice" ticks per axis, and a legend when there is more
 * than one series. Non-finite points are skipped. All text is XML-escaped.
 */

export interface Series {
  readonly name: string;
  readonly points: readonly (readonly [number, number])[];
}

export interface ChartOptions {
  readonly title: string;
  readonly xLabel: string;
  readonly yLabel: string;
  readonly series: readonly Series[];
  readonly width?: number;
  readonly height?: number;
  readonly yMin?: number;
  readonly yMax?: number;
  readonly dots?: boolean;
  /** A horizontal reference line (e.g. the target accuracy). */
  readonly hLine?: { readonly y: number; readonly label: string };
  readonly formatX?: (v: number) => string;
  readonly formatY?: (v: number) => string;
}

export const PALETTE = ["#1f77b4", "#d62728", "#2ca02c", "#ff7f0e", "#9467bd", "#8c564b", "#e377c2", "#17becf", "#7f7f7f", "#bcbd22"];

export function escapeXml(s: string): string {
  return s.replace(/[&<>"']/g, (c) => ({ "&": "&amp;", "<": "&lt;", ">": "&gt;", '"': "&quot;", "'": "&#39;" })[c] ?? c);
}

/** About `count` round tick values covering [lo, hi]. */
export function niceTicks(lo: number, hi: number, count = 5): number[] {
  if (!(hi > lo)) return [lo];
  const raw = (hi - lo) / count;
  const mag = 10 ** Math.floor(Math.log10(raw));
  const step = ([1, 2, 2.5, 5, 10].map((m) => m * mag).find((s) => s >= raw) ?? 10 * mag);
  const out: number[] = [];
  // Integer multiples of the step, rounded, so 0.1 + 0.2 style drift never shows in a label.
  for (let k = Math.ceil(lo / step - 1e-9); k * step <= hi + step * 1e-9; k++) out.push(k === 0 ? 0 : Number((k * step).toPrecision(12)));
  return out;
}

export function compactNumber(v: number): string {
  const a = Math.abs(v);
  if (a >= 1e9) return `${+(v / 1e9).toFixed(2)}G`;
  if (a >= 1e6) return `${+(v / 1e6).toFixed(2)}M`;
  if (a >= 1e4) return `${+(v / 1e3).toFixed(1)}k`;
  if (a >= 100 || v === Math.round(v)) return String(Math.round(v * 100) / 100);
  return String(+v.toPrecision(3));
}

export function lineChart(o: ChartOptions): string {
  const W = o.width ?? 560;
  const H = o.height ?? 300;
  const m = { l: 62, r: 16, t: 30, b: 44 };
  const pw = W - m.l - m.r;
  const ph = H - m.t - m.b;
  const pts = o.series.flatMap((s) => s.points.filter(([x, y]) => Number.isFinite(x) && Number.isFinite(y)));
  const fx = o.formatX ?? compactNumber;
  const fy = o.formatY ?? compactNumber;
  const parts: string[] = [
    `<svg xmlns="http://www.w3.org/2000/svg" viewBox="0 0 ${W} ${H}" width="${W}" height="${H}" role="img" aria-label="${escapeXml(o.title)}" font-family="sans-serif" font-size="11">`,
    `<title>${escapeXml(o.title)}</title>`,
    `<text x="${W / 2}" y="16" text-anchor="middle" font-size="13" font-weight="bold">${escapeXml(o.title)}</text>`,
  ];
  if (pts.length === 0) {
    parts.push(`<text x="${W / 2}" y="${H / 2}" text-anchor="middle" fill="#777">no data</text></svg>`);
    return parts.join("");
  }
  let x0 = Math.min(...pts.map((p) => p[0]));
  let x1 = Math.max(...pts.map((p) => p[0]));
  let y0 = Math.min(...pts.map((p) => p[1]), ...(o.yMin !== undefined ? [o.yMin] : []), ...(o.hLine ? [o.hLine.y] : []));
  let y1 = Math.max(...pts.map((p) => p[1]), ...(o.yMax !== undefined ? [o.yMax] : []), ...(o.hLine ? [o.hLine.y] : []));
  if (x1 === x0) (x0 -= 1), (x1 += 1);
  if (y1 === y0) (y0 -= 1), (y1 += 1);
  const sx = (x: number): number => m.l + ((x - x0) / (x1 - x0)) * pw;
  const sy = (y: number): number => m.t + ph - ((y - y0) / (y1 - y0)) * ph;
  parts.push(`<rect x="${m.l}" y="${m.t}" width="${pw}" height="${ph}" fill="none" stroke="#bbb"/>`);
  for (const t of niceTicks(x0, x1)) {
    const x = sx(t).toFixed(1);
    parts.push(`<line x1="${x}" x2="${x}" y1="${m.t}" y2="${m.t + ph}" stroke="#eee"/>`);
    parts.push(`<text x="${x}" y="${m.t + ph + 14}" text-anchor="middle">${escapeXml(fx(t))}</text>`);
  }
  for (const t of niceTicks(y0, y1)) {
    const y = sy(t).toFixed(1);
    parts.push(`<line x1="${m.l}" x2="${m.l + pw}" y1="${y}" y2="${y}" stroke="#eee"/>`);
    parts.push(`<text x="${m.l - 4}" y="${y}" text-anchor="end" dominant-baseline="middle">${escapeXml(fy(t))}</text>`);
  }
  parts.push(`<text x="${m.l + pw / 2}" y="${H - 8}" text-anchor="middle">${escapeXml(o.xLabel)}</text>`);
  parts.push(`<text transform="translate(14 ${m.t + ph / 2}) rotate(-90)" text-anchor="middle">${escapeXml(o.yLabel)}</text>`);
  if (o.hLine) {
    const y = sy(o.hLine.y).toFixed(1);
    parts.push(`<line x1="${m.l}" x2="${m.l + pw}" y1="${y}" y2="${y}" stroke="#444" stroke-dasharray="4 3"/>`);
    parts.push(`<text x="${m.l + pw - 4}" y="${Number(y) - 4}" text-anchor="end" fill="#444">${escapeXml(o.hLine.label)}</text>`);
  }
  o.series.forEach((s, i) => {
    const color = PALETTE[i % PALETTE.length] as string;
    const good = s.points.filter(([x, y]) => Number.isFinite(x) && Number.isFinite(y));
    if (good.length === 0) return;
    const d = good.map(([x, y]) => `${sx(x).toFixed(1)},${sy(y).toFixed(1)}`).join(" ");
    parts.push(`<polyline fill="none" stroke="${color}" stroke-width="1.6" points="${d}"><title>${escapeXml(s.name)}</title></polyline>`);
    if (o.dots) for (const [x, y] of good) parts.push(`<circle cx="${sx(x).toFixed(1)}" cy="${sy(y).toFixed(1)}" r="2.2" fill="${color}"/>`);
  });
  if (o.series.length > 1) {
    o.series.forEach((s, i) => {
      const color = PALETTE[i % PALETTE.length] as string;
      const col = i % 3;
      const row = Math.floor(i / 3);
      const lx = m.l + 8 + col * Math.floor(pw / 3);
      const ly = m.t + 12 + row * 14;
      parts.push(`<rect x="${lx}" y="${ly - 7}" width="10" height="3" fill="${color}"/>`);
      parts.push(`<text x="${lx + 14}" y="${ly - 2}">${escapeXml(s.name.slice(0, 28))}</text>`);
    });
  }
  parts.push("</svg>");
  return parts.join("");
}
