/**
 * `npm run harness -- FLAGS`: runs one experiment, or with `--compare KEY=…`
 * one per value, one after another (never in parallel: the browsers of one
 * run already fill a small machine).
 *
 * Exit status: 0 when every run reached the target (finishing event naming
 * the target, then job state `done`); 1 when some run did not (limit, time
 * out, failure, interrupt); 2 on bad flags, with one line on stderr.
 * Expects dist/ to be built (`npx vite build`); says so and exits 1 if not.
 */
import { existsSync } from "node:fs";
import { cpus, loadavg } from "node:os";
import { join, resolve } from "node:path";
import { parseHarnessArgs, UsageError, USAGE, type HarnessConfig } from "./flags.ts";
import { Progress } from "./progress.ts";
import { comparisonMarkdown, writeReport } from "./report.ts";
import { runExperiment, stopAllNow, type RunResult } from "./run.ts";
import { runJobsExperiment, type PhaseShares } from "./jobs.ts";
import { mkdirSync, writeFileSync } from "node:fs";

const ROOT = resolve(import.meta.dirname, "..", "..");

async function main(): Promise<number> {
  const argv = process.argv.slice(2);
  let cfg: HarnessConfig;
  try {
    cfg = parseHarnessArgs(argv);
  } catch (e) {
    if (e instanceof UsageError) {
      process.stderr.write(`harness: ${e.message}\n`);
      return 2;
    }
    throw e;
  }
  if (cfg.help) {
    process.stdout.write(USAGE + "\n");
    return 0;
  }
  // The pages the coordinator will serve: --dist DIR, else $GRID_DIST (see
  // test/support/coordinator.ts), else dist/.
  for (const spec of cfg.runs) {
    const i = spec.coordinatorArgs.indexOf("--dist");
    const dist = i >= 0 ? resolve(spec.coordinatorArgs[i + 1] ?? "dist") : resolve(ROOT, process.env["GRID_DIST"] || "dist");
    if (!existsSync(join(dist, "index.html"))) {
      process.stderr.write(`harness: ${dist} has no built client; run \`npx vite build\` first\n`);
      return 1;
    }
  }
  let interrupted = false;
  const onSignal = (): void => {
    if (interrupted) {
      stopAllNow();
      process.exit(130);
    }
    interrupted = true;
  };
  process.on("SIGINT", onSignal);
  process.on("SIGTERM", onSignal);

  const jobsRun = cfg.runs.length === 1 && cfg.runs[0]?.coordinatorArgs.includes("--jobs") ? cfg.runs[0] : undefined;
  if (jobsRun) {
    // Several jobs on one grid: utilization and fairness over time (test/harness/jobs.ts).
    const startedAt = new Date().toISOString();
    const loadStart = loadavg();
    const { summary, samples, coordinatorLog, pagesLog, last } = await runJobsExperiment(jobsRun, jobsRun.submits, (l) => process.stdout.write(`${l}\n`));
    const pct = (x: number | null): string => (x === null ? "-" : `${(x * 100).toFixed(1)}%`);
    const inGate = (p: PhaseShares | null): number | null => (p === null ? null : p.stepping + p.gate);
    process.stdout.write(
      [
        `outcome: ${summary.outcome} (${summary.reason}); ${summary.moves} moves`,
        `| measure | value |`,
        `| --- | --- |`,
        `| utilization (whole run) | ${pct(summary.utilization)} |`,
        `| pages' own time (whole run): in a job's gate (stepping + waiting for peers) | ${pct(inGate(summary.phases))} |`,
        `| … stepping / gate / loading / draining / paused / idle / no report | ${summary.phases === null ? "-" : (["stepping", "gate", "loading", "draining", "paused", "idle", "noReport"] as const).map((k) => pct(summary.phases?.[k] ?? null)).join(" / ")} |`,
        ...Object.entries(summary.uses).filter(([k]) => k !== "computing").map(([k, x]) => `| … idle: ${k} | ${pct(x)} |`),
        ...summary.windows.map((w) => `| utilization ±10 s around ${w.event} (${w.t.toFixed(1)} s) | ${pct(w.utilization)} (own time in a gate ${pct(inGate(w.phases))}, stepping ${pct(w.phases?.stepping ?? null)}) |`),
        `| fairness error while ≥ 2 jobs ran: mean / max | ${pct(summary.fairness.mean)} / ${pct(summary.fairness.max)} |`,
        ...summary.fairness.settleSec.map((x) => `| fairness error ≤ 10% after ${x.event} | ${x.sec === null ? "never" : `${x.sec.toFixed(1)} s`} |`),
        ...summary.jobs.map((j) => `| job ${j.id} | ${j.state}${j.doneSec !== null ? ` at ${j.doneSec.toFixed(1)} s` : ""}, digests ${j.digestsAgree === null ? "-" : j.digestsAgree ? "agree" : "DIFFER"} |`),
      ].join("\n") + "\n",
    );
    if (cfg.out !== null) {
      mkdirSync(cfg.out, { recursive: true });
      const file = join(cfg.out, "report.json");
      writeFileSync(file, JSON.stringify({ argv, startedAt, loadavg: { start: loadStart, end: loadavg() }, cpus: cpus().length, summary, samples, lastJobs: last }, null, 1));
      writeFileSync(join(cfg.out, "coordinator.log"), coordinatorLog);
      writeFileSync(join(cfg.out, "pages.log"), pagesLog);
      process.stdout.write(`report: ${file} (coordinator output: coordinator.log, pages' console: pages.log)\n`);
    }
    return summary.outcome === "done" ? 0 : 1;
  }

  const progress = new Progress({
    write: (t) => process.stdout.write(t),
    isTTY: process.stdout.isTTY === true,
    columns: process.stdout.columns,
  });
  const startedAt = new Date().toISOString();
  const loadStart = loadavg();
  const results: RunResult[] = [];
  for (const spec of cfg.runs) {
    if (interrupted) break;
    progress.startRun(spec.label);
    progress.print(`${spec.label === "run" ? "" : `== ${spec.label}: `}${spec.workers} worker(s), coordinator ${spec.coordinatorArgs.join(" ")}`);
    const r = await runExperiment(spec, {
      sample: (s, t) => progress.sample(s, t),
      event: (e) => progress.event(e),
      interrupted: () => interrupted,
    });
    const s = r.summary;
    progress.end(
      `${spec.label === "run" ? "" : `${spec.label}: `}${s.reached ? "target reached" : `target NOT reached (${s.outcome})`}: ${s.reason}; ` +
        `best ${s.best?.toFixed(4) ?? "-"}, ${s.secondsToTarget?.toFixed(1) ?? "-"} s and ${s.examplesToTarget ?? "-"} examples to target, ` +
        `${s.clocksPerSec?.toFixed(2) ?? "-"} clocks/s, ${s.examplesPerSec?.toFixed(0) ?? "-"} examples/s, total ${r.timings.totalSec.toFixed(1)} s`,
    );
    results.push(r);
  }
  if (results.length > 1) process.stdout.write("\n" + comparisonMarkdown(results) + "\n");
  if (cfg.out !== null) {
    const { json, html } = writeReport(cfg.out, { argv, startedAt, compare: cfg.compare, loadavg: { start: loadStart, end: loadavg() }, cpus: cpus().length }, results);
    process.stdout.write(`report: ${json} ${html}\n`);
  }
  const ok = results.length === cfg.runs.length && results.every((r) => r.summary.reached);
  return ok ? 0 : 1;
}

main().then(
  (code) => process.exit(code),
  (e: unknown) => {
    process.stderr.write(`harness: ${e instanceof Error ? (e.stack ?? e.message) : String(e)}\n`);
    process.exit(1);
  },
);
