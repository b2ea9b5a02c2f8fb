/**
 * The harness's pure parts: flag parsing (schedules, compare expansion, the
 * coordinator's own validation), test-point placement, SVG charts, the
 * progress line, and the bench dispatcher's suite list.
 */
import { describe, expect, it } from "vitest";
import { parseHarnessArgs, UsageError } from "../harness/flags.ts";
import { fastWaitShare, interpolate, pageQuery, placeTestPoints, type Sample, type WorkerSample } from "../harness/run.ts";
import { escapeXml, lineChart, niceTicks } from "../harness/svg.ts";
import { Progress } from "../harness/progress.ts";
import { formatTable, listSuites } from "../bench/main.ts";

describe("harness flags", () => {
  it("defaults --min-workers to --workers and passes coordinator flags through", () => {
    const cfg = parseHarnessArgs(["--workers", "3", "--consistency", "bsp", "--max-clock", "40", "--slow", "2:4", "--out", "x"]);
    const run = cfg.runs[0];
    expect(cfg.runs).toHaveLength(1);
    expect(run?.workers).toBe(3);
    expect(run?.slow.get(2)).toBe(4);
    expect(run?.coordinatorArgs).toEqual(["--consistency", "bsp", "--max-clock", "40", "--min-workers", "3"]);
    expect(cfg.out).toBe("x");
  });

  it("rejects bad flags, schedules naming pages that are not open, and owned flags in --compare", () => {
    for (const argv of [
      ["--bogus"],
      ["--workers", "0"],
      ["--workers", "two"],
      ["--slow", "1:0.5"],
      ["--slow", "9:2"],
      ["--kill", "3@5"],
      ["--join", "1@5"],
      ["--kill", "1@10", "--join", "1@5"],
      ["--consistency", "eventual"],
      ["--compare", "port=1,2"],
      ["--compare", "workers"],
      ["--compare", "workers=1,,2"],
      ["--compare", "workers=1,2", "--min-workers", "2"],
      ["stray"],
    ]) {
      expect(() => parseHarnessArgs(argv), argv.join(" ")).toThrow(UsageError);
    }
  });

  it("accepts a kill then a join of the same page, and later joins get --slowdown", () => {
    const run = parseHarnessArgs(["--workers", "2", "--kill", "2@10", "--join", "2@20", "--join", "3@5", "--slowdown", "3"]).runs[0];
    expect(run?.kills).toEqual([{ worker: 2, atSec: 10 }]);
    expect(run?.slow.get(3)).toBe(3);
  });

  it("--step-time paces every page, with --slow multiplying it, and can be compared", () => {
    const run = parseHarnessArgs(["--workers", "4", "--step-time", "300", "--slow", "3:4"]).runs[0];
    expect(run?.stepTimeMs).toBe(300);
    expect(run?.slow.get(3)).toBe(4);
    expect(pageQuery(3, 4, 300)).toBe("name=h3&slowdown=4&steptime=300");
    expect(pageQuery(1, 1, 300)).toBe("name=h1&steptime=300");
    expect(pageQuery(2, 1, 0)).toBe("name=h2");
    expect(parseHarnessArgs(["--workers", "2"]).runs[0]?.stepTimeMs).toBe(0);
    expect(parseHarnessArgs(["--compare", "step-time=100,200"]).runs.map((r) => r.stepTimeMs)).toEqual([100, 200]);
    for (const bad of ["0", "-1", "fast", "", "60001"]) {
      expect(() => parseHarnessArgs(["--step-time", bad]), bad).toThrow(UsageError);
    }
  });

  it("expands --compare into one run per value", () => {
    const cfg = parseHarnessArgs(["--compare", "consistency=bsp,ssp:2,asp", "--workers", "2"]);
    expect(cfg.runs.map((r) => r.label)).toEqual(["consistency=bsp", "consistency=ssp:2", "consistency=asp"]);
    expect(cfg.runs[1]?.coordinatorArgs).toEqual(["--consistency", "ssp", "--staleness", "2", "--min-workers", "2"]);
    const w = parseHarnessArgs(["--compare", "workers=1,4"]);
    expect(w.runs.map((r) => [r.workers, r.coordinatorArgs.join(" ")])).toEqual([
      [1, "--min-workers 1"],
      [4, "--min-workers 4"],
    ]);
  });
});

describe("harness report helpers", () => {
  it("interpolates and clamps", () => {
    const pts: [number, number][] = [[0, 0], [10, 100]];
    expect(interpolate(pts, 5)).toBe(50);
    expect(interpolate(pts, -1)).toBe(0);
    expect(interpolate(pts, 20)).toBe(100);
    expect(interpolate([], 1)).toBeNull();
  });

  it("measures the fast pages' gate-waiting share over their time in the view", () => {
    const w = (n: number, id: string, state: string, clock: number, waitMs: number): WorkerSample => ({
      n, id, state, clock, examples: 0, bytesIn: 0, bytesOut: 0, waitMs,
    });
    const sample = (t: number, workers: WorkerSample[]): Sample => ({
      t, state: "running", epoch: 1, active: workers.length, clockMin: 0, clockMax: 0, examples: 0, evalClock: null, workers,
    });
    const slow = new Map([[3, 4]]);
    const samples = [
      sample(0, [w(1, "w1", "active", 0, 0), w(2, "w2", "active", 0, 0), w(3, "w3", "active", 0, 0)]),
      // w1 starts at t=1 having already waited 100 ms: only what comes after counts.
      sample(1, [w(1, "w1", "active", 2, 100), w(2, "w2", "active", 2, 0), w(3, "w3", "active", 1, 0)]),
      sample(5, [w(1, "w1", "active", 9, 1100), w(2, "w2", "active", 9, 2000), w(3, "w3", "active", 2, 0)]),
      // w2 leaves: its later waiting does not count; the slow page never counts.
      sample(9, [w(1, "w1", "active", 15, 2100), w(2, "w2", "left", 9, 9000), w(3, "w3", "dropped", 2, 50_000)]),
      sample(20, [w(1, "w1", "active", 30, 9100), w(2, "w2", "left", 9, 9000)]),
    ];
    // Up to t = 9: w1 waited 2.0 s of 8 s, w2 2.0 s of 4 s.
    expect(fastWaitShare(samples, slow, 9)).toBeCloseTo(4 / 12);
    // Without an end the last sample counts too: w1 waited 9.0 s of 19 s.
    expect(fastWaitShare(samples, slow, null)).toBeCloseTo(11 / 23);
    // Every page equally slow: all three count (w3 waited 0 of its 4 s).
    expect(fastWaitShare(samples.slice(0, 3), new Map([[1, 4], [2, 4], [3, 4]]), null)).toBeCloseTo(3 / 12);
    expect(fastWaitShare([], slow, null)).toBeNull();
  });

  it("places test points at the evaluator's clock", () => {
    const sample = (t: number, evalClock: number, examples: number): Sample => ({
      t, state: "running", epoch: 1, active: 2, clockMin: evalClock, clockMax: evalClock, examples, evalClock, workers: [],
    });
    const pts = placeTestPoints([[10, 0.8]], [sample(1, 0, 0), sample(2, 8, 2048), sample(3, 12, 3072)]);
    expect(pts[0]?.t).toBeCloseTo(2.5);
    expect(pts[0]?.examples).toBe(2560);
  });

  it("draws escaped, script-free SVG with round ticks", () => {
    expect(niceTicks(0, 1)).toEqual([0, 0.2, 0.4, 0.6, 0.8, 1]);
    const svg = lineChart({ title: "a<b", xLabel: "x", yLabel: "y", series: [{ name: "s&t", points: [[0, 1], [1, 2], [2, Number.NaN]] }, { name: "u", points: [] }] });
    expect(svg.startsWith("<svg")).toBe(true);
    expect(svg).toContain(escapeXml("a<b"));
    expect(svg).toContain("s&amp;t");
    expect(svg).not.toContain("<script");
    expect(lineChart({ title: "t", xLabel: "x", yLabel: "y", series: [] })).toContain("no data");
  });

  it("prints plain lines when stdout is not a TTY", () => {
    const out: string[] = [];
    const p = new Progress({ write: (t) => out.push(t), isTTY: false }, 0);
    p.event({ t: 1, source: "coordinator", kind: "joined", worker: "w1" });
    p.sample({ t: 2, state: "running", epoch: 1, active: 1, clockMin: 3, clockMax: 5, examples: 640, evalClock: 3, workers: [] }, null);
    expect(out.join("")).not.toContain("\r");
    expect(out.join("").split("\n").filter(Boolean)).toHaveLength(2);
    expect(out.join("")).toContain("clock 3-5");
  });
});

describe("bench dispatcher", () => {
  it("lists suites by file and formats row tables", () => {
    expect(listSuites()).toContain("coordinator");
    expect(listSuites()).not.toContain("main");
    // A section of a suite runs inside it, not on its own.
    expect(listSuites()).toContain("transport");
    expect(listSuites()).not.toContain("transport-compression");
    expect(formatTable([{ a: 1, b: "x" }, { a: 2.5 }]).split("\n")).toHaveLength(4);
  });
});
