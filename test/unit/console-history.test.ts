/**
 * The console's wall-time history and run report (coordinator/console/history.ts),
 * its staleness summaries (view.ts), and the volunteer page's pure formatting
 * (client/ui.ts).
 */
import { describe, expect, it } from "vitest";
import { RunHistory, buildReport } from "../../coordinator/console/history.ts";
import { parseStatus, type Status } from "../../coordinator/console/status.ts";
import { canDrop, formatBytes, stalenessSummary, totalStaleness } from "../../coordinator/console/view.ts";
import { describeClock, formatDuration, formatFlops } from "../../client/ui.ts";

function status(clocks: Record<string, number>, mode: string, staleness: number, loss: [number, number][], test: [number, number][] = []): Status {
  const values = Object.values(clocks);
  const parsed = parseStatus({
    job: { name: "j", parameters: 10, state: "running" },
    consistency: { mode, staleness },
    view: { epoch: 1, active: Object.keys(clocks) },
    clock: { min: Math.min(...values), max: Math.max(...values) },
    workers: Object.entries(clocks).map(([id, clock]) => ({ id, state: "active", clock, stepsPerSec: 2 })),
    metrics: { trainLoss: loss, test: { name: "accuracy", series: test } },
    events: [],
  });
  if (!parsed.ok) throw new Error(parsed.error);
  return parsed.status;
}

describe("RunHistory", () => {
  it("records clocks per worker and the SSP window", () => {
    const h = new RunHistory();
    h.record(status({ w1: 3, w2: 1 }, "ssp", 2, [[3, 1.0]]), 1000);
    h.record(status({ w1: 5, w2: 4, w3: 4 }, "bsp", 0, [[3, 1.0], [5, 0.8]], [[5, 0.7]]), 2000);
    h.record(status({ w1: 6 }, "asp", 0, [[3, 1.0], [5, 0.8]], [[5, 0.7]]), 3000);
    const { ids, columns } = h.clockColumns();
    expect(ids).toEqual(["w1", "w2", "w3"]);
    expect(columns).toEqual([
      [1, 2, 3],
      [3, 5, 6],
      [1, 4, null],
      [null, 4, null],
      [3, 5, null], // window top: max (none under ASP)
      [1, 5, null], // window bottom: max - s under SSP, max under BSP
    ]);
    // A point per newer loss clock / evaluation, at the wall time it arrived.
    expect(h.lossByTime).toEqual([[1000, 1.0], [2000, 0.8]]);
    expect(h.testByTime).toEqual([[2000, 0.7]]);
  });

  it("thins the older half past its cap and keeps the whole span", () => {
    const h = new RunHistory(10);
    for (let t = 0; t < 50; t++) h.record(status({ w1: t }, "ssp", 3, []), t);
    expect(h.samples.length).toBeLessThanOrEqual(10);
    expect(h.samples[0]?.t).toBe(0);
    expect(h.samples[h.samples.length - 1]?.t).toBe(49);
  });

  it("builds a report with the samples and the last status", () => {
    const h = new RunHistory();
    h.record(status({ w1: 1 }, "ssp", 3, []), 5);
    const r = buildReport(h, { any: "thing" }, "http://x", Date.UTC(2026, 0, 1));
    expect(r.kind).toBe("grid-run-report");
    expect(r.generatedAt).toBe("2026-01-01T00:00:00.000Z");
    expect(r.samples).toHaveLength(1);
    expect(r.final).toEqual({ any: "thing" });
  });
});

describe("staleness and formatting", () => {
  it("adds the workers' histograms and summarizes them", () => {
    const total = totalStaleness([{ stalenessHist: [1, 2] }, { stalenessHist: [0, 0, 3] }, {}]);
    expect(total).toEqual([1, 2, 3]);
    expect(stalenessSummary(total)).toEqual({ count: 6, mean: (0 + 2 + 6) / 6, max: 2 });
    expect(stalenessSummary([])).toEqual({ count: 0, mean: null, max: null });
  });

  it("formats bytes, and knows who can be dropped", () => {
    expect(formatBytes(0)).toBe("0 B");
    expect(formatBytes(1500)).toBe("1.50 kB");
    expect(formatBytes(250_000_000)).toBe("250 MB");
    expect(canDrop("active")).toBe(true);
    expect(canDrop("straggler")).toBe(true);
    expect(canDrop("left")).toBe(false);
  });

  it("formats the volunteer's work, time away and clock position", () => {
    expect(formatFlops(0)).toBe("0 FLOP");
    expect(formatFlops(6 * 7850 * 1000)).toBe("47.1 MFLOP");
    expect(formatDuration(4_000)).toBe("4 s");
    expect(formatDuration(125_000)).toBe("2 min 5 s");
    expect(describeClock(7, 5, 9)).toBe("2 clocks behind the fastest");
    expect(describeClock(9, 5, 9)).toBe("the fastest, 4 ahead of the slowest");
    expect(describeClock(5, 5, 5)).toBe("level with the others");
  });
});
