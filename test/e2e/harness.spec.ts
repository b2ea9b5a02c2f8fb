/**
 * The experiment harness itself (`npm run harness`), as a user runs it: exit
 * status 2 on bad flags, 0 when the target is reached, 1 when the job stops
 * short of it, and report.json / report.html written with `--out`.
 * Small runs (1–2 workers, at most 30 clocks) so the file stays well under a minute.
 */
import { test, expect } from "@playwright/test";
import { spawn } from "node:child_process";
import { mkdtempSync, readFileSync } from "node:fs";
import { tmpdir } from "node:os";
import { join, resolve } from "node:path";

const ROOT = resolve(import.meta.dirname, "..", "..");

function harness(args: string[], timeoutMs = 120_000): Promise<{ code: number | null; stdout: string; stderr: string }> {
  return new Promise((res, rej) => {
    const child = spawn(join(ROOT, "node_modules", ".bin", "tsx"), ["test/harness/main.ts", ...args], { cwd: ROOT, stdio: ["ignore", "pipe", "pipe"] });
    let stdout = "";
    let stderr = "";
    child.stdout.on("data", (d: Buffer) => (stdout += d.toString()));
    child.stderr.on("data", (d: Buffer) => (stderr += d.toString()));
    const timer = setTimeout(() => {
      // SIGTERM first: the harness stops its coordinator and browsers and writes its report.
      child.kill("SIGTERM");
      setTimeout(() => child.kill("SIGKILL"), 15_000).unref();
      rej(new Error(`harness ${args.join(" ")} ran longer than ${timeoutMs} ms:\n${stdout}\n${stderr}`));
    }, timeoutMs);
    child.on("exit", (code) => {
      clearTimeout(timer);
      res({ code, stdout, stderr });
    });
  });
}

test("bad harness flags exit with status 2 and one line", async () => {
  // Each case spawns tsx (seconds on a loaded machine); the parser itself is unit-tested.
  for (const args of [["--bogus"], ["--kill", "3@5", "--workers", "2"], ["--consistency", "eventual"]]) {
    const r = await harness(args, 30_000);
    expect(r.code, args.join(" ")).toBe(2);
    expect(r.stderr.trim().split("\n"), args.join(" ")).toHaveLength(1);
  }
});

test("two workers reach an easy target: exit 0, report.json and report.html written", async () => {
  const out = mkdtempSync(join(tmpdir(), "grid-harness-"));
  // --max-clock well past the first evaluation: pages on the CPU path step in a few ms, and at 30
  // clocks the job once ended on the clock limit before the clock-5 evaluation (0.84) came back.
  const r = await harness(["--workers", "2", "--max-clock", "300", "--target-accuracy", "0.5", "--eval-every", "5", "--eval-interval", "0", "--out", out]);
  expect(r.code, r.stdout + r.stderr).toBe(0);
  expect(r.stdout).toMatch(/target reached/);
  const report = JSON.parse(readFileSync(join(out, "report.json"), "utf8")) as {
    runs: { summary: { reached: boolean; best: number; digests: number }; samples: unknown[]; events: { kind: string }[]; spec: { workers: number } }[];
  };
  const run = report.runs[0];
  expect(run?.summary.reached).toBe(true);
  expect(run?.summary.best).toBeGreaterThanOrEqual(0.5);
  expect(run?.spec.workers).toBe(2);
  expect(run?.samples.length).toBeGreaterThan(2);
  expect(run?.events.some((e) => e.kind === "finishing")).toBe(true);
  const html = readFileSync(join(out, "report.html"), "utf8");
  expect(html).toContain("<svg");
  expect(html).toContain("Test accuracy vs examples processed");
  // Self-contained: nothing is loaded from anywhere.
  expect(html).not.toMatch(/<script|<link|(src|href)="https?:/);
});

test("a job that stops at --max-clock short of the target exits 1; --step-time with --slow paces the page", async () => {
  const out = mkdtempSync(join(tmpdir(), "grid-harness-"));
  // Every step at least 150 ms × slowdown 2: 10 clocks take at least 3 s.
  const r = await harness(["--workers", "1", "--max-clock", "10", "--target-accuracy", "0.99", "--eval-every", "5", "--step-time", "150", "--slow", "1:2", "--out", out]);
  expect(r.code, r.stdout + r.stderr).toBe(1);
  expect(r.stdout).toMatch(/target NOT reached \(finished\): max clock 10 reached/);
  const report = JSON.parse(readFileSync(join(out, "report.json"), "utf8")) as {
    runs: { summary: { clocksPerSec: number }; testPoints: { clock: number }[]; finalStatus: { workers: { stepMs: number; clock: number }[] } }[];
  };
  const run = report.runs[0];
  // The clock rate honours the step time (within the sampling error of a 3 s run: clocks are read
  // from reports sent at most every 200 ms; unpaced, a page makes 50+ clocks/s here), and the
  // coordinator (straggler policy, auto) sees it in the step times reported.
  expect(run?.summary.clocksPerSec).toBeLessThanOrEqual(1.15 * (1000 / 300));
  const w = run?.finalStatus.workers[0];
  expect(w?.clock).toBe(10);
  expect(w?.stepMs).toBeGreaterThanOrEqual(299);
  expect(w?.stepMs).toBeLessThan(1500);
  // The report ends with the evaluation of the model at the final clock.
  expect(run?.testPoints.at(-1)?.clock).toBe(10);
});
