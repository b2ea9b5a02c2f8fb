/**
 * How the coordinator evaluates an uploaded replica on the test set: in a
 * worker thread (`threadEvaluator`, what the coordinator process uses) or
 * inline on the caller's thread (`inlineEvaluator`, for tests and as the
 * fallback when no thread can be started). Both answer with a promise.
 */
import { Worker } from "node:worker_threads";
import { createRequire } from "node:module";
import { pathToFileURL } from "node:url";
import type { JobDefinition } from "../client/jobs/job.ts";
import type { ImageSet } from "./data.ts";

export interface Evaluation {
  readonly name: string;
  readonly value: number;
  readonly ms: number;
}

export interface Evaluator {
  evaluate(clock: number, params: Float32Array): Promise<Evaluation>;
  close(): Promise<void>;
}

export function inlineEvaluator(job: JobDefinition, test: ImageSet): Evaluator {
  return {
    evaluate: (_clock, params) => {
      const t0 = performance.now();
      try {
        const m = job.evaluate(params, test.pixels, test.labels, test.count);
        return Promise.resolve({ name: m.name, value: m.value, ms: performance.now() - t0 });
      } catch (e) {
        return Promise.reject(e instanceof Error ? e : new Error(String(e)));
      }
    },
    close: () => Promise.resolve(),
  };
}

type Reply = { clock: number; name: string; value: number; ms: number } | { clock: number; error: string };

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
    else w.resolve({ name: r.name, value: r.value, ms: r.ms });
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
