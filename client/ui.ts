/**
 * The volunteer page's DOM (index.html): what the page does on this machine
 * (job, download, compute, how to stop), its progress (adapter, pass over its
 * data, its clock against the others', examples, estimated work, peers), the
 * Pause / Stop / throttle controls, and notices (no WebGPU, errors, what
 * happened while the tab was hidden).
 *
 * Contract with client/main.ts: main calls the setters as events arrive and
 * registers handlers with onPause / onStop / onThrottle; this class owns no
 * training state. Text from the network goes in through textContent only.
 */
import type { ViewMessage, WelcomeMessage } from "../coordinator/protocol.ts";
import type { WorkerReport } from "./worker.ts";

function el<T extends HTMLElement>(doc: Document, id: string): T {
  const e = doc.getElementById(id);
  if (!e) throw new Error(`page element #${id} is missing`);
  return e as T;
}

/** Floating-point operations per parameter per example for a dense model: forward 2, backward 4. */
export const FLOPS_PER_PARAMETER_PER_EXAMPLE = 6;

/** `1.23e9` → `"1.23 GFLOP"`. */
export function formatFlops(flops: number): string {
  const units = ["FLOP", "kFLOP", "MFLOP", "GFLOP", "TFLOP", "PFLOP"];
  let x = flops;
  let u = 0;
  while (x >= 1000 && u < units.length - 1) {
    x /= 1000;
    u++;
  }
  return `${u === 0 ? Math.round(x) : x.toPrecision(3)} ${units[u]}`;
}

/** `1234567` → `"1.2 MB"`. */
export function formatMegabytes(bytes: number): string {
  return `${(bytes / 1e6).toFixed(bytes < 1e7 ? 2 : 1)} MB`;
}

/** `125_000` → `"2 min 5 s"`. */
export function formatDuration(ms: number): string {
  const s = Math.round(ms / 1000);
  if (s < 60) return `${s} s`;
  const m = Math.floor(s / 60);
  if (m < 60) return `${m} min ${s % 60} s`;
  return `${Math.floor(m / 60)} h ${m % 60} min`;
}

/** Where this worker stands against the active clock range (from the coordinator's acks). */
export function describeClock(clock: number, min: number, max: number): string {
  const behind = max - clock;
  if (behind > 0) return `${behind} clock${behind === 1 ? "" : "s"} behind the fastest`;
  if (clock > min) return `the fastest, ${clock - min} ahead of the slowest`;
  return "level with the others";
}

const THROTTLE_KEY = "grid.volunteer.throttle";

function readStoredThrottle(): number {
  try {
    const v = Number(localStorage.getItem(THROTTLE_KEY));
    return Number.isInteger(v) && v >= 10 && v <= 100 ? v : 100;
  } catch {
    return 100;
  }
}

export class PageView {
  private readonly doc: Document;
  private readonly state: HTMLElement;
  private readonly adapter: HTMLElement;
  private readonly job: HTMLElement;
  private readonly aboutJob: HTMLElement;
  private readonly aboutDownload: HTMLElement;
  private readonly aboutCompute: HTMLElement;
  private readonly worker: HTMLElement;
  private readonly clock: HTMLElement;
  private readonly loss: HTMLElement;
  private readonly peers: HTMLElement;
  private readonly bytes: HTMLElement;
  private readonly examples: HTMLElement;
  private readonly work: HTMLElement;
  private readonly progress: HTMLProgressElement;
  private readonly progressText: HTMLElement;
  private readonly viewInfo: HTMLElement;
  private readonly gridClock: HTMLElement;
  private readonly clockCompare: HTMLElement;
  private readonly clockRange: HTMLElement;
  private readonly clockYou: HTMLElement;
  private readonly notices: HTMLElement;
  private readonly logList: HTMLElement;
  private readonly pauseBtn: HTMLButtonElement;
  private readonly stopBtn: HTMLButtonElement;
  private readonly throttle: HTMLInputElement;
  private readonly throttleValue: HTMLOutputElement;

  private parameters = 0;
  private myClock = 0;
  private grid: { min: number; max: number; active: number } | null = null;
  private examplesDone = 0;
  private paused = false;
  private stopped = false;
  private hiddenSince: { t: number; examples: number } | null = null;
  private readonly keyedNotices = new Map<string, HTMLElement>();

  constructor(doc: Document) {
    this.doc = doc;
    this.state = el(doc, "state");
    this.adapter = el(doc, "adapter");
    this.job = el(doc, "job");
    this.aboutJob = el(doc, "about-job");
    this.aboutDownload = el(doc, "about-download");
    this.aboutCompute = el(doc, "about-compute");
    this.worker = el(doc, "worker-id");
    this.clock = el(doc, "clock");
    this.loss = el(doc, "loss");
    this.peers = el(doc, "peers");
    this.bytes = el(doc, "bytes");
    this.examples = el(doc, "examples");
    this.work = el(doc, "work");
    this.progress = el(doc, "epoch-progress");
    this.progressText = el(doc, "epoch-text");
    this.viewInfo = el(doc, "view");
    this.gridClock = el(doc, "grid-clock");
    this.clockCompare = el(doc, "clock-compare");
    this.clockRange = el(doc, "clock-range");
    this.clockYou = el(doc, "clock-you");
    this.notices = el(doc, "notices");
    this.logList = el(doc, "log");
    this.pauseBtn = el(doc, "pause");
    this.stopBtn = el(doc, "stop");
    this.throttle = el(doc, "throttle");
    this.throttleValue = el(doc, "throttle-value");

    this.throttle.value = String(readStoredThrottle());
    this.showThrottle();
    doc.addEventListener("visibilitychange", () => this.onVisibility());
    const params = new URLSearchParams(doc.location.search);
    if (params.get("backend") !== "cpu" && !("gpu" in navigator)) this.webgpuUnavailable(null);
  }

  setState(text: string): void {
    this.state.textContent = text;
  }

  setAdapter(text: string): void {
    this.adapter.textContent = text;
    if (/^cpu\b/.test(text)) this.aboutCompute.textContent = "your processor (CPU), in a background thread of this tab.";
    else if (/^webgpu\b/.test(text)) this.aboutCompute.textContent = `your graphics processor through WebGPU (${text.split(" · ").slice(-1)[0] ?? "GPU"}), in a background thread of this tab.`;
  }

  /** A plain notice; `key` replaces an earlier notice with the same key instead of adding one. */
  notice(text: string, kind: "warn" | "info" | "problem" = "warn", key?: string): HTMLElement {
    const old = key === undefined ? undefined : this.keyedNotices.get(key);
    const p = old ?? this.doc.createElement("p");
    p.className = kind === "warn" ? "" : kind;
    p.replaceChildren(text);
    if (old === undefined) this.notices.append(p);
    if (key !== undefined) this.keyedNotices.set(key, p);
    return p;
  }

  /**
   * WebGPU is missing or unusable (`reason` from the worker's probe, or null
   * when the browser has no navigator.gpu): says why, that the CPU is used
   * instead, and offers to start on the CPU directly. A reason saying the CPU
   * "measured faster" is not a failure and is only reported.
   */
  webgpuUnavailable(reason: string | null): void {
    if (reason !== null && /measured faster/.test(reason)) {
      // Not a failure: the worker timed both paths and the CPU won (a software GPU, say).
      this.notice(`On this machine the processor computes this job faster than the graphics processor does, so it uses the CPU (${reason}).`, "info", "webgpu");
      return;
    }
    let why: string;
    if (reason !== null) why = `WebGPU could not be used here (${reason}).`;
    else if (!window.isSecureContext) why = `WebGPU only works on secure pages (https:// or localhost), and this page was opened from ${location.host} over plain http.`;
    else why = "This browser does not offer WebGPU (recent Chrome and Edge do; in others it may need to be turned on).";
    const p = this.notice(`${why} It trains on the CPU instead: slower, but it still helps. `, "info", "webgpu");
    const url = new URL(location.href);
    url.searchParams.set("backend", "cpu");
    const a = this.doc.createElement("a");
    a.href = url.toString();
    a.textContent = "Start on the CPU without trying the GPU";
    p.append(a);
  }

  /** A failure the page cannot recover from by itself: what happened and what to do. */
  fail(message: string): void {
    this.setState("stopped by an error");
    this.notice(`Something went wrong: ${message}. Nothing runs any more. Reload the page to try again; if it keeps happening, try the CPU path or tell the organizer.`, "problem", "error");
    this.pauseBtn.disabled = true;
    this.stopBtn.disabled = true;
  }

  setWelcome(w: WelcomeMessage): void {
    this.parameters = w.job.parameters;
    this.worker.textContent = w.workerId;
    const kind = `${w.job.name} (${w.job.parameters.toLocaleString("en-US")} parameters, batch ${w.job.batch})`;
    // On a grid of several jobs: which one, and why this page works for it.
    this.job.textContent = w.grid ? `job ${w.grid.job}: ${kind}; why: ${w.grid.reason}` : kind;
    this.aboutJob.textContent = `${w.job.name}: trains a model of ${w.job.parameters.toLocaleString("en-US")} parameters together with the other volunteers.`;
    this.showWork();
  }

  setShards(count: number, bytes: number): void {
    this.aboutDownload.textContent = `${formatMegabytes(bytes)} of training data (${count} shard${count === 1 ? "" : "s"}), once; kept in this browser so a reload does not download it again.`;
  }

  setView(v: ViewMessage, self: string): void {
    const mode = v.consistency.mode === "ssp" ? `SSP, staleness ${v.consistency.staleness}` : v.consistency.mode.toUpperCase();
    const others = v.active.length - (v.active.some((m) => m.id === self) ? 1 : 0);
    this.viewInfo.textContent = `view ${v.epoch}: you and ${others} other worker${others === 1 ? "" : "s"} (${v.active.map((m) => (m.id === self ? `${m.id} (you)` : m.id)).join(", ")}), ${mode}, job ${v.state}`;
  }

  setReport(r: WorkerReport, peers: number, bytesIn: number, bytesOut: number, paused: boolean): void {
    this.myClock = r.clock;
    this.examplesDone = r.examples;
    this.clock.textContent = r.clock.toLocaleString("en-US");
    this.loss.textContent = r.loss === 0 ? "–" : r.loss.toFixed(4);
    this.peers.textContent = String(peers);
    this.bytes.textContent = `${formatMegabytes(bytesOut)} sent, ${formatMegabytes(bytesIn)} received`;
    this.examples.textContent = r.examples.toLocaleString("en-US");
    const share = Math.min(1, Math.max(0, r.epochProgress));
    this.progress.value = share;
    this.progressText.textContent = `${Math.floor(share * 100)}%`;
    this.showWork();
    this.showClock();
    if (paused || this.stopped) return;
    const text: Record<WorkerReport["state"], string> = {
      loading: "loading data",
      training: this.throttleShare() < 1 ? `training (at most ${this.throttle.value}% of the time)` : "training",
      waiting: `waiting for ${r.waitingOn.join(", ") || "peers"} (staleness bound)`,
      paused: "paused by the organizer",
      finished: "finished; waiting for the last updates",
      drained: "done",
    };
    this.setState(text[r.state]);
  }

  /** The active workers' clock range, from the coordinator's acks. */
  setGridClock(min: number, max: number, active: number): void {
    this.grid = { min, max, active };
    this.gridClock.textContent = `${min}–${max} across ${active} active worker${active === 1 ? "" : "s"}`;
    this.showClock();
  }

  setPaused(paused: boolean): void {
    this.paused = paused;
    this.pauseBtn.textContent = paused ? "Resume" : "Pause";
    this.pauseBtn.setAttribute("aria-pressed", String(paused));
    if (paused && !this.stopped) this.setState("paused by you");
  }

  onPause(f: () => void): void {
    this.pauseBtn.addEventListener("click", f);
  }

  onStop(f: () => void): void {
    this.stopBtn.addEventListener("click", () => {
      this.stopped = true;
      this.stopBtn.disabled = true;
      this.pauseBtn.disabled = true;
      this.throttle.disabled = true;
      f();
    });
  }

  /**
   * `f(share)` with the share of time (0.1 .. 1) the volunteer allows: once
   * now (the stored choice) and on every change.
   */
  onThrottle(f: (share: number) => void): void {
    this.throttle.addEventListener("input", () => {
      this.showThrottle();
      try {
        localStorage.setItem(THROTTLE_KEY, this.throttle.value);
      } catch {
        // Not stored: the choice lasts until the page is closed.
      }
      f(this.throttleShare());
    });
    f(this.throttleShare());
  }

  log(line: string): void {
    const li = this.doc.createElement("li");
    li.textContent = `${new Date().toLocaleTimeString()} ${line}`;
    this.logList.prepend(li);
    while (this.logList.childElementCount > 50) this.logList.lastElementChild?.remove();
  }

  private throttleShare(): number {
    return Number(this.throttle.value) / 100;
  }

  private showThrottle(): void {
    this.throttleValue.textContent = `${this.throttle.value}%`;
    this.throttle.setAttribute("aria-valuetext", `${this.throttle.value}% of the time`);
  }

  private showWork(): void {
    if (this.parameters === 0) return;
    this.work.textContent = `≈ ${formatFlops(this.examplesDone * this.parameters * FLOPS_PER_PARAMETER_PER_EXAMPLE)}`;
  }

  private showClock(): void {
    const g = this.grid;
    if (g === null) return;
    const lo = Math.min(g.min, this.myClock);
    const hi = Math.max(g.max, this.myClock);
    const span = Math.max(1, hi - lo);
    const pct = (c: number): number => ((c - lo) / span) * 100;
    this.clockRange.hidden = false;
    this.clockRange.style.left = `${pct(g.min)}%`;
    this.clockRange.style.width = `${Math.max(1, pct(g.max) - pct(g.min))}%`;
    this.clockYou.hidden = false;
    this.clockYou.style.left = `${pct(this.myClock)}%`;
    this.clockCompare.textContent = `You are at ${this.myClock}: ${describeClock(this.myClock, g.min, g.max)}.`;
  }

  private onVisibility(): void {
    if (this.doc.visibilityState === "hidden") {
      this.hiddenSince = { t: Date.now(), examples: this.examplesDone };
      return;
    }
    const since = this.hiddenSince;
    this.hiddenSince = null;
    if (since === null || this.stopped) return;
    const away = formatDuration(Date.now() - since.t);
    const done = this.examplesDone - since.examples;
    const text = this.paused
      ? `While this tab was in the background (${away}) it stayed paused.`
      : `While this tab was in the background (${away}) it kept working within your limit of ${this.throttle.value}% of the time: ${done.toLocaleString("en-US")} more examples.`;
    this.notice(text, "info", "background");
  }
}
