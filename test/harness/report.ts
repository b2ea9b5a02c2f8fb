/**
 * The harness's report: `report.json` (configuration, status history,
 * events, timings, summaries of every run) and a self-contained
 * `report.html` (inline SVG plots and tables, no scripts, nothing fetched).
 *
 * Times in plots are seconds since the run's first training step, so runs
 * with different browser start-up times overlay fairly.
 */
import { mkdirSync, writeFileSync } from "node:fs";
import { join } from "node:path";
import type { RunResult } from "./run.ts";
import { compactNumber, escapeXml, lineChart, type Series } from "./svg.ts";

export interface ReportMeta {
  readonly argv: readonly string[];
  readonly startedAt: string;
  readonly compare: { readonly key: string; readonly values: readonly string[] } | null;
  /** 1-, 5- and 15-minute load averages at the start and the end (the machine may be shared). */
  readonly loadavg?: { readonly start: readonly number[]; readonly end: readonly number[] };
  readonly cpus?: number;
}

export interface ComparisonRow {
  readonly run: string;
  readonly outcome: string;
  readonly best: string;
  readonly secondsToTarget: string;
  readonly examplesToTarget: string;
  /** Examples to target relative to the first run (statistical efficiency: lower is better). */
  readonly examplesRatio: string;
  readonly clocksPerSec: string;
  readonly examplesPerSec: string;
  /** Examples per second relative to the first run (system speed-up). */
  readonly speedup: string;
  readonly bytes: string;
  /** Bytes to and from the coordinator (shards, factor blocks, checkpoints). */
  readonly coordinatorBytes: string;
  /** Share of time the pages with the smallest slowdown waited at the SSP gate. */
  readonly fastWait: string;
  readonly digests: string;
}

const f = (v: number | null, digits: number): string => (v === null ? "-" : v.toFixed(digits));

export function comparisonRows(runs: readonly RunResult[]): ComparisonRow[] {
  const base = runs[0]?.summary;
  return runs.map((r) => {
    const s = r.summary;
    const exRatio = base?.examplesToTarget && s.examplesToTarget !== null ? s.examplesToTarget / base.examplesToTarget : null;
    const speed = base?.examplesPerSec && s.examplesPerSec !== null ? s.examplesPerSec / base.examplesPerSec : null;
    return {
      run: r.label,
      outcome: s.outcome,
      best: f(s.best, 4),
      secondsToTarget: f(s.secondsToTarget, 1),
      examplesToTarget: s.examplesToTarget === null ? "-" : String(s.examplesToTarget),
      examplesRatio: f(exRatio, 2),
      clocksPerSec: f(s.clocksPerSec, 2),
      examplesPerSec: f(s.examplesPerSec, 0),
      speedup: f(speed, 2),
      bytes: compactNumber(s.bytesTotal),
      coordinatorBytes: compactNumber(s.coordinatorBytes ?? 0),
      fastWait: s.fastWaitShare === null || s.fastWaitShare === undefined ? "-" : `${(100 * s.fastWaitShare).toFixed(1)}%`,
      digests: s.digestsAgree === null ? `${s.digests}` : `${s.digests} ${s.digestsAgree ? "agree" : "DIFFER"}`,
    };
  });
}

const HEADERS: Record<keyof ComparisonRow, string> = {
  run: "run",
  outcome: "outcome",
  best: "best acc",
  secondsToTarget: "s to target",
  examplesToTarget: "examples to target",
  examplesRatio: "× examples",
  clocksPerSec: "clocks/s",
  examplesPerSec: "examples/s",
  speedup: "× examples/s",
  bytes: "bytes",
  coordinatorBytes: "coordinator bytes",
  fastWait: "fast pages waiting",
  digests: "digests",
};

/** The comparison as a Markdown table (printed at the end and pasted into docs). */
export function comparisonMarkdown(runs: readonly RunResult[]): string {
  const rows = comparisonRows(runs);
  const keys = Object.keys(HEADERS) as (keyof ComparisonRow)[];
  const line = (cells: string[]): string => `| ${cells.join(" | ")} |`;
  const head = (k: keyof ComparisonRow): string => (k === "best" && runs[0]?.summary.metric === "rmse/σ" ? "best RMSE/σ" : HEADERS[k]);
  return [line(keys.map(head)), line(keys.map(() => "---")), ...rows.map((r) => line(keys.map((k) => r[k])))].join("\n");
}

function htmlTable(head: string[], rows: string[][]): string {
  return `<table><thead><tr>${head.map((h) => `<th>${escapeXml(h)}</th>`).join("")}</tr></thead><tbody>${rows
    .map((r) => `<tr>${r.map((c) => `<td>${escapeXml(c)}</td>`).join("")}</tr>`)
    .join("")}</tbody></table>`;
}

function since(r: RunResult): number {
  return r.timings.firstStepSec ?? 0;
}

function workerKeys(r: RunResult): string[] {
  const keys = new Set<string>();
  for (const s of r.samples) for (const w of s.workers) keys.add(w.id);
  return [...keys].sort((a, b) => Number(a.slice(1)) - Number(b.slice(1)));
}

function workerLabel(r: RunResult, id: string): string {
  for (const s of r.samples) {
    const w = s.workers.find((x) => x.id === id);
    if (w) return w.n === null ? id : `${id} (h${w.n})`;
  }
  return id;
}

function runSection(r: RunResult): string {
  const t0 = since(r);
  const target = r.spec.targetAccuracy;
  const hLine = { y: target, label: `target ${target}` };
  const acc: Series = { name: "test accuracy", points: r.testPoints.map((p) => [p.t - t0, p.value] as const) };
  const accEx: Series = { name: "test accuracy", points: r.testPoints.map((p) => [p.examples, p.value] as const) };
  const ids = workerKeys(r);
  const clocks: Series[] = ids.map((id) => ({
    name: workerLabel(r, id),
    points: r.samples.flatMap((s) => {
      const w = s.workers.find((x) => x.id === id);
      return w && (w.state === "active" || w.state === "straggler") ? [[s.t - t0, w.clock] as const] : [];
    }),
  }));
  const bytes: Series[] = ids.map((id) => ({
    name: workerLabel(r, id),
    points: r.samples.flatMap((s) => {
      const w = s.workers.find((x) => x.id === id);
      return w ? [[s.t - t0, (w.bytesIn + w.bytesOut) / 1e6] as const] : [];
    }),
  }));
  const last = r.finalStatus;
  const s = r.summary;
  const summaryRows: string[][] = [
    ["outcome", `${s.outcome}${s.reason ? ` (${s.reason})` : ""}`],
    ["target", `${s.metric} ${s.metric === "rmse/σ" ? "≤" : "≥"} ${target}: ${s.reached ? "reached" : "not reached"}`],
    ["best / last test metric", `${f(s.best, 4)} / ${f(s.last, 4)}`],
    ["to target", `${f(s.secondsToTarget, 1)} s, ${s.examplesToTarget ?? "-"} examples, clock ${s.clockToTarget ?? "-"}`],
    ["clock rate, throughput", `${f(s.clocksPerSec, 2)} clocks/s, ${f(s.examplesPerSec, 0)} examples/s`],
    ["final clock, examples", `${s.finalClockMax}, ${s.examples}`],
    ["bytes exchanged (in + out, all workers)", compactNumber(s.bytesTotal)],
    ["bytes to and from the coordinator", compactNumber(s.coordinatorBytes ?? 0)],
    ["end digests", s.digestsAgree === null ? String(s.digests) : `${s.digests}, ${s.digestsAgree ? "all agree" : "DIFFER"}`],
    ["workers, browsers", `${r.spec.workers}, ${r.spec.browsers}`],
    ["slowdowns, kills, joins", `${JSON.stringify(r.spec.slow)} ${JSON.stringify(r.spec.kills)} ${JSON.stringify(r.spec.joins)}`],
    ["step time", r.spec.stepTimeMs > 0 ? `${r.spec.stepTimeMs} ms per step (× slowdown)` : "not paced"],
    ["coordinator flags", r.spec.coordinatorArgs.join(" ")],
    [
      "timings (s since start)",
      Object.entries(r.timings)
        .map(([k, v]) => `${k} ${v === null ? "-" : (v as number).toFixed(1)}`)
        .join(", "),
    ],
  ];
  const workerRows = (last?.workers ?? []).map((w) => [
    w.id,
    w.name,
    w.state,
    String(w.clock),
    String(w.examples),
    compactNumber(w.bytesIn),
    compactNumber(w.bytesOut),
    `${w.backend}/${w.adapter}`,
    w.digest ? `l2 ${w.digest.l2.toPrecision(6)}` : "-",
  ]);
  const eventRows = r.events.map((e) => [(e.t - t0).toFixed(1), e.source, e.kind, e.worker ?? "", e.detail ?? ""]);
  return `<section><h2>${escapeXml(r.label)}</h2>
${htmlTable(["", ""], summaryRows)}
<div class="plots">
${lineChart({ title: "Test accuracy vs wall time", xLabel: "seconds since the first step", yLabel: s.metric, series: [acc], dots: true, hLine })}
${lineChart({ title: "Test accuracy vs examples processed", xLabel: "examples (all workers)", yLabel: s.metric, series: [accEx], dots: true, hLine })}
${lineChart({ title: "Clock per worker", xLabel: "seconds since the first step", yLabel: "clock", series: clocks })}
${lineChart({ title: "Bytes exchanged per worker (in + out)", xLabel: "seconds since the first step", yLabel: "MB", series: bytes })}
</div>
<h3>Workers at the end</h3>
${htmlTable(["id", "name", "state", "clock", "examples", "bytes in", "bytes out", "backend", "digest"], workerRows)}
<details><summary>Events (${r.events.length})</summary>${htmlTable(["t (s)", "source", "kind", "worker", "detail"], eventRows)}</details>
</section>`;
}

function compareSection(runs: readonly RunResult[]): string {
  const rows = comparisonRows(runs);
  const keys = Object.keys(HEADERS) as (keyof ComparisonRow)[];
  const target = runs[0]?.spec.targetAccuracy;
  const hLine = target === undefined ? undefined : { y: target, label: `target ${target}` };
  const accT: Series[] = runs.map((r) => ({ name: r.label, points: r.testPoints.map((p) => [p.t - since(r), p.value] as const) }));
  const accE: Series[] = runs.map((r) => ({ name: r.label, points: r.testPoints.map((p) => [p.examples, p.value] as const) }));
  const clk: Series[] = runs.map((r) => ({ name: r.label, points: r.samples.map((s) => [s.t - since(r), s.clockMax] as const) }));
  const ex: Series[] = runs.map((r) => ({ name: r.label, points: r.samples.map((s) => [s.t - since(r), s.examples] as const) }));
  return `<section><h2>Comparison</h2>
${htmlTable(keys.map((k) => HEADERS[k]), rows.map((r) => keys.map((k) => r[k])))}
<p>× examples: examples to reach the target relative to the first run (statistical efficiency). × examples/s: throughput relative to the first run (system speed-up).</p>
<div class="plots">
${lineChart({ title: "Test accuracy vs wall time", xLabel: "seconds since the first step", yLabel: "accuracy", series: accT, dots: true, ...(hLine ? { hLine } : {}) })}
${lineChart({ title: "Test accuracy vs examples processed", xLabel: "examples", yLabel: "accuracy", series: accE, dots: true, ...(hLine ? { hLine } : {}) })}
${lineChart({ title: "Highest clock vs wall time", xLabel: "seconds since the first step", yLabel: "clock", series: clk })}
${lineChart({ title: "Examples processed vs wall time", xLabel: "seconds since the first step", yLabel: "examples", series: ex })}
</div></section>`;
}

export function reportHtml(meta: ReportMeta, runs: readonly RunResult[]): string {
  const title = `grid harness report: ${meta.compare ? `compare ${meta.compare.key}` : runs[0]?.label ?? ""}`;
  return `<!doctype html>
<html lang="en"><head><meta charset="utf-8"><title>${escapeXml(title)}</title>
<style>
body{font-family:sans-serif;margin:1.5em;color:#222}
table{border-collapse:collapse;margin:.5em 0;font-size:13px}
td,th{border:1px solid #ccc;padding:3px 7px;text-align:left;vertical-align:top}
th{background:#f3f3f3}
.plots{display:flex;flex-wrap:wrap;gap:12px}
section{margin-bottom:2em}
code{background:#f3f3f3;padding:1px 4px}
</style></head><body>
<h1>${escapeXml(title)}</h1>
<p>Started ${escapeXml(meta.startedAt)}${meta.loadavg ? ` on ${meta.cpus ?? "?"} CPUs, load average ${meta.loadavg.start.map((x) => x.toFixed(1)).join(" ")} at the start, ${meta.loadavg.end.map((x) => x.toFixed(1)).join(" ")} at the end` : ""}. Command: <code>npm run harness -- ${escapeXml(meta.argv.join(" "))}</code></p>
${runs.length > 1 ? compareSection(runs) : ""}
${runs.map(runSection).join("\n")}
</body></html>
`;
}

/** Write `report.json` and `report.html` into `dir` (created when missing). */
export function writeReport(dir: string, meta: ReportMeta, runs: readonly RunResult[]): { json: string; html: string } {
  mkdirSync(dir, { recursive: true });
  const json = join(dir, "report.json");
  const html = join(dir, "report.html");
  const body = {
    version: 1,
    ...meta,
    comparison: runs.length > 1 ? comparisonRows(runs) : null,
    runs,
  };
  writeFileSync(json, JSON.stringify(body, null, 1) + "\n");
  writeFileSync(html, reportHtml(meta, runs));
  return { json, html };
}
