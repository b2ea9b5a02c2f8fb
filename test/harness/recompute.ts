/**
 * Recompute a jobs-harness report's utilization measures from its samples
 * (after a change to the measures): `tsx test/harness/recompute.ts REPORT.json…`.
 */
import { readFileSync } from "node:fs";
import { intervalUses, phaseShares, runWindow, utilization, type JobsSample } from "./jobs.ts";

for (const file of process.argv.slice(2)) {
  const r = JSON.parse(readFileSync(file, "utf8")) as { samples: JobsSample[]; loadavg?: { start: number[]; end: number[] }; summary: { jobs: { id: string; doneSec: number | null; digestsAgree: boolean | null }[] } };
  const { start, end } = runWindow(r.samples);
  const p = phaseShares(r.samples, start, end);
  const pct = (x: number | null | undefined): string => (x === null || x === undefined ? "-" : `${(x * 100).toFixed(1)}%`);
  const u = intervalUses(r.samples, start, end);
  process.stdout.write(
    [
      file,
      `load ${r.loadavg?.start[0] ?? "?"} → ${r.loadavg?.end[0] ?? "?"}`,
      `in a job's gate ${pct(p === null ? null : p.stepping + p.gate)}`,
      `stepping ${pct(p?.stepping)} gate ${pct(p?.gate)} loading ${pct(p?.loading)} draining ${pct(p?.draining)} paused ${pct(p?.paused)} idle ${pct(p?.idle)} no report ${pct(p?.noReport)}`,
      `clock-interval utilization ${pct(utilization(r.samples, start, end))} (joined, no step ${pct(u["joined, no step yet"])}, stalled ${pct(u["stalled after stepping"])})`,
      `jobs ${r.summary.jobs.map((j) => `${j.id} ${j.doneSec?.toFixed(1) ?? "-"} s ${j.digestsAgree ? "agree" : "?"}`).join(", ")}`,
    ].join(" | ") + "\n",
  );
}
