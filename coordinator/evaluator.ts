/**
 * How the coordinator evaluates an uploaded replica on the test set: in a
 * worker thread (`threadEvaluator`, what the coordinator process uses) or
 * inline on the caller's thread (`inlineEvaluator`, for tests and as the
 * fallback when no thread can be started). Both answer with a promise.
 */
import { readFileSync } from "node:fs";
import { Worker } from "node:worker_threads";
import { createRequire } from "node:module";
import { pathToFileURL } from "node:url";
import type { JobDefinition } from "../client/jobs/job.ts";
import type { ImageSet } from "./data.ts";

export interface Evaluation {
  readonly name: string;
  readonly value: number;
  readonly ms: number;
  /**
   * CPU time the evaluating thread spent on it, ms, where the system tells
   * (`threadCpuMs`). On a machine whose cores are busy with other work the
   * wall time `ms` can be many times this.
   */
  readonly cpuMs?: number;
}

/** Linux's USER_HZ: /proc reports CPU times in these ticks (100 a second on every mainstream architecture). */
const USER_HZ = 100;

/**
 * CPU time (user + system) of the calling thread so far, ms, from
 * /proc/thread-self/stat; null where that file does not exist (not Linux).
 * Resolution is one tick (10 ms).
 */
export function threadCpuMs(): number | null {
  let stat: string;
  try {
    stat = readFileSync("/proc/thread-self/stat", "utf8");
  } catch {
    return null;
  }
  // "pid (comm) state ppid …": comm may hold spaces and parentheses, so count from the last ")".
  const f = stat.slice(stat.lastIndexOf(")") + 2).split(" ");
  const utime = Number(f[11]);
  const stime = Number(f[12]);
  return Number.isFinite(utime) && Number.isFinite(stime) ? ((utime + stime) * 1000) / USER_HZ : null;
}

/** Run `f`, timing it by the wall clock and by the thread's CPU time. */
export function timed<T>(f: () => T): { value: T; ms: number; cpuMs?: number } {
  const c0 = threadCpuMs();
  const t0 = performance.now();
  const value = f();
  const ms = performance.now() - t0;
  const c1 = threadCpuMs();
  return c0 !== null && c1 !== null ? { value, ms, cpuMs: c1 - c0 } : { value, ms };
}

export interface Evaluator {
  evaluate(clock: number, params: Float32Array): Promise<Evaluation>;
  close(): Promise<void>;
}

export function inlineEvaluator(job: JobDefinition, test: ImageSet): Evaluator {
  return {
    evaluate: (_clock, params) => {
      try {
        const { value: m, ms, cpuMs } = timed(() => job.evaluate(params, test.pixels, test.labels, test.count));
        return Promise.resolve({ name: m.name, value: m.value, ms, ...(cpuMs !== undefined ? { cpuMs } : {}) });
      } catch (e) {
        return Promise.reject(e instanceof Error ? e : new Error(String(e)));
      }
    },
    close: () => Promise.resolve(),
  };
}

type Reply = { clock: number; name: string; value: number; ms: number; cpuMs?: number } | { clock: number; error: string };

/**
 * One worker thread, one evaluation at a time (the caller keeps at most one in
 * flight). If the thread cannot start or dies, evaluations run inline from then on.
 */
export function threadEvaluator(job: JobDefinition, test: ImageSet, log?: (line: string) => void): Evaluator {
  const entry = new URL("./eval-worker.ts", import.meta.url);
  const workerData = { job: job.name, pixels: test.pixels, labels: test.labels, count: test.count };
  // Loaders registered on the main thread do not reach worker threads, so the
  // thread registers tsx (its ESM API, found from this package) before it
  // imports the TypeScript entry.
  const api = pathToFileURL(createRequire(import.meta.url).resolve("tsx/esm/api").replace(/\.cjs$/, ".mjs")).href;
  const boot = `import(${JSON.stringify(api)}).then((m) => { m.register(); return import(${JSON.stringify(entry.href)}); });`;
  const worker = new Worker(boot, { eval: true, workerData });
  worker.unref();
  const inline = inlineEvaluator(job, test);
  const waiting: { resolve: (e: Evaluation) => void; reject: (e: Error) => void }[] = [];
  let failed: Error | null = null;
  worker.on("message", (r: Reply) => {
    const w = waiting.shift();
    if (!w) return;
    if ("error" in r) w.reject(new Error(r.error));
    else w.resolve({ name: r.name, value: r.value, ms: r.ms, ...(r.cpuMs !== undefined ? { cpuMs: r.cpuMs } : {}) });
  });
  const fail = (e: Error): void => {
    if (failed) return;
    failed = e;
    log?.(`evaluation thread stopped (${e.message}); evaluating on the main thread from now on`);
    for (const w of waiting.splice(0)) w.reject(e);
  };
  worker.on("error", fail);
  worker.on("exit", (code) => fail(new Error(`exited with ${code}`)));
  return {
    evaluate: (clock, params) => {
      if (failed) return inline.evaluate(clock, params);
      return new Promise((resolve, reject) => {
        waiting.push({ resolve, reject });
        worker.postMessage({ clock, params });
      });
    },
    close: async () => {
      worker.removeAllListeners("exit");
      await worker.terminate();
    },
  };
}
