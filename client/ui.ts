/**
 * The volunteer page's DOM: what the page is doing, the adapter, its clock
 * against the others', loss, peers, bytes, and the Pause/Stop controls. Text
 * only through textContent (names and messages come from the network).
 */
import type { ViewMessage, WelcomeMessage } from "../coordinator/protocol.ts";
import type { WorkerReport } from "./worker.ts";

function el<T extends HTMLElement>(doc: Document, id: string): T {
  const e = doc.getElementById(id);
  if (!e) throw new Error(`page element #${id} is missing`);
  return e as T;
}

export class PageView {
  private readonly state: HTMLElement;
  private readonly adapter: HTMLElement;
  private readonly job: HTMLElement;
  private readonly worker: HTMLElement;
  private readonly clock: HTMLElement;
  private readonly loss: HTMLElement;
  private readonly peers: HTMLElement;
  private readonly bytes: HTMLElement;
  private readonly examples: HTMLElement;
  private readonly progress: HTMLProgressElement;
  private readonly viewInfo: HTMLElement;
  private readonly gridClock: HTMLElement;
  private readonly notices: HTMLElement;
  private readonly logList: HTMLElement;
  private readonly pauseBtn: HTMLButtonElement;
  private readonly stopBtn: HTMLButtonElement;

  constructor(doc: Document) {
    this.state = el(doc, "state");
    this.adapter = el(doc, "adapter");
    this.job = el(doc, "job");
    this.worker = el(doc, "worker-id");
    this.clock = el(doc, "clock");
    this.loss = el(doc, "loss");
    this.peers = el(doc, "peers");
    this.bytes = el(doc, "bytes");
    this.examples = el(doc, "examples");
    this.progress = el(doc, "epoch-progress");
    this.viewInfo = el(doc, "view");
    this.gridClock = el(doc, "grid-clock");
    this.notices = el(doc, "notices");
    this.logList = el(doc, "log");
    this.pauseBtn = el(doc, "pause");
    this.stopBtn = el(doc, "stop");
  }

  setState(text: string): void {
    this.state.textContent = text;
  }

  setAdapter(text: string): void {
    this.adapter.textContent = text;
  }

  notice(text: string): void {
    const p = document.createElement("p");
    p.textContent = text;
    this.notices.append(p);
  }

  setWelcome(w: WelcomeMessage): void {
    this.worker.textContent = w.workerId;
    this.job.textContent = `${w.job.name} (${w.job.parameters.toLocaleString()} parameters, batch ${w.job.batch})`;
  }

  setShards(count: number, bytes: number): void {
    this.notice(`Assigned ${count} data shards (${(bytes / 1e6).toFixed(1)} MB, downloaded once and cached in this browser).`);
  }

  setView(v: ViewMessage, self: string): void {
    const mode = v.consistency.mode === "ssp" ? `SSP, staleness ${v.consistency.staleness}` : v.consistency.mode.toUpperCase();
    this.viewInfo.textContent = `view ${v.epoch}: ${v.active.length} workers (${v.active.map((m) => (m.id === self ? `${m.id} (you)` : m.id)).join(", ")}), ${mode}, job ${v.state}`;
  }

  setReport(r: WorkerReport, peers: number, bytesIn: number, bytesOut: number, paused: boolean): void {
    this.clock.textContent = String(r.clock);
    this.loss.textContent = r.loss.toFixed(4);
    this.peers.textContent = String(peers);
    this.bytes.textContent = `${(bytesOut / 1e6).toFixed(2)} MB out, ${(bytesIn / 1e6).toFixed(2)} MB in`;
    this.examples.textContent = r.examples.toLocaleString();
    this.progress.value = r.epochProgress;
    if (paused) return;
    const text: Record<WorkerReport["state"], string> = {
      loading: "loading data",
      training: "training",
      waiting: `waiting for ${r.waitingOn.join(", ") || "peers"} (staleness bound)`,
      paused: "paused by the organizer",
      finished: "finished; waiting for the last updates",
      drained: "done",
    };
    this.setState(text[r.state]);
  }

  /** The active workers' clock range, from the coordinator's acks. */
  setGridClock(min: number, max: number, active: number): void {
    this.gridClock.textContent = `${min}–${max} across ${active} active worker${active === 1 ? "" : "s"}`;
  }

  setPaused(paused: boolean): void {
    this.pauseBtn.textContent = paused ? "Resume" : "Pause";
    this.pauseBtn.setAttribute("aria-pressed", String(paused));
    if (paused) this.setState("paused by you");
  }

  onPause(f: () => void): void {
    this.pauseBtn.addEventListener("click", f);
  }

  onStop(f: () => void): void {
    this.stopBtn.addEventListener("click", () => {
      this.stopBtn.disabled = true;
      this.pauseBtn.disabled = true;
      f();
    });
  }

  log(line: string): void {
    const li = document.createElement("li");
    li.textContent = `${new Date().toLocaleTimeString()} ${line}`;
    this.logList.prepend(li);
    while (this.logList.childElementCount > 50) this.logList.lastElementChild?.remove();
  }
}
