/**
 * Coordinator at scale: a load generator in Node (no browsers) that speaks the
 * real control protocol over loopback WebSockets as thousands of simulated
 * workers, against a real coordinator in its own process.
 *
 * First a baseline in the same run (`BENCH_COORD_BASELINE` workers, default
 * 200; 0: none): the coordinator with `--full-views` (every membership change
 * sent at once as the whole view to every worker, the behaviour before delta
 * views), then the default coordinator at the same N; `ratios` compare them.
 * Then per scale N (env `BENCH_COORD_WORKERS`, default "500,1000,2000"):
 *  1. spawn `node --import tsx coordinator/main.ts` (its own PID, so its CPU and
 *     RSS are read from /proc/PID/stat and /proc/PID/status); baseline RSS
 *     once it listens (MNIST loaded).
 *  2. ramp-up: N workers join at `BENCH_COORD_JOIN_RATE` per second (default
 *     100); each joiner starts reporting as soon as it is welcomed. Joins within
 *     the coordinator's batch window make one view epoch: the joiners get the
 *     whole view, everyone else a delta (with `--full-views`, every join is a
 *     whole view to everyone: O(N²) messages and O(N³) bytes for the ramp);
 *     measured per tenth of the ramp (join→welcome latency, full views and
 *     deltas received and their bytes, coordinator CPU).
 *     The ramp is cut off after `BENCH_COORD_RAMP_LIMIT_S` (default 90 s).
 *  3. steady window of `BENCH_COORD_SECONDS` (default 15) after a 3 s warm-up:
 *     every worker sends a clock report (`type:"clock"`, with `seq`) at
 *     `BENCH_COORD_RATE` per second (default 5) and a heartbeat every second;
 *     `BENCH_COORD_CHURN` workers per second (default 2) leave (socket closed)
 *     and as many fresh ones join. Latency is report sent → `ack` with the same
 *     `seq` received, both ends on this machine, so it includes both event loops.
 *  4. everything closed; the coordinator gets SIGTERM (with
 *     `BENCH_COORD_PROFILE=1` it runs under `--cpu-prof` and the profile lands
 *     in bench/results/coordinator-prof/).
 *
 * `BENCH_COORD_ENTRY=/path/coordinator/main.ts` measures another coordinator
 * (a patched copy, to try a change before it lands); results say which.
 *
 * Memory per worker = (median of the coordinator's RSS sampled once a second
 * over the steady window − RSS before the first join) / active workers
 * (`bytes_per_worker_end`: from the last sample alone). Loopback only; bounded in workers
 * (≤ 5,000) and in time (ramp limit + warm-up + window per scale).
 */
import { spawn, execFileSync, type ChildProcess } from "node:child_process";
import { closeSync, mkdtempSync, mkdirSync, openSync, readFileSync, rmSync } from "node:fs";
import { loadavg, tmpdir } from "node:os";
import { join, resolve } from "node:path";
import { pathToFileURL } from "node:url";
import { monitorEventLoopDelay, performance } from "node:perf_hooks";
import WebSocket from "ws";
import type { ClientMessage } from "../../coordinator/protocol.ts";

const ROOT = resolve(import.meta.dirname, "..", "..");

function envNum(name: string, def: number, min: number, max: number): number {
  const raw = process.env[name];
  if (raw === undefined || raw === "") return def;
  const n = Number(raw);
  if (!Number.isFinite(n) || n < min || n > max) throw new Error(`${name}=${raw}: want a number in [${min}, ${max}]`);
  return n;
}

function envList(name: string, def: number[]): number[] {
  const raw = process.env[name];
  if (raw === undefined || raw === "") return def;
  const xs = raw.split(",").map(Number);
  if (xs.some((x) => !Number.isInteger(x) || x < 1 || x > 5000)) throw new Error(`${name}=${raw}: want worker counts 1..5000`);
  return xs;
}

const sleep = (ms: number): Promise<void> => new Promise((r) => setTimeout(r, ms));

export function percentile(sorted: readonly number[], p: number): number {
  if (sorted.length === 0) return Number.NaN;
  const i = Math.min(sorted.length - 1, Math.max(0, Math.ceil((p / 100) * sorted.length) - 1));
  return sorted[i] as number;
}

// ------------------------------------------------------------------ the coordinator process

const CLK_TCK = (() => {
  try {
    return Number(execFileSync("getconf", ["CLK_TCK"], { encoding: "utf8" }).trim()) || 100;
  } catch {
    return 100;
  }
})();

interface ProcSample {
  readonly at: number;
  /** user + system CPU seconds so far. */
  readonly cpuSec: number;
  readonly rssBytes: number;
  /** Seconds spent runnable but waiting for a CPU (/proc/PID/schedstat): high on a shared machine. */
  readonly waitSec: number;
}

function readProc(pid: number): ProcSample {
  const stat = readFileSync(`/proc/${pid}/stat`, "utf8");
  // Fields after the command name (which may contain spaces) start at ") ".
  const rest = stat.slice(stat.lastIndexOf(")") + 2).split(" ");
  const utime = Number(rest[11]);
  const stime = Number(rest[12]);
  const status = readFileSync(`/proc/${pid}/status`, "utf8");
  const rssKb = Number(/VmRSS:\s+([0-9]+)/.exec(status)?.[1] ?? "0");
  let waitSec = 0;
  try {
    waitSec = Number(readFileSync(`/proc/${pid}/schedstat`, "utf8").split(" ")[1]) / 1e9;
  } catch {
    // schedstat is optional (kernels without CONFIG_SCHEDSTATS)
  }
  return { at: performance.now(), cpuSec: (utime + stime) / CLK_TCK, rssBytes: rssKb * 1024, waitSec };
}

/** What test/bench/_coord-probe.ts measured inside the coordinator over one window. */
interface Probe {
  readonly window_s: number;
  readonly loop_p50_ms: number;
  readonly loop_p99_ms: number;
  readonly loop_max_ms: number;
  readonly gc_ms_per_s: number;
  readonly gc_max_ms: number;
  readonly gc_count: number;
  readonly heap_MB: number;
}

interface Coordinator {
  readonly url: string;
  readonly child: ChildProcess;
  readonly pid: number;
  output(): string;
  /** Worker events the coordinator logged so far, by kind (joined, left, dropped, straggler, ...). */
  events(): Record<string, number>;
  /** Close the probe's current window and open the next; the closed window's numbers (null for the first call). */
  probe(): Promise<Probe | null>;
  stop(): Promise<void>;
}

async function startCoordinator(profileDir: string | null, extraArgs: readonly string[]): Promise<Coordinator> {
  const stateDir = mkdtempSync(join(tmpdir(), "grid-bench-"));
  const args = [
    ...(profileDir ? ["--cpu-prof", "--cpu-prof-dir", profileDir] : []),
    "--import",
    "tsx",
    // Event-loop delay and GC pauses inside the coordinator, reported on SIGUSR2 (test/bench/_coord-probe.ts).
    "--import",
    pathToFileURL(join(import.meta.dirname, "_coord-probe.ts")).href,
    "coordinator/main.ts",
    "--port",
    "0",
    "--no-build",
    "--state-dir",
    stateDir,
    "--token",
    "bench-token-0123456789",
    "--min-workers",
    "1",
    ...extraArgs,
  ];
  // BENCH_COORD_ENTRY: another coordinator's main.ts (e.g. a patched copy) to measure instead.
  const entry = resolve(process.env["BENCH_COORD_ENTRY"] ?? join(ROOT, "coordinator", "main.ts"));
  args[args.indexOf("coordinator/main.ts")] = entry;
  // The coordinator's stdout goes to a file, not a pipe: on Linux a write to a
  // full pipe blocks the writer, which would tie the coordinator's latency to
  // this (busy) process reading its log.
  const logFile = join(stateDir, "coordinator.log");
  const logFd = openSync(logFile, "w");
  // BENCH_COORD_NICE=-10: the coordinator at another scheduling priority (nice execs, so the PID is the coordinator's).
  const nice = process.env["BENCH_COORD_NICE"];
  if (nice !== undefined && !/^-?[0-9]{1,2}$/.test(nice)) throw new Error(`BENCH_COORD_NICE=${nice}: want a niceness like -10`);
  const [cmd, cmdArgs] = nice !== undefined ? ["nice", ["-n", nice, process.execPath, ...args]] : [process.execPath, args];
  const child = spawn(cmd, cmdArgs, { cwd: resolve(entry, "..", ".."), stdio: ["ignore", logFd, logFd] });
  closeSync(logFd);
  // Never outlive the bench (the dispatcher turns SIGINT/SIGTERM into an exit).
  const killOnExit = (): void => void child.kill("SIGTERM");
  process.once("exit", killOnExit);
  child.once("exit", () => process.off("exit", killOnExit));
  const out = (): string => {
    try {
      return readFileSync(logFile, "utf8");
    } catch {
      return "";
    }
  };
  const events = (): Record<string, number> => {
    const counts: Record<string, number> = {};
    // Coordinator log lines look like "[12:00:00] left w12: silent for 6000 ms".
    for (const m of out().matchAll(/^\[[0-9:]+\] ([a-z-]+) w[0-9]+/gm)) if (m[1]) counts[m[1]] = (counts[m[1]] ?? 0) + 1;
    return counts;
  };
  let probes = 0;
  const probe = async (): Promise<Probe | null> => {
    const want = probes++;
    child.kill("SIGUSR2");
    if (want === 0) return null;
    for (let k = 0; k < 50; k++) {
      const lines = [...out().matchAll(/^bench-probe (\{.*\})$/gm)];
      if (lines.length >= want) return JSON.parse((lines[want - 1] as RegExpMatchArray)[1] as string) as Probe;
      await sleep(100);
    }
    return null;
  };
  const deadline = Date.now() + 60_000;
  let url: string | null = null;
  while (url === null) {
    const m = /volunteer URL: (http:\/\/\S+?)\/\s/.exec(out());
    if (m?.[1]) url = m[1];
    else if (child.exitCode !== null) throw new Error(`coordinator exited with ${child.exitCode}:\n${out()}`);
    else if (Date.now() > deadline) throw new Error(`coordinator did not start:\n${out()}`);
    else await sleep(100);
  }
  if (child.pid === undefined) throw new Error("coordinator has no pid");
  return {
    url,
    child,
    pid: child.pid,
    output: () => out().slice(-100_000),
    events,
    probe,
    stop: async () => {
      if (child.exitCode === null) {
        const exited = new Promise<void>((r) => child.once("exit", () => r()));
        child.kill("SIGTERM");
        const t = setTimeout(() => child.kill("SIGKILL"), 15_000);
        await exited;
        clearTimeout(t);
      }
      // The state dir holds this run's log and event log only (the numbers are in the result file).
      rmSync(stateDir, { recursive: true, force: true });
    },
  };
}

// ------------------------------------------------------------------ simulated workers

/** Counters shared by all simulated workers; reset between phases. */
class Meter {
  bytesIn = 0;
  views = 0;
  deltas = 0;
  viewBytes = 0;
  assigns = 0;
  acks = 0;
  errors = 0;
  reportsSent = 0;
  latencies: number[] = [];
  joinLatencies: number[] = [];
  recording = false;
  reset(): void {
    this.bytesIn = this.views = this.deltas = this.viewBytes = this.assigns = this.acks = this.errors = this.reportsSent = 0;
    this.latencies = [];
    this.joinLatencies = [];
  }
}

const RING = 64;

class SimWorker {
  private readonly ws: WebSocket;
  private readonly sent = new Float64Array(RING);
  private seq = 0;
  private joinSentAt = 0;
  welcomed = false;
  closed = false;
  startClock = 0;
  clock = 0;
  private reports = 0;

  constructor(url: string, private readonly index: number, private readonly meter: Meter, onWelcome: (w: SimWorker) => void) {
    this.ws = new WebSocket(`${url.replace(/^http/, "ws")}/ws`, { perMessageDeflate: false, skipUTF8Validation: true });
    this.ws.on("open", () => {
      this.joinSentAt = performance.now();
      this.send({ type: "join", name: `sim-${this.index}`, backend: "cpu", kernel: "sim", adapter: "sim" });
    });
    this.ws.on("message", (data: Buffer, isBinary: boolean) => {
      if (isBinary) return;
      this.meter.bytesIn += data.length;
      // Messages are JSON objects whose first key is "type" (the coordinator
      // builds them so); only the small ones are parsed.
      const head = data.toString("latin1", 0, 32);
      if (head.startsWith('{"type":"ack"')) {
        const ack = JSON.parse(data.toString("utf8")) as { seq?: number };
        this.meter.acks++;
        if (this.meter.recording && ack.seq !== undefined && ack.seq > this.seq - RING) {
          this.meter.latencies.push(performance.now() - (this.sent[ack.seq % RING] as number));
        }
      } else if (head.startsWith('{"type":"view-delta"')) {
        this.meter.deltas++;
        this.meter.viewBytes += data.length;
      } else if (head.startsWith('{"type":"view"')) {
        this.meter.views++;
        this.meter.viewBytes += data.length;
      } else if (head.startsWith('{"type":"assign"')) {
        this.meter.assigns++;
      } else if (head.startsWith('{"type":"welcome"')) {
        const w = JSON.parse(data.toString("utf8")) as { startClock: number };
        this.startClock = w.startClock;
        this.clock = w.startClock;
        this.welcomed = true;
        this.meter.joinLatencies.push(performance.now() - this.joinSentAt);
        onWelcome(this);
      } else if (head.startsWith('{"type":"error"')) {
        this.meter.errors++;
      }
    });
    this.ws.on("error", () => {});
    this.ws.on("close", () => {
      this.closed = true;
    });
  }

  private send(m: ClientMessage): void {
    if (this.ws.readyState === WebSocket.OPEN) this.ws.send(JSON.stringify(m));
  }

  /** One clock report at the fleet's common clock (never below this worker's own). */
  report(globalClock: number): void {
    if (!this.welcomed || this.closed) return;
    this.clock = Math.max(this.clock, globalClock);
    const seq = ++this.seq;
    this.sent[seq % RING] = performance.now();
    this.reports++;
    this.meter.reportsSent++;
    this.send({
      type: "clock",
      clock: this.clock,
      minApplied: Math.max(0, this.clock - 1),
      loss: 0.5,
      stepMs: 150,
      batch: 128,
      examples: 128 * (this.clock - this.startClock),
      bytesIn: 0,
      bytesOut: 0,
      peers: 0,
      seq,
    });
  }

  heartbeat(): void {
    if (this.welcomed && !this.closed) this.send({ type: "heartbeat" });
  }

  close(): void {
    this.closed = true;
    this.ws.terminate();
  }
}

// ------------------------------------------------------------------ one scale

export interface ScaleResult {
  workers: number;
  joined: number;
  ramp_s: number;
  ramp_complete: boolean;
  ramp_join_p50_ms: number;
  ramp_join_p99_ms: number;
  /** Which coordinator: "delta" (views as deltas, batched) or "full" (`--full-views`: every change at once, in full, to all). */
  views: "delta" | "full";
  ramp_view_msgs: number;
  ramp_delta_msgs: number;
  ramp_view_MB: number;
  ramp_coord_cpu_s: number;
  reports_per_s: number;
  acks_per_s: number;
  p50_ms: number;
  p99_ms: number;
  max_ms: number;
  unacked: number;
  churn_per_s: number;
  steady_view_msgs_per_s: number;
  steady_delta_msgs_per_s: number;
  steady_in_MB_per_s: number;
  coord_cpu_pct: number;
  /** Share of the window the coordinator was runnable but waiting for a CPU (others' load). */
  coord_runq_wait_pct: number;
  /** Coordinator CPU per 1,000 acked reports in the window (churn views included): robust to a shared machine. */
  coord_cpu_ms_per_1k_acks: number;
  /** The coordinator's own event-loop delay in the window (its stalls: long synchronous work, GC, or no CPU for it). */
  coord_loop_p99_ms: number;
  coord_loop_max_ms: number;
  /** Garbage-collection pause time in the coordinator per second of the window, and the longest pause. */
  coord_gc_ms_per_s: number;
  coord_gc_max_ms: number;
  /** The coordinator's longest event-loop delay during the ramp (joins and their view epochs). */
  ramp_coord_loop_max_ms: number;
  coord_rss_MB: number;
  /** (Median RSS over the window, sampled once a second − RSS before the first join) / active workers. */
  bytes_per_worker: number;
  /** The same from the one sample at the end of the window. */
  bytes_per_worker_end: number;
  loadgen_cpu_pct: number;
  loadgen_loop_p99_ms: number;
  /** Worker events the coordinator logged over the whole scale run, e.g. "joined:2010 left:10". */
  coord_events: string;
  /** 1-minute load average at the end of the window (the machine may be shared). */
  loadavg_1m: number;
}

interface RampStep {
  joined: number;
  at_s: number;
  join_p50_ms: number;
  join_p99_ms: number;
  view_msgs: number;
  delta_msgs: number;
  view_MB: number;
  coord_cpu_pct: number;
}

async function runScale(n: number, views: "delta" | "full", log: (l: string) => void): Promise<{ result: ScaleResult; ramp: RampStep[]; coordinatorTail: string[] }> {
  const rate = envNum("BENCH_COORD_RATE", 5, 0.1, 50);
  const joinRate = envNum("BENCH_COORD_JOIN_RATE", 100, 1, 2000);
  const windowS = envNum("BENCH_COORD_SECONDS", 15, 1, 300);
  const churn = envNum("BENCH_COORD_CHURN", 2, 0, 100);
  const rampLimitS = envNum("BENCH_COORD_RAMP_LIMIT_S", 90, 5, 1200);
  const profileDir = process.env["BENCH_COORD_PROFILE"] === "1" ? join(ROOT, "bench", "results", "coordinator-prof") : null;
  if (profileDir) mkdirSync(profileDir, { recursive: true });

  const coord = await startCoordinator(profileDir, views === "full" ? ["--full-views"] : []);
  const meter = new Meter();
  const fleet: SimWorker[] = [];
  let nextIndex = 0;
  const t0 = performance.now();
  const globalClock = (): number => Math.floor(((performance.now() - t0) / 1000) * rate);
  // Reports are spread evenly: the fleet is split into slots of a 10 ms tick.
  const periodMs = 1000 / rate;
  const slots = Math.max(1, Math.round(periodMs / 10));
  // Time-based, so a late timer catches up (at most one full period) instead of dropping reports.
  let doneSlots = 0;
  const loop = monitorEventLoopDelay({ resolution: 10 });
  const ticker = setInterval(() => {
    const dueSlots = Math.floor((performance.now() - t0) / 10);
    if (dueSlots - doneSlots > slots) doneSlots = dueSlots - slots;
    const g = globalClock();
    const hbEvery = Math.max(1, Math.round(rate)); // heartbeat about once per second
    for (; doneSlots < dueSlots; doneSlots++) {
      const slot = doneSlots % slots;
      const cycle = Math.floor(doneSlots / slots);
      for (let i = slot; i < fleet.length; i += slots) {
        const w = fleet[i] as SimWorker;
        w.report(g);
        if ((cycle + i) % hbEvery === 0) w.heartbeat();
      }
    }
  }, 10);

  try {
    await sleep(1000);
    const base = readProc(coord.pid);
    log(`N=${n}: coordinator pid ${coord.pid}, baseline RSS ${(base.rssBytes / 2 ** 20).toFixed(1)} MB`);

    await coord.probe();
    // ---------------------------------------------------------- ramp-up
    const ramp: RampStep[] = [];
    const rampStart = performance.now();
    let stepStart = readProc(coord.pid);
    let welcomed = 0;
    const step = Math.max(1, Math.round(n / 10));
    meter.reset();
    let lastStepViews = 0;
    let lastStepDeltas = 0;
    let lastStepViewBytes = 0;
    let joinLatStart = 0;
    while (welcomed < n) {
      const elapsed = (performance.now() - rampStart) / 1000;
      if (elapsed > rampLimitS) {
        log(`N=${n}: ramp cut off after ${rampLimitS} s with ${welcomed} welcomed`);
        break;
      }
      const due = Math.min(n, Math.floor(elapsed * joinRate) + 1);
      // Never more than 200 joins in flight: the generator must not outrun the coordinator unboundedly.
      while (nextIndex < due && nextIndex - welcomed < 200) {
        fleet.push(new SimWorker(coord.url, nextIndex++, meter, () => welcomed++));
      }
      const mark = ramp.length;
      if (welcomed >= (mark + 1) * step || welcomed === n) {
        const now = readProc(coord.pid);
        const jl = meter.joinLatencies.slice(joinLatStart).sort((a, b) => a - b);
        joinLatStart = meter.joinLatencies.length;
        ramp.push({
          joined: welcomed,
          at_s: +((performance.now() - rampStart) / 1000).toFixed(2),
          join_p50_ms: +percentile(jl, 50).toFixed(1),
          join_p99_ms: +percentile(jl, 99).toFixed(1),
          view_msgs: meter.views - lastStepViews,
          delta_msgs: meter.deltas - lastStepDeltas,
          view_MB: +((meter.viewBytes - lastStepViewBytes) / 1e6).toFixed(1),
          coord_cpu_pct: +((100 * (now.cpuSec - stepStart.cpuSec)) / ((now.at - stepStart.at) / 1000)).toFixed(0),
        });
        log(`N=${n}: ramp ${JSON.stringify(ramp[ramp.length - 1])}`);
        lastStepViews = meter.views;
        lastStepDeltas = meter.deltas;
        lastStepViewBytes = meter.viewBytes;
        stepStart = now;
      }
      await sleep(10);
    }
    const rampEnd = readProc(coord.pid);
    const rampS = (performance.now() - rampStart) / 1000;
    const rampViews = meter.views;
    const rampDeltas = meter.deltas;
    const rampViewBytes = meter.viewBytes;
    const rampJoin = [...meter.joinLatencies].sort((a, b) => a - b);

    // ---------------------------------------------------------- steady window with churn
    await sleep(3000);
    meter.reset();
    meter.recording = true;
    const rampProbe = coord.probe();
    loop.reset();
    loop.enable();
    const cpu0 = process.cpuUsage();
    const s0 = readProc(coord.pid);
    let rssMax = s0.rssBytes;
    // RSS once a second: the young generation alone moves it by tens of MB, so the median is what is per worker.
    const rssSamples: number[] = [];
    const wStart = performance.now();
    let churned = 0;
    while (performance.now() - wStart < windowS * 1000) {
      await sleep(1000);
      const rss = readProc(coord.pid).rssBytes;
      rssSamples.push(rss);
      rssMax = Math.max(rssMax, rss);
      for (let k = 0; k < churn; k++) {
        const live = fleet.filter((w) => w.welcomed && !w.closed);
        const victim = live[Math.floor(Math.random() * live.length)];
        if (!victim) break;
        victim.close();
        fleet.push(new SimWorker(coord.url, nextIndex++, meter, () => {}));
        churned++;
      }
    }
    meter.recording = false;
    const s1 = readProc(coord.pid);
    const wallS = (performance.now() - wStart) / 1000;
    const cpu1 = process.cpuUsage(cpu0);
    const inside = await coord.probe();
    const rampInside = await rampProbe;
    loop.disable();
    const lat = meter.latencies.sort((a, b) => a - b);
    const active = fleet.filter((w) => w.welcomed && !w.closed).length;
    const result: ScaleResult = {
      workers: n,
      joined: welcomed,
      ramp_s: +rampS.toFixed(1),
      ramp_complete: welcomed >= n,
      ramp_join_p50_ms: +percentile(rampJoin, 50).toFixed(1),
      ramp_join_p99_ms: +percentile(rampJoin, 99).toFixed(1),
      views,
      ramp_view_msgs: rampViews,
      ramp_delta_msgs: rampDeltas,
      ramp_view_MB: +(rampViewBytes / 1e6).toFixed(1),
      ramp_coord_cpu_s: +(rampEnd.cpuSec - base.cpuSec).toFixed(1),
      reports_per_s: +(meter.reportsSent / wallS).toFixed(0),
      acks_per_s: +(meter.acks / wallS).toFixed(0),
      p50_ms: +percentile(lat, 50).toFixed(2),
      p99_ms: +percentile(lat, 99).toFixed(2),
      max_ms: +(lat[lat.length - 1] ?? Number.NaN).toFixed(1),
      unacked: Math.max(0, meter.reportsSent - meter.acks),
      churn_per_s: +(churned / wallS).toFixed(2),
      steady_view_msgs_per_s: +(meter.views / wallS).toFixed(0),
      steady_delta_msgs_per_s: +(meter.deltas / wallS).toFixed(0),
      steady_in_MB_per_s: +(meter.bytesIn / 1e6 / wallS).toFixed(2),
      coord_cpu_pct: +((100 * (s1.cpuSec - s0.cpuSec)) / ((s1.at - s0.at) / 1000)).toFixed(0),
      coord_runq_wait_pct: +((100 * (s1.waitSec - s0.waitSec)) / ((s1.at - s0.at) / 1000)).toFixed(0),
      coord_cpu_ms_per_1k_acks: meter.acks > 0 ? +(((s1.cpuSec - s0.cpuSec) * 1e6) / meter.acks).toFixed(1) : Number.NaN,
      coord_loop_p99_ms: inside?.loop_p99_ms ?? Number.NaN,
      coord_loop_max_ms: inside?.loop_max_ms ?? Number.NaN,
      coord_gc_ms_per_s: inside?.gc_ms_per_s ?? Number.NaN,
      coord_gc_max_ms: inside?.gc_max_ms ?? Number.NaN,
      ramp_coord_loop_max_ms: rampInside?.loop_max_ms ?? Number.NaN,
      coord_rss_MB: +(rssMax / 2 ** 20).toFixed(1),
      bytes_per_worker: Math.round((percentile([...rssSamples, s1.rssBytes].sort((a, b) => a - b), 50) - base.rssBytes) / Math.max(1, active)),
      bytes_per_worker_end: Math.round((s1.rssBytes - base.rssBytes) / Math.max(1, active)),
      loadgen_cpu_pct: +((100 * (cpu1.user + cpu1.system)) / 1e6 / wallS).toFixed(0),
      loadgen_loop_p99_ms: +(loop.percentile(99) / 1e6).toFixed(1),
      coord_events: Object.entries(coord.events())
        .map(([k, v]) => `${k}:${v}`)
        .join(" "),
      loadavg_1m: +(loadavg()[0] ?? 0).toFixed(2),
    };
    log(`N=${n}: ${JSON.stringify(result)}`);
    return { result, ramp, coordinatorTail: coord.output().split("\n").slice(-5) };
  } finally {
    clearInterval(ticker);
    for (const w of fleet) w.close();
    await coord.stop();
  }
}

// ------------------------------------------------------------------ the suite

export async function run(): Promise<{
  p50_ms: number;
  p99_ms: number;
  workers: number;
  reports_per_s: number;
  bytes_per_worker: number;
  coord_cpu_pct: number;
  coord_runq_wait_pct: number;
  loadgen_cpu_pct: number;
  loadavg_1m: number;
  ratios: Record<string, number>;
  table: ScaleResult[];
  ramp: Record<string, RampStep[]>;
  config: Record<string, unknown>;
}> {
  const scales = envList("BENCH_COORD_WORKERS", [500, 1000, 2000]);
  // The baseline, measured in the same run: the same N with every view in full, each change at once.
  const baselineN = envNum("BENCH_COORD_BASELINE", 200, 0, 1000);
  const log = (l: string): void => void process.stdout.write(`  ${l}\n`);
  const table: ScaleResult[] = [];
  const ramp: Record<string, RampStep[]> = {};
  let full: ScaleResult | null = null;
  let sameN: ScaleResult | null = null;
  if (baselineN > 0) {
    const f = await runScale(baselineN, "full", log);
    full = f.result;
    table.push(f.result);
    ramp[`${baselineN}-full`] = f.ramp;
    const d = await runScale(baselineN, "delta", log);
    sameN = d.result;
    table.push(d.result);
    ramp[`${baselineN}-delta`] = d.ramp;
  }
  for (const n of scales) {
    const r = await runScale(n, "delta", log);
    table.push(r.result);
    ramp[String(n)] = r.ramp;
  }
  const top = table[table.length - 1] as ScaleResult;
  const ratio = (a: number, b: number): number => (b > 0 && Number.isFinite(a) && Number.isFinite(b) ? +(a / b).toFixed(2) : Number.NaN);
  const ratios: Record<string, number> = {
    p50_ms: top.p50_ms,
    p99_ms: top.p99_ms,
    workers: top.joined,
    reports_per_s: top.reports_per_s,
    bytes_per_worker: top.bytes_per_worker,
  };
  if (full && sameN) {
    // How much the old behaviour costs against delta views at the same N (>1: the old one costs more).
    ratios["full_over_delta_ramp_view_bytes"] = ratio(full.ramp_view_MB, sameN.ramp_view_MB);
    ratios["full_over_delta_ramp_coord_cpu"] = ratio(full.ramp_coord_cpu_s, sameN.ramp_coord_cpu_s);
    ratios["full_over_delta_p99"] = ratio(full.p99_ms, sameN.p99_ms);
    ratios["full_over_delta_cpu_per_ack"] = ratio(full.coord_cpu_ms_per_1k_acks, sameN.coord_cpu_ms_per_1k_acks);
    ratios["full_over_delta_steady_in_bytes"] = ratio(full.steady_in_MB_per_s, sameN.steady_in_MB_per_s);
  }
  return {
    p50_ms: top.p50_ms,
    p99_ms: top.p99_ms,
    workers: top.joined,
    reports_per_s: top.reports_per_s,
    bytes_per_worker: top.bytes_per_worker,
    coord_cpu_pct: top.coord_cpu_pct,
    coord_runq_wait_pct: top.coord_runq_wait_pct,
    loadgen_cpu_pct: top.loadgen_cpu_pct,
    loadavg_1m: top.loadavg_1m,
    ratios,
    table,
    ramp,
    config: {
      scales,
      baselineN,
      rate: envNum("BENCH_COORD_RATE", 5, 0.1, 50),
      joinRate: envNum("BENCH_COORD_JOIN_RATE", 100, 1, 2000),
      windowS: envNum("BENCH_COORD_SECONDS", 15, 1, 300),
      churnPerS: envNum("BENCH_COORD_CHURN", 2, 0, 100),
      rampLimitS: envNum("BENCH_COORD_RAMP_LIMIT_S", 90, 5, 1200),
      profile: process.env["BENCH_COORD_PROFILE"] === "1",
      entry: process.env["BENCH_COORD_ENTRY"] ?? "coordinator/main.ts",
      nice: process.env["BENCH_COORD_NICE"] ?? null,
    },
  };
}
