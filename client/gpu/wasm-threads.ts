/**
 * How many threads the CPU path (TF.js WASM, XNNPACK) runs with, and the
 * bound on starting its threaded build. Pure: no TF.js, no DOM.
 *
 * TF.js's threaded build needs SharedArrayBuffer, which a page has only when
 * it is cross-origin isolated (the coordinator's `--cross-origin-isolation
 * on` sends COOP/COEP). The count includes the calling thread (the trainer
 * worker): 2 means the worker and one pthread.
 *
 * Rule: not isolated, or the browser offers no WASM threads → the
 * single-thread SIMD build. Else `?threads=N` when given (the threaded build
 * even at N = 1, for comparisons), else min(4, cores − 1): one core stays for
 * the page, its WebRTC links and the browser, and past 4 the job's small
 * products (64×784·784×256) gain little. When that is 1 (two cores or
 * fewer) the single-thread build is used: the threaded build at one thread
 * only adds its start-up.
 */

/** Most threads the default rule gives. */
export const DEFAULT_MAX_THREADS = 4;
/** Most threads `?threads=` accepts. */
export const MAX_THREADS = 16;
/** A threaded start that has not settled after this long falls back to the single-thread build, ms. */
export const THREADED_START_BOUND_MS = 10_000;

export interface WasmThreadsPlan {
  /** Start TF.js's threaded SIMD build (else its single-thread SIMD build). */
  readonly threaded: boolean;
  /** Threads asked of XNNPACK (1 with the single-thread build). */
  readonly threads: number;
  /** Why, in words for the page's status. */
  readonly why: string;
}

export interface ThreadsInput {
  /** `crossOriginIsolated` of the realm. */
  readonly isolated: boolean;
  /** Whether TF.js sees WASM threads (its WASM_HAS_MULTITHREAD_SUPPORT). */
  readonly threadsSupported: boolean;
  /** `navigator.hardwareConcurrency` (undefined or 0 when unknown). */
  readonly cores: number | undefined;
  /** `?threads=N`, or null. */
  readonly requested: number | null;
}

/** `?threads=N`: a whole number 1..MAX_THREADS, else null (ignored, as an unknown `?backend=` is). */
export function parseThreadsParam(value: string | null): number | null {
  if (value === null || !/^[0-9]{1,2}$/.test(value)) return null;
  const n = Number(value);
  return n >= 1 && n <= MAX_THREADS ? n : null;
}

/** The rule of the file comment. */
export function planWasmThreads(input: ThreadsInput): WasmThreadsPlan {
  if (!input.isolated) return { threaded: false, threads: 1, why: "page not cross-origin isolated" };
  if (!input.threadsSupported) return { threaded: false, threads: 1, why: "this browser offers no WASM threads" };
  if (input.requested !== null) return { threaded: true, threads: input.requested, why: `?threads=${input.requested}` };
  const cores = input.cores !== undefined && Number.isFinite(input.cores) && input.cores >= 1 ? Math.floor(input.cores) : 1;
  const threads = Math.max(1, Math.min(DEFAULT_MAX_THREADS, cores - 1));
  if (threads < 2) return { threaded: false, threads: 1, why: `${cores} core${cores === 1 ? "" : "s"}: one thread` };
  return { threaded: true, threads, why: `${cores} cores` };
}

/** Thrown when a start did not settle within its bound or a thread reported an error while it ran. */
export class StartFailed extends Error {}

/**
 * `start` bounded: rejects with `StartFailed` after `ms`, or as soon as
 * `errors` (the realm's uncaught errors, e.g. a pthread worker's
 * ReferenceError re-thrown by Emscripten) reports one while it runs. The
 * listener is removed when the race settles.
 */
export function boundStart<T>(
  start: Promise<T>,
  ms: number,
  errors: { add(f: (message: string) => void): () => void } | null = null,
): Promise<T> {
  return new Promise<T>((resolve, reject) => {
    let done = false;
    let remove: (() => void) | null = null;
    const finish = (): boolean => {
      if (done) return false;
      done = true;
      clearTimeout(timer);
      remove?.();
      return true;
    };
    const timer = setTimeout(() => {
      if (finish()) reject(new StartFailed(`did not start within ${ms} ms`));
    }, ms);
    remove = errors?.add((message) => {
      if (finish()) reject(new StartFailed(`a thread failed: ${message}`));
    }) ?? null;
    if (done) remove?.();
    start.then(
      (v) => {
        if (finish()) resolve(v);
      },
      (e: unknown) => {
        if (finish()) reject(e instanceof Error ? e : new StartFailed(typeof e === "object" && e !== null && "message" in e ? String(e.message) : String(e)));
      },
    );
  });
}

/** What the status says of the CPU path's threads: "1 wasm thread", "2 wasm threads". */
export function threadsLabel(threads: number): string {
  return `${threads} wasm thread${threads === 1 ? "" : "s"}`;
}
