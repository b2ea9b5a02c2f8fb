/**
 * The harness's live progress on the terminal. On a TTY one status line is
 * rewritten in place (events are printed above it as they happen); when
 * stdout is not a TTY (CI logs, pipes) it degrades to plain lines: every event
 * as one line, and the status line at most every `plainEveryMs`.
 */
import type { RunEvent, Sample, TestPoint } from "./run.ts";

export interface ProgressSink {
  write(text: string): void;
  readonly isTTY: boolean;
  readonly columns?: number;
}

function fmtExamples(n: number): string {
  return n >= 1e6 ? `${(n / 1e6).toFixed(2)}M` : n >= 1e4 ? `${(n / 1e3).toFixed(1)}k` : String(n);
}

export function eventText(e: RunEvent): string {
  return `${e.kind}${e.worker ? ` ${e.worker}` : ""}${e.detail ? `: ${e.detail}` : ""}`;
}

/** The one-line status: time, state, clock range, test metric, active workers, examples, last event. */
export function statusLine(label: string, s: Sample, test: TestPoint | null, recent: string): string {
  const acc = test ? `acc ${test.value.toFixed(4)}@${test.clock}` : "acc -";
  const clock = s.clockMin === s.clockMax ? `clock ${s.clockMax}` : `clock ${s.clockMin}-${s.clockMax}`;
  const head = label === "run" ? "" : `${label} `;
  return `${head}[${s.t.toFixed(1).padStart(6)} s] ${s.state.padEnd(7)} ${clock} ${acc} workers ${s.active} ex ${fmtExamples(s.examples)}${recent ? ` | ${recent}` : ""}`;
}

export class Progress {
  private readonly out: ProgressSink;
  private readonly plainEveryMs: number;
  private line = "";
  private lastPlain = 0;
  private recent: string[] = [];
  private label = "run";

  constructor(out: ProgressSink, plainEveryMs = 5000) {
    this.out = out;
    this.plainEveryMs = plainEveryMs;
  }

  startRun(label: string): void {
    this.label = label;
    this.recent = [];
    this.lastPlain = 0;
  }

  private clear(): void {
    if (this.out.isTTY && this.line) this.out.write("\r\x1b[K");
  }

  private redraw(): void {
    if (!this.out.isTTY || !this.line) return;
    const cols = this.out.columns ?? 120;
    this.out.write(this.line.length > cols - 1 ? this.line.slice(0, cols - 2) + "…" : this.line);
  }

  event(e: RunEvent): void {
    const text = eventText(e);
    this.recent = [...this.recent, text].slice(-2);
    this.clear();
    this.out.write(`${this.label === "run" ? "" : `${this.label} `}[${e.t.toFixed(1).padStart(6)} s] ${e.source === "harness" ? "harness" : "coord"}: ${text}\n`);
    this.redraw();
  }

  sample(s: Sample, test: TestPoint | null): void {
    const line = statusLine(this.label, s, test, this.out.isTTY ? this.recent.join("; ") : "");
    if (this.out.isTTY) {
      this.clear();
      this.line = line;
      this.redraw();
      return;
    }
    const now = Date.now();
    if (now - this.lastPlain >= this.plainEveryMs) {
      this.lastPlain = now;
      this.out.write(line + "\n");
    }
  }

  /** Ends the live line (the next output starts on a fresh line). */
  end(finalLine?: string): void {
    this.clear();
    this.line = "";
    if (finalLine) this.out.write(finalLine + "\n");
  }

  /** Plain text, above the live line. */
  print(text: string): void {
    this.clear();
    this.out.write(text + "\n");
    this.redraw();
  }
}
