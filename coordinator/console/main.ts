/**
 * The organizer's console (/console): follows the job live over GET
 * /api/stream (server-sent full status, then deltas; see coordinator/push.ts)
 * and falls back to polling GET /api/status once a second while the stream is
 * down. Renders the job, workers, charts and events; keeps a wall-time history
 * for the charts and the run report; sends pause / resume / stop /
 * set-consistency / drop to POST /api/control with the console token.
 *
 * Status text (worker names above all) is user-supplied: it only ever reaches
 * the DOM through textContent and attributes, never innerHTML.
 */
import { CONTROL_URL, MODEL_URL, fetchStatus, postControl, type ControlCommand } from "./api.ts";
import { ClocksChart, MetricChart, StalenessChart, type XAxis } from "./charts.ts";
import { RunHistory, buildReport } from "./history.ts";
import { renderQr } from "./qr.ts";
import { parseStatus, type Status } from "./status.ts";
import { STREAM_URL, StatusStream, type StreamState } from "./stream.ts";
import { WorkerTable } from "./table.ts";
import { startJobsPanel } from "./jobs.ts";
import { adoptTokenFromUrl, clearToken, getToken, setToken } from "./token.ts";
import {
  consistencyLabel, controlsFor, eventsNewestFirst, formatCount, formatTime, jobStateClass, retryDelayMs, totalStaleness,
} from "./view.ts";
import "./style.css";

// ---------------------------------------------------------------- elements

function el<T extends HTMLElement>(id: string, type: new () => T): T {
  const found = document.getElementById(id);
  if (!(found instanceof type)) throw new Error(`console page: #${id} is missing or not a ${type.name}`);
  return found;
}

const ui = {
  main: el("main", HTMLElement),
  jobName: el("job-name", HTMLHeadingElement),
  jobState: el("job-state", HTMLSpanElement),
  parameters: el("fact-parameters", HTMLElement),
  consistency: el("fact-consistency", HTMLElement),
  epoch: el("fact-epoch", HTMLElement),
  active: el("fact-active", HTMLElement),
  clock: el("fact-clock", HTMLElement),
  updated: el("fact-updated", HTMLElement),
  examples: el("fact-examples", HTMLElement),
  transport: el("fact-transport", HTMLElement),
  volunteerTop: el("volunteer-link-top", HTMLAnchorElement),
  connection: el("connection", HTMLDivElement),

  tokenForm: el("token-form", HTMLFormElement),
  tokenMessage: el("token-message", HTMLParagraphElement),
  tokenInput: el("token-input", HTMLInputElement),
  tokenStatus: el("token-status", HTMLParagraphElement),
  tokenForget: el("token-forget", HTMLButtonElement),
  pause: el("btn-pause", HTMLButtonElement),
  resume: el("btn-resume", HTMLButtonElement),
  stop: el("btn-stop", HTMLButtonElement),
  consistencyForm: el("consistency-form", HTMLFormElement),
  mode: el("mode-select", HTMLSelectElement),
  staleness: el("staleness-input", HTMLInputElement),
  download: el("download-model", HTMLAnchorElement),
  downloadReport: el("download-report", HTMLButtonElement),
  qr: el("volunteer-qr", HTMLDivElement),
  xAxis: el("x-axis", HTMLFieldSetElement),
  actionResult: el("action-result", HTMLParagraphElement),

  workersSummary: el("workers-summary", HTMLParagraphElement),
  emptyState: el("empty-state", HTMLDivElement),
  workersWrap: el("workers-wrap", HTMLDivElement),
  volunteerLink: el("volunteer-link", HTMLAnchorElement),
  copyVolunteer: el("copy-volunteer", HTMLButtonElement),
  copyResult: el("copy-result", HTMLSpanElement),

  testTitle: el("test-title", HTMLHeadingElement),
  eventsBody: el("events", HTMLTableElement).tBodies[0] ?? el("events", HTMLTableElement).createTBody(),
  eventsEmpty: el("events-empty", HTMLParagraphElement),
  eventsWrap: el("events-wrap", HTMLDivElement),
};

const table = new WorkerTable(el("workers", HTMLTableElement), (id, label) => {
  if (!window.confirm(`Drop ${label}? It leaves the view at its current clock; its data goes to the others.`)) return;
  void runControl({ action: "drop", worker: id }, `Drop ${id}`);
});
const lossChart = new MetricChart(el("loss-chart", HTMLDivElement), el("loss-summary", HTMLSpanElement), el("loss-empty", HTMLParagraphElement), {
  label: "train loss",
  stroke: "#1d4ed8",
  fill: "rgba(29, 78, 216, 0.08)",
});
const testChart = new MetricChart(el("test-chart", HTMLDivElement), el("test-summary", HTMLSpanElement), el("test-empty", HTMLParagraphElement), {
  label: "test metric",
  stroke: "#047857",
  fill: "rgba(4, 120, 87, 0.08)",
});
const clocksChart = new ClocksChart(el("clocks-chart", HTMLDivElement), el("clocks-summary", HTMLSpanElement), el("clocks-empty", HTMLParagraphElement));
const stalenessChart = new StalenessChart(el("staleness-chart", HTMLDivElement), el("staleness-summary", HTMLSpanElement), el("staleness-empty", HTMLParagraphElement));
const history = new RunHistory();
let xAxis: XAxis = "clock";

ui.download.href = MODEL_URL;

// ---------------------------------------------------------------- status rendering

let current: Status | null = null;
/** The last status as received (JSON), for the run report. */
let currentRaw: unknown = null;
let lastOkAt: number | null = null;
let eventsKey = "";
/** The consistency form follows the status until the organizer edits it. */
let consistencyDirty = false;

function volunteerUrl(status: Status | null): string {
  const fallback = `${location.origin}/`;
  const given = status?.volunteerUrl;
  if (given === undefined) return fallback;
  try {
    const url = new URL(given, location.href);
    // Only ever link to http(s): the status must not be able to plant a javascript: URL.
    return url.protocol === "http:" || url.protocol === "https:" ? url.toString() : fallback;
  } catch {
    return fallback;
  }
}

function setLink(a: HTMLAnchorElement, url: string): void {
  if (a.getAttribute("href") !== url) a.setAttribute("href", url);
  if (a.textContent !== url) a.textContent = url;
}

/** Renders one validated status (from the stream or a poll) and records it in the history. */
function applyStatus(status: Status, raw: unknown): void {
  current = status;
  currentRaw = raw;
  lastOkAt = Date.now();
  history.record(status, lastOkAt);
  const { job, consistency, view, clock } = status;

  ui.jobName.textContent = job.name;
  ui.jobState.textContent = job.state;
  ui.jobState.className = `badge ${jobStateClass(job.state)}`;
  document.title = `${job.name} · ${job.state} — Grid console`;
  ui.parameters.textContent = formatCount(job.parameters);
  ui.consistency.textContent = consistencyLabel(consistency.mode, consistency.staleness);
  ui.epoch.textContent = formatCount(view.epoch);
  ui.active.textContent = formatCount(view.active.length);
  ui.clock.textContent =
    clock.min == null || clock.max == null
      ? "—"
      : `${formatCount(clock.min)} – ${formatCount(clock.max)} (spread ${formatCount(clock.max - clock.min)})`;
  ui.updated.textContent = formatTime(lastOkAt);
  ui.examples.textContent = formatCount(status.examples);

  const url = volunteerUrl(status);
  setLink(ui.volunteerTop, url);
  setLink(ui.volunteerLink, url);

  const none = status.workers.length === 0;
  ui.emptyState.hidden = !none;
  if (none) renderQr(ui.qr, url);
  ui.workersWrap.hidden = none;
  ui.workersSummary.textContent = none ? "" : summarizeWorkers(status);
  table.render(status);

  renderCharts(status);

  renderEvents(status);
  updateControls();
  if (!consistencyDirty && document.activeElement !== ui.mode && document.activeElement !== ui.staleness) {
    if (["ssp", "bsp", "asp"].includes(consistency.mode)) ui.mode.value = consistency.mode;
    ui.staleness.value = String(consistency.staleness);
    syncStalenessInput();
  }
}

function renderCharts(status: Status): void {
  lossChart.update(xAxis, status.metrics.trainLoss, history.lossByTime);
  const test = status.metrics.test;
  ui.testTitle.textContent = test == null ? "Test metric" : `Test ${test.name}`;
  testChart.update(xAxis, test?.series ?? [], history.testByTime, test == null ? undefined : `test ${test.name}`);
  const { ids, columns } = history.clockColumns();
  clocksChart.update(ids, columns, status.consistency.mode, status.consistency.staleness);
  stalenessChart.update(totalStaleness(status.workers));
}

ui.xAxis.addEventListener("change", (event) => {
  const target = event.target;
  if (!(target instanceof HTMLInputElement)) return;
  xAxis = target.value === "time" ? "time" : "clock";
  if (current !== null) renderCharts(current);
});

function summarizeWorkers(status: Status): string {
  const counts = new Map<string, number>();
  for (const w of status.workers) counts.set(w.state, (counts.get(w.state) ?? 0) + 1);
  const parts = [...counts].map(([state, n]) => `${n} ${state}`);
  const total = status.workers.length;
  return `${total} worker${total === 1 ? "" : "s"}: ${parts.join(", ")}.`;
}

function renderEvents(status: Status): void {
  const events = eventsNewestFirst(status.events);
  const first = events[0];
  const key = `${status.events.length}:${first?.t}:${first?.kind}:${first?.worker}`;
  if (key === eventsKey) return;
  eventsKey = key;
  const names = new Map(status.workers.map((w) => [w.id, w.name]));
  const rows = events.map((e) => {
    const row = document.createElement("tr");
    row.className = `event event-${e.kind.replace(/[^a-z0-9-]/gi, "")}`;
    const time = document.createElement("td");
    const stamp = document.createElement("time");
    stamp.dateTime = new Date(e.t).toISOString();
    stamp.textContent = formatTime(e.t);
    time.append(stamp);
    const kind = document.createElement("td");
    kind.textContent = e.detail != null && e.detail !== "" ? `${e.kind} — ${e.detail}` : e.kind;
    const worker = document.createElement("td");
    const name = e.worker == null ? undefined : names.get(e.worker);
    worker.textContent = e.worker == null ? "—" : name != null && name !== "" ? `${e.worker} (${name})` : e.worker;
    row.append(time, kind, worker);
    return row;
  });
  ui.eventsBody.replaceChildren(...rows);
  ui.eventsEmpty.hidden = rows.length > 0;
  ui.eventsWrap.hidden = rows.length === 0;
}

// ---------------------------------------------------------------- stream, with polling as the fallback

let failures = 0;
let timer: ReturnType<typeof setTimeout> | undefined;
let inFlight = false;
let again = false;
/** Poll while the stream is not live; stop as soon as it is. */
let polling = false;
let streamState: StreamState = "connecting";

function showProblem(message: string): void {
  ui.connection.textContent = message;
  ui.connection.hidden = false;
  ui.main.classList.toggle("stale", current !== null);
}

function clearProblem(): void {
  if (!ui.connection.hidden) {
    ui.connection.hidden = true;
    ui.connection.textContent = "";
  }
  ui.main.classList.remove("stale");
}

/** Renders a status from either source; a rendering bug must not stop the updates. */
function accept(raw: unknown, status: Status): void {
  failures = 0;
  clearProblem();
  try {
    applyStatus(status, raw);
  } catch (err) {
    showProblem(`The console could not show this status: ${err instanceof Error ? err.message : String(err)}`);
    console.error(err);
  }
}

function showTransport(): void {
  const live = streamState === "live";
  ui.transport.dataset["transport"] = live ? "stream" : polling ? "polling" : "connecting";
  ui.transport.textContent = live ? "live (pushed)" : polling ? "polling every second" : "connecting…";
}

function startPolling(): void {
  if (polling) return;
  polling = true;
  showTransport();
  void poll();
}

function stopPolling(): void {
  polling = false;
  clearTimeout(timer);
  showTransport();
}

async function poll(): Promise<void> {
  if (inFlight) {
    again = true;
    return;
  }
  inFlight = true;
  clearTimeout(timer);
  const result = await fetchStatus();
  inFlight = false;
  if (streamState === "live") {
    // The stream took over while this request was out; its data is as new.
    again = false;
    return;
  }
  if (result.kind === "ok") {
    accept(result.raw, result.status);
  } else {
    failures += 1;
    const seconds = Math.round(retryDelayMs(failures) / 1000);
    const since = lastOkAt === null ? "" : ` Last update at ${formatTime(lastOkAt)}; the figures below may be out of date.`;
    const what =
      result.kind === "unreachable"
        ? `Cannot reach the coordinator (${result.error}).`
        : `The coordinator sent a status this console does not understand: ${result.error}.`;
    showProblem(`${what} Retrying in ${seconds} s.${since}`);
    if (current === null) {
      ui.jobName.textContent = "No status";
      ui.jobState.textContent = result.kind === "unreachable" ? "unreachable" : "unreadable";
      ui.jobState.className = "badge state-failed";
      setLink(ui.volunteerTop, volunteerUrl(null));
      setLink(ui.volunteerLink, volunteerUrl(null));
    }
  }
  if (again) {
    again = false;
    void poll();
    return;
  }
  if (polling) timer = setTimeout(() => void poll(), retryDelayMs(failures));
}

const stream = new StatusStream(STREAM_URL, {
  onStatus(raw) {
    const parsed = parseStatus(raw);
    if (parsed.ok) accept(raw, parsed.status);
    else showProblem(`The coordinator sent a status this console does not understand: ${parsed.error}.`);
  },
  onState(state) {
    streamState = state;
    if (state === "live") stopPolling();
    else if (state === "down") startPolling();
    showTransport();
  },
});

/** Asks for a fresh status now (after a control), unless the stream will bring it within half a second. */
function refreshSoon(): void {
  if (streamState !== "live") void poll();
}

// ---------------------------------------------------------------- token

type Pending = { command: ControlCommand; label: string };
let pending: Pending | null = null;

function showTokenState(): void {
  const has = getToken() !== null;
  ui.tokenStatus.hidden = !has || !ui.tokenForm.hidden;
  if (!has && ui.tokenForm.hidden) askToken("Enter the console token to control the job.", false);
}

function askToken(message: string, focus: boolean): void {
  ui.tokenMessage.textContent = message;
  ui.tokenForm.hidden = false;
  ui.tokenStatus.hidden = true;
  if (focus) ui.tokenInput.focus();
}

ui.tokenForm.addEventListener("submit", (event) => {
  event.preventDefault();
  const token = ui.tokenInput.value.trim();
  if (token === "") {
    ui.tokenMessage.textContent = "The token cannot be empty.";
    ui.tokenInput.focus();
    return;
  }
  setToken(token);
  ui.tokenInput.value = "";
  ui.tokenForm.hidden = true;
  showTokenState();
  const next = pending;
  pending = null;
  if (next !== null) void runControl(next.command, next.label);
  else showResult("Token saved.", "ok");
});

ui.tokenForget.addEventListener("click", () => {
  clearToken();
  askToken("Enter the console token.", true);
});

// ---------------------------------------------------------------- controls

let busy = false;

function showResult(message: string, kind: "ok" | "error" | "pending"): void {
  ui.actionResult.textContent = message;
  ui.actionResult.dataset["kind"] = kind;
}

function updateControls(): void {
  const allowed = controlsFor(current?.job.state ?? null);
  ui.pause.disabled = busy || !allowed.pause;
  ui.resume.disabled = busy || !allowed.resume;
  ui.stop.disabled = busy || !allowed.stop;
  for (const control of ui.consistencyForm.elements) {
    if (control instanceof HTMLButtonElement) control.disabled = busy;
  }
}

async function runControl(command: ControlCommand, label: string): Promise<void> {
  const token = getToken();
  if (token === null) {
    pending = { command, label };
    askToken(`Enter the console token to ${label.toLowerCase()}.`, true);
    showResult(`${label}: waiting for the console token.`, "pending");
    return;
  }
  busy = true;
  updateControls();
  showResult(`${label}…`, "pending");
  const result = await postControl(command, token);
  busy = false;
  updateControls();
  const at = formatTime(Date.now());
  switch (result.kind) {
    case "ok":
      showResult(`${label}: accepted at ${at} (${result.message}).`, "ok");
      if (command.action === "set") consistencyDirty = false;
      refreshSoon();
      break;
    case "unauthorized":
      clearToken();
      pending = { command, label };
      askToken("The coordinator rejected the token (401). Enter it again; the action will be retried.", true);
      showResult(`${label}: the token was rejected (${result.message}).`, "error");
      break;
    case "error":
      showResult(`${label} failed at ${at}: ${result.message}. ${CONTROL_URL} did not accept it.`, "error");
      break;
  }
}

ui.pause.addEventListener("click", () => void runControl({ action: "pause" }, "Pause"));
ui.resume.addEventListener("click", () => void runControl({ action: "resume" }, "Resume"));
ui.stop.addEventListener("click", () => {
  const name = current?.job.name ?? "the job";
  if (!window.confirm(`Stop ${name}? Training ends for every volunteer.`)) return;
  void runControl({ action: "stop" }, "Stop");
});

for (const input of [ui.mode, ui.staleness]) {
  input.addEventListener("input", () => {
    consistencyDirty = true;
  });
}
/** The staleness bound only means something under SSP. */
function syncStalenessInput(): void {
  ui.staleness.disabled = ui.mode.value !== "ssp";
}
ui.mode.addEventListener("change", syncStalenessInput);

ui.consistencyForm.addEventListener("submit", (event) => {
  event.preventDefault();
  const mode = ui.mode.value;
  if (mode !== "ssp" && mode !== "bsp" && mode !== "asp") return;
  const staleness = mode === "bsp" ? 0 : Number(ui.staleness.value);
  if (!Number.isInteger(staleness) || staleness < 0) {
    showResult("Staleness must be a whole number, 0 or more.", "error");
    ui.staleness.focus();
    return;
  }
  const label = mode === "ssp" ? `Set SSP, staleness ${staleness}` : `Set ${mode.toUpperCase()}`;
  void runControl({ action: "set", consistency: mode, staleness }, label);
});

// ---------------------------------------------------------------- downloads

ui.download.addEventListener("click", (event) => {
  const evaluated = (current?.metrics.test?.series.length ?? 0) > 0;
  if (current !== null && !evaluated) {
    event.preventDefault();
    showResult("No model to download yet: the coordinator has not evaluated a replica so far.", "error");
  }
});

ui.downloadReport.addEventListener("click", () => {
  const report = buildReport(history, currentRaw, location.origin, Date.now());
  const blob = new Blob([JSON.stringify(report, null, 1)], { type: "application/json" });
  const href = URL.createObjectURL(blob);
  const a = document.createElement("a");
  const stamp = new Date().toISOString().replace(/[:.]/g, "-");
  a.href = href;
  a.download = `grid-report-${(current?.job.name ?? "job").replace(/[^a-z0-9-]/gi, "_")}-${stamp}.json`;
  document.body.append(a);
  a.click();
  a.remove();
  setTimeout(() => URL.revokeObjectURL(href), 10_000);
  showResult(`Run report saved (${history.samples.length} samples since this page opened).`, "ok");
});

// ---------------------------------------------------------------- volunteer link

if (window.isSecureContext && navigator.clipboard !== undefined) {
  ui.copyVolunteer.hidden = false;
  ui.copyVolunteer.addEventListener("click", () => {
    navigator.clipboard.writeText(ui.volunteerLink.href).then(
      () => {
        ui.copyResult.textContent = "Copied.";
      },
      () => {
        ui.copyResult.textContent = "Could not copy; select the link instead.";
      },
    );
  });
}

// ---------------------------------------------------------------- start

adoptTokenFromUrl();
showTokenState();
setLink(ui.volunteerTop, volunteerUrl(null));
setLink(ui.volunteerLink, volunteerUrl(null));
updateControls();
showTransport();
stream.start();
startJobsPanel(document);
// A stream that is not live within 3 s (a proxy buffering it, say): poll meanwhile.
setTimeout(() => {
  if (streamState !== "live") startPolling();
}, 3000);
