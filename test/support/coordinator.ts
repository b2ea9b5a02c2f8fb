/**
 * Starts a real coordinator process (`tsx coordinator/main.ts`) on a free
 * loopback port for end-to-end tests and the harness, and stops it.
 */
import { spawn, type ChildProcess } from "node:child_process";
import { mkdtempSync } from "node:fs";
import { tmpdir } from "node:os";
import { join, resolve } from "node:path";

export interface CoordinatorProcess {
  readonly url: string;
  readonly token: string;
  readonly stateDir: string;
  readonly child: ChildProcess;
  /** Everything the process printed so far. */
  output(): string;
  status(): Promise<Status>;
  stop(): Promise<void>;
}

/** The parts of /api/status the tests read. */
export interface Status {
  job: { name: string; parameters: number; state: string };
  consistency: { mode: string; staleness: number };
  view: { epoch: number; active: string[] };
  clock: { min: number; max: number };
  examples: number;
  served: { shards: number; bytes: number };
  /** Job mf only. */
  mf?: { checkpointBytesIn: number; testRmse: number | null; floor: number };
  workers: {
    id: string;
    state: string;
    clock: number;
    bytesIn: number;
    bytesOut: number;
    peers: number;
    backend: string;
    kernel: string;
    adapter: string;
    name: string;
    examples: number;
    shards: number;
    startClock: number;
    stepMs: number;
    waitMs: number;
    digest: { sum: number; l2: number; proj: number[] } | null;
  }[];
  metrics: { trainLoss: [number, number][]; test: { name: string; series: [number, number][] } };
  events: { t: number; kind: string; worker?: string; detail?: string }[];
}

const ROOT = resolve(import.meta.dirname, "..", "..");

/**
 * `opts.stateDir` and `opts.port` restart a coordinator on the state and port
 * of an earlier one (crash tests). The coordinator runs as one process (node
 * with tsx's loader), so a signal reaches it and not a wrapper.
 */
export async function startCoordinatorProcess(
  flags: string[] = [],
  timeoutMs = 60_000,
  opts: { stateDir?: string; port?: number } = {},
): Promise<CoordinatorProcess> {
  const stateDir = opts.stateDir ?? mkdtempSync(join(tmpdir(), "grid-state-"));
  const token = "test-token-0123456789";
  const child = spawn(
    process.execPath,
    [
      // GRID_COORDINATOR_NODE_ARGS: extra Node flags for the coordinator (e.g. --cpu-prof to profile a harness run).
      ...(process.env["GRID_COORDINATOR_NODE_ARGS"] ?? "").split(" ").filter((a) => a !== ""),
      "--import", "tsx",
      "coordinator/main.ts",
      "--port", String(opts.port ?? 0),
      "--no-build",
      "--state-dir", stateDir,
      "--token", token,
      // GRID_DIST: serve another build (lets one checkout test while another build runs).
      ...(process.env["GRID_DIST"] ? ["--dist", process.env["GRID_DIST"]] : []),
      ...flags,
    ],
    { cwd: ROOT, stdio: ["ignore", "pipe", "pipe"] },
  );
  let out = "";
  child.stdout?.on("data", (d: Buffer) => (out += d.toString()));
  child.stderr?.on("data", (d: Buffer) => (out += d.toString()));
  const url = await new Promise<string>((res, rej) => {
    const timer = setTimeout(() => rej(new Error(`coordinator did not start in ${timeoutMs} ms:\n${out}`)), timeoutMs);
    const check = (): void => {
      const m = /volunteer URL: (http:\/\/\S+?)\/\s/.exec(out);
      if (m?.[1]) {
        clearTimeout(timer);
        res(m[1]);
      }
    };
    child.stdout?.on("data", check);
    child.once("exit", (code) => {
      clearTimeout(timer);
      rej(new Error(`coordinator exited with ${code}:\n${out}`));
    });
  });
  return {
    url,
    token,
    stateDir,
    child,
    output: () => out,
    status: async () => (await (await fetch(`${url}/api/status`)).json()) as Status,
    stop: async () => {
      if (child.exitCode !== null) return;
      const exited = new Promise<void>((r) => child.once("exit", () => r()));
      child.kill("SIGTERM");
      const t = setTimeout(() => child.kill("SIGKILL"), 5000);
      await exited;
      clearTimeout(t);
    },
  };
}

/** Poll `f` every `everyMs` until it returns a value, or throw after `timeoutMs`. */
export async function waitFor<T>(what: string, f: () => Promise<T | null | undefined | false>, timeoutMs: number, everyMs = 500): Promise<T> {
  const deadline = Date.now() + timeoutMs;
  for (;;) {
    const v = await f();
    if (v) return v;
    if (Date.now() > deadline) throw new Error(`timed out after ${timeoutMs} ms waiting for ${what}`);
    await new Promise((r) => setTimeout(r, everyMs));
  }
}
