import { describe, expect, it } from "vitest";
import { parseStatus, type WorkerStatus } from "../../coordinator/console/status.ts";
import {
  COLUMNS, MISSING, consistencyLabel, controlsFor, describeControlResponse, eventsNewestFirst, formatAge,
  formatCount, formatDigest, formatMetric, formatRate, formatTime, jobStateClass, lagExceedsBound, maxClock,
  nextSort, retryDelayMs, seriesKey, sortWorkers, takeTokenFromUrl, toAligned, workerLag, workerRowClass,
  type TableContext,
} from "../../coordinator/console/view.ts";

/** The example from INTERFACE.md. */
const EXAMPLE = {
  job: { name: "mnist-softmax", parameters: 7850, state: "running" },
  consistency: { mode: "ssp", staleness: 3 },
  view: { epoch: 4, active: ["w1", "w2"] },
  clock: { min: 120, max: 123 },
  workers: [
    {
      id: "w1", state: "active", clock: 123, stepsPerSec: 4.1, batch: 128, examplesPerSec: 525,
      lastSeenMs: 250, backend: "webgpu", kernel: "wgsl-vec4", adapter: "swiftshader", name: "LABEL", digest: null,
    },
  ],
  metrics: { trainLoss: [[123, 0.31]], test: { name: "accuracy", series: [[120, 0.912]] } },
  events: [{ t: 1700000000000, kind: "joined", worker: "w3" }],
};

function worker(id: string, clock: number, extra: Partial<WorkerStatus> = {}): WorkerStatus {
  return { id, state: "active", clock, ...extra };
}

describe("parseStatus", () => {
  it("accepts the documented example", () => {
    const r = parseStatus(EXAMPLE);
    expect(r.ok).toBe(true);
    if (r.ok) {
      expect(r.status.workers[0]?.name).toBe("LABEL");
      expect(r.status.metrics.test?.series).toEqual([[120, 0.912]]);
    }
  });

  it("fills in optional parts and tolerates unreported measurements", () => {
    const r = parseStatus({
      job: { name: "j", parameters: 1, state: "waiting" },
      consistency: { mode: "asp", staleness: 0 },
      view: { epoch: 0 },
      clock: { min: null, max: null },
      workers: [{ id: "w1", state: "active", clock: 0, stepsPerSec: null, backend: null }],
      extra: "ignored",
    });
    expect(r.ok).toBe(true);
    if (r.ok) {
      expect(r.status.events).toEqual([]);
      expect(r.status.metrics.trainLoss).toEqual([]);
      expect(r.status.view.active).toEqual([]);
    }
  });

  it("accepts both digest forms", () => {
    const withDigest = (digest: unknown) => ({ ...EXAMPLE, workers: [{ ...EXAMPLE.workers[0], digest }] });
    expect(parseStatus(withDigest({ sum: 1.5, l2: 2, proj: [0.1, -0.2] })).ok).toBe(true);
    expect(parseStatus(withDigest("ab12cd34ef56")).ok).toBe(true);
    expect(parseStatus(withDigest({ sum: "1" })).ok).toBe(false);
  });

  it("rejects malformed input with a readable path", () => {
    const r = parseStatus({ ...EXAMPLE, workers: [{ id: "w1", state: "active", clock: "12" }] });
    expect(r.ok).toBe(false);
    if (!r.ok) expect(r.error).toContain("workers.0.clock");
    expect(parseStatus(null).ok).toBe(false);
    expect(parseStatus("status").ok).toBe(false);
    expect(parseStatus({ ...EXAMPLE, metrics: { trainLoss: [[1]] } }).ok).toBe(false);
  });

  it("caps the number of issues it lists", () => {
    const r = parseStatus({});
    expect(r.ok).toBe(false);
    if (!r.ok) expect(r.error).toMatch(/and \d+ more/);
  });
});

describe("formatting", () => {
  it("formats counts, rates and metrics", () => {
    expect(formatCount(7850)).toBe("7,850");
    expect(formatCount(null)).toBe(MISSING);
    expect(formatRate(4.1)).toBe("4.10");
    expect(formatRate(52.44)).toBe("52.4");
    expect(formatRate(525.4)).toBe("525");
    expect(formatRate(12345.6)).toBe("12,346");
    expect(formatRate(undefined)).toBe(MISSING);
    expect(formatMetric(0.912)).toBe("0.912");
    expect(formatMetric(0.314159)).toBe("0.3142");
    expect(formatMetric(2.302585)).toBe("2.303");
    expect(formatMetric(0)).toBe("0");
    expect(formatMetric(0.00001234)).toBe("1.234e-5");
  });

  it("formats ages with units", () => {
    expect(formatAge(250)).toBe("250 ms");
    expect(formatAge(3200)).toBe("3.2 s");
    expect(formatAge(125_000)).toBe("2 min 5 s");
    expect(formatAge(3_720_000)).toBe("1 h 2 min");
    expect(formatAge(null)).toBe(MISSING);
  });

  it("formats local times as HH:MM:SS", () => {
    expect(formatTime(new Date(2024, 0, 2, 3, 4, 5).getTime())).toBe("03:04:05");
    expect(formatTime(new Date(2024, 0, 2, 23, 59, 9).getTime())).toBe("23:59:09");
  });

  it("abbreviates digests and keeps the full text for a tooltip", () => {
    expect(formatDigest(null)).toEqual({ short: MISSING, full: "" });
    expect(formatDigest("0123456789abcdef").short).toBe("0123456789…");
    expect(formatDigest("abc").short).toBe("abc");
    const d = formatDigest({ sum: 12.3456789, l2: 3.5, proj: [1, 2] });
    expect(d.short).toBe("sum 12.35 · l2 3.5");
    expect(d.full).toBe("sum 12.3456789, l2 3.5, proj [1, 2]");
  });

  it("labels consistency and job states", () => {
    expect(consistencyLabel("ssp", 3)).toBe("SSP, staleness 3");
    expect(consistencyLabel("bsp", 0)).toBe("BSP");
    expect(consistencyLabel("asp", 5)).toBe("ASP");
    expect(jobStateClass("paused")).toBe("state-paused");
    expect(jobStateClass("<script>")).toBe("state-other");
  });

  it("enables only the controls that make sense", () => {
    expect(controlsFor("running")).toEqual({ pause: true, resume: false, stop: true });
    expect(controlsFor("paused")).toEqual({ pause: false, resume: true, stop: true });
    expect(controlsFor("done")).toEqual({ pause: false, resume: false, stop: false });
    expect(controlsFor(null)).toEqual({ pause: true, resume: true, stop: true });
  });
});

describe("lag", () => {
  it("measures against the status max, else the live workers' max", () => {
    expect(maxClock({ clock: { min: 1, max: 9 }, workers: [worker("a", 3)] })).toBe(9);
    expect(
      maxClock({ clock: { min: null, max: null }, workers: [worker("a", 3), worker("b", 7), worker("c", 50, { state: "dropped" })] }),
    ).toBe(7);
    expect(maxClock({ clock: { min: null, max: null }, workers: [] })).toBeNull();
    expect(workerLag(worker("a", 120), 123)).toBe(3);
    expect(workerLag(worker("a", 130), 123)).toBe(0);
    expect(workerLag(worker("a", 1), null)).toBeNull();
    expect(workerLag(worker("a", 1, { state: "dropped" }), 123)).toBeNull();
    expect(workerLag(worker("a", 1, { state: "left" }), 123)).toBeNull();
    expect(workerLag(worker("a", 1, { state: "straggler" }), 123)).toBe(122);
  });

  it("flags a lag beyond the consistency bound", () => {
    expect(lagExceedsBound(3, "ssp", 3)).toBe(false);
    expect(lagExceedsBound(4, "ssp", 3)).toBe(true);
    expect(lagExceedsBound(1, "bsp", 0)).toBe(true);
    expect(lagExceedsBound(0, "bsp", 0)).toBe(false);
    expect(lagExceedsBound(100, "asp", 0)).toBe(false);
    expect(lagExceedsBound(null, "ssp", 0)).toBe(false);
  });

  it("gives problem rows a class", () => {
    expect(workerRowClass("active")).toBe("");
    expect(workerRowClass("straggler")).toBe("worker-straggler");
    expect(workerRowClass("dropped")).toBe("worker-dropped");
    expect(workerRowClass("left")).toBe("worker-left");
    expect(workerRowClass("x y")).toBe("");
  });
});

describe("sorting", () => {
  const ctx: TableContext = { maxClock: 10, mode: "ssp", staleness: 3 };
  const workers = [
    worker("w10", 8, { stepsPerSec: 2, name: "bob" }),
    worker("w2", 10, { stepsPerSec: null, name: "Alice" }),
    worker("w1", 5, { stepsPerSec: 7 }),
  ];
  const ids = (ws: WorkerStatus[]) => ws.map((w) => w.id);

  it("keeps the coordinator's order when no column is chosen", () => {
    expect(ids(sortWorkers(workers, { key: null, dir: "asc" }, ctx))).toEqual(["w10", "w2", "w1"]);
  });

  it("sorts ids naturally and numbers numerically, missing values last", () => {
    expect(ids(sortWorkers(workers, { key: "id", dir: "asc" }, ctx))).toEqual(["w1", "w2", "w10"]);
    expect(ids(sortWorkers(workers, { key: "id", dir: "desc" }, ctx))).toEqual(["w10", "w2", "w1"]);
    expect(ids(sortWorkers(workers, { key: "lag", dir: "desc" }, ctx))).toEqual(["w1", "w10", "w2"]);
    expect(ids(sortWorkers(workers, { key: "stepsPerSec", dir: "asc" }, ctx))).toEqual(["w10", "w1", "w2"]);
    expect(ids(sortWorkers(workers, { key: "stepsPerSec", dir: "desc" }, ctx))).toEqual(["w1", "w10", "w2"]);
    expect(ids(sortWorkers(workers, { key: "name", dir: "asc" }, ctx))).toEqual(["w2", "w10", "w1"]);
  });

  it("does not mutate its input", () => {
    const copy = [...workers];
    sortWorkers(workers, { key: "clock", dir: "asc" }, ctx);
    expect(workers).toEqual(copy);
  });

  it("flips the direction on a second click", () => {
    expect(nextSort({ key: null, dir: "asc" }, "id")).toEqual({ key: "id", dir: "asc" });
    expect(nextSort({ key: "id", dir: "asc" }, "id")).toEqual({ key: "id", dir: "desc" });
    expect(nextSort({ key: "id", dir: "desc" }, "clock")).toEqual({ key: "clock", dir: "desc" });
    expect(nextSort({ key: "id", dir: "desc" }, "name")).toEqual({ key: "name", dir: "asc" });
  });

  it("has one column per documented worker field plus lag", () => {
    expect(COLUMNS.map((c) => c.key)).toEqual([
      "id", "name", "state", "clock", "lag", "stepsPerSec", "batch", "examplesPerSec",
      "backend", "kernel", "adapter", "bytesIn", "bytesOut", "peers", "lastSeenMs", "digest",
    ]);
    const w = worker("w1", 7, { name: "<b>x</b>" });
    const text = Object.fromEntries(COLUMNS.map((c) => [c.key, c.text(w, ctx)]));
    expect(text["name"]).toBe("<b>x</b>"); // escaped by textContent, not here
    expect(text["lag"]).toBe("3");
    expect(text["backend"]).toBe(MISSING);
    expect(text["bytesIn"]).toBe(MISSING);
    const paused = worker("w2", 9, { paused: true, bytesIn: 1_234_567, bytesOut: 999, peers: 2 });
    expect(COLUMNS.find((c) => c.key === "state")?.text(paused, ctx)).toBe("active (paused)");
    expect(COLUMNS.find((c) => c.key === "bytesIn")?.text(paused, ctx)).toBe("1.23 MB");
    expect(COLUMNS.find((c) => c.key === "bytesOut")?.text(paused, ctx)).toBe("999 B");
    expect(COLUMNS.find((c) => c.key === "peers")?.text(paused, ctx)).toBe("2");
  });
});

describe("events and series", () => {
  it("orders events newest first, stable, and limits them", () => {
    const events = [
      { t: 1, kind: "joined", worker: "a" },
      { t: 3, kind: "dropped", worker: "b" },
      { t: 3, kind: "checkpoint" },
      { t: 2, kind: "left", worker: "a" },
    ];
    expect(eventsNewestFirst(events).map((e) => e.kind)).toEqual(["checkpoint", "dropped", "left", "joined"]);
    expect(eventsNewestFirst(events, 2)).toHaveLength(2);
    expect(events[0]?.kind).toBe("joined");
  });

  it("turns pairs into aligned columns ordered by clock", () => {
    expect(toAligned([[3, 0.1], [1, 0.5], [2, 0.3]])).toEqual([[1, 2, 3], [0.5, 0.3, 0.1]]);
    expect(toAligned([])).toEqual([[], []]);
  });

  it("fingerprints series so unchanged data is not redrawn", () => {
    expect(seriesKey([[1, 2], [3, 4]])).toBe(seriesKey([[1, 2], [3, 4]]));
    expect(seriesKey([[1, 2], [3, 4]])).not.toBe(seriesKey([[1, 2], [3, 5]]));
    expect(seriesKey([])).not.toBe(seriesKey([[0, 0]]));
  });
});

describe("token and retries", () => {
  it("takes the token out of the URL and keeps the rest", () => {
    expect(takeTokenFromUrl("http://h:8080/console?token=abc&x=1#ev")).toEqual({
      token: "abc",
      url: "http://h:8080/console?x=1#ev",
    });
    expect(takeTokenFromUrl("http://h/console?token=a%2Bb")).toEqual({ token: "a+b", url: "http://h/console" });
    expect(takeTokenFromUrl("http://h/console")).toEqual({ token: null, url: "http://h/console" });
    expect(takeTokenFromUrl("http://h/console?token=")).toEqual({ token: null, url: "http://h/console" });
  });

  it("backs off from 1 s to 5 s", () => {
    expect([0, 1, 2, 3, 4, 50].map((n) => retryDelayMs(n))).toEqual([1000, 1000, 2000, 4000, 5000, 5000]);
  });

  it("describes control responses", () => {
    expect(describeControlResponse(200, '{"ok":true}')).toBe("HTTP 200");
    expect(describeControlResponse(401, '{"error":"bad token"}')).toBe("HTTP 401: bad token");
    expect(describeControlResponse(400, "no such action")).toBe("HTTP 400: no such action");
    expect(describeControlResponse(500, "")).toBe("HTTP 500");
  });
});
