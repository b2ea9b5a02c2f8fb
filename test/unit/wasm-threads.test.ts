/**
 * The CPU path's WASM threads: the thread rule and `?threads=`, the bound on
 * a threaded start, the build plugin that keeps the threaded factory's source
 * whole for its pthread workers, and the coordinator's isolation headers
 * (flag, and on every kind of response when on; none when off).
 */
import { afterAll, afterEach, beforeAll, describe, expect, it, vi } from "vitest";
import { mkdtempSync, readFileSync } from "node:fs";
import { createRequire } from "node:module";
import { tmpdir } from "node:os";
import { dirname, join, resolve } from "node:path";
import { runInNewContext } from "node:vm";
import { minifySync } from "rolldown/utils";
import { boundStart, DEFAULT_MAX_THREADS, MAX_THREADS, parseThreadsParam, planWasmThreads, StartFailed, threadsLabel } from "../../client/gpu/wasm-threads.ts";
import { factoryExpression, pinFactorySource, THREADED_FACTORY_MODULE } from "../../scripts/tfjs-threads-plugin.ts";
import { parseCoordinatorArgs, UsageError } from "../../coordinator/cli.ts";
import { ISOLATION_HEADERS, isolationHeaders } from "../../coordinator/isolation.ts";
import { JobRun } from "../../coordinator/job.ts";
import { startServer, type RunningServer } from "../../coordinator/server.ts";
import { JobStore } from "../../coordinator/state.ts";
import { tinyJobOptions } from "../support/tiny-run.ts";

const ROOT = resolve(import.meta.dirname, "..", "..");

describe("the WASM thread rule", () => {
  const base = { isolated: true, threadsSupported: true, cores: 8, requested: null };

  it("uses the single-thread build unless the page is isolated and has WASM threads", () => {
    expect(planWasmThreads({ ...base, isolated: false })).toMatchObject({ threaded: false, threads: 1 });
    expect(planWasmThreads({ ...base, isolated: false, requested: 4 })).toMatchObject({ threaded: false, threads: 1 });
    expect(planWasmThreads({ ...base, threadsSupported: false, requested: 2 })).toMatchObject({ threaded: false, threads: 1 });
  });

  it("gives cores − 1 threads, at most 4, and the single-thread build when that is one", () => {
    const threads = (cores: number | undefined) => planWasmThreads({ ...base, cores });
    expect(threads(1)).toMatchObject({ threaded: false, threads: 1 });
    expect(threads(2)).toMatchObject({ threaded: false, threads: 1, why: "2 cores: one thread" });
    expect(threads(3)).toMatchObject({ threaded: true, threads: 2 });
    expect(threads(4)).toMatchObject({ threaded: true, threads: 3 });
    expect(threads(5)).toMatchObject({ threaded: true, threads: DEFAULT_MAX_THREADS });
    expect(threads(64)).toMatchObject({ threaded: true, threads: DEFAULT_MAX_THREADS });
    expect(threads(undefined)).toMatchObject({ threaded: false, threads: 1 });
    expect(threads(0)).toMatchObject({ threaded: false, threads: 1 });
  });

  it("takes ?threads=N when isolated, the threaded build even at 1", () => {
    expect(planWasmThreads({ ...base, cores: 2, requested: 2 })).toMatchObject({ threaded: true, threads: 2, why: "?threads=2" });
    expect(planWasmThreads({ ...base, cores: 2, requested: 1 })).toMatchObject({ threaded: true, threads: 1 });
    expect(planWasmThreads({ ...base, cores: 16, requested: 12 })).toMatchObject({ threaded: true, threads: 12 });
  });

  it("parses ?threads= as a whole number 1..16 and ignores anything else", () => {
    expect(parseThreadsParam("2")).toBe(2);
    expect(parseThreadsParam("1")).toBe(1);
    expect(parseThreadsParam(String(MAX_THREADS))).toBe(MAX_THREADS);
    for (const bad of [null, "", "0", "17", "-1", "2.5", "two", " 2", "1e1", "099"]) expect(parseThreadsParam(bad), String(bad)).toBeNull();
  });

  it("labels the count for the status", () => {
    expect(threadsLabel(1)).toBe("1 wasm thread");
    expect(threadsLabel(2)).toBe("2 wasm threads");
  });
});

describe("boundStart", () => {
  afterEach(() => {
    vi.useRealTimers();
  });

  it("passes a start that settles in time through", async () => {
    await expect(boundStart(Promise.resolve(7), 1000)).resolves.toBe(7);
    await expect(boundStart(Promise.reject(new Error("no wasm")), 1000)).rejects.toThrow("no wasm");
    // TF.js rejects with a plain object: it still arrives as an Error with its message.
    await expect(boundStart(Promise.reject({ message: "abort" }), 1000)).rejects.toThrow("abort");
  });

  it("rejects a start that never settles once the bound has passed, not before", async () => {
    vi.useFakeTimers();
    let outcome: unknown = "pending";
    boundStart(new Promise<never>(() => {}), 10_000).then(
      () => (outcome = "resolved"),
      (e: unknown) => (outcome = e),
    );
    await vi.advanceTimersByTimeAsync(9_999);
    expect(outcome).toBe("pending");
    await vi.advanceTimersByTimeAsync(1);
    expect(outcome).toBeInstanceOf(StartFailed);
    expect((outcome as Error).message).toBe("did not start within 10000 ms");
  });

  it("rejects at once when a thread reports an error, and stops listening when settled", async () => {
    const listeners = new Set<(m: string) => void>();
    const errors = {
      add(f: (m: string) => void) {
        listeners.add(f);
        return () => listeners.delete(f);
      },
    };
    const hung = boundStart(new Promise<never>(() => {}), 60_000, errors);
    expect(listeners.size).toBe(1);
    for (const f of listeners) f("ReferenceError: e is not defined");
    await expect(hung).rejects.toThrow("a thread failed: ReferenceError: e is not defined");
    expect(listeners.size).toBe(0);
    await expect(boundStart(Promise.resolve(1), 60_000, errors)).resolves.toBe(1);
    expect(listeners.size).toBe(0);
  });
});

describe("the threaded factory's pinned source (scripts/tfjs-threads-plugin.ts)", () => {
  const require = createRequire(import.meta.url);
  const pkg = dirname(require.resolve("@tensorflow/tfjs-backend-wasm/package.json"));
  const file = join(pkg, "wasm-out", THREADED_FACTORY_MODULE.split("/").pop()!);
  const code = readFileSync(file, "utf8");

  it("defines the factory in a realm that has none of the module's scope, as a pthread worker's Blob does", () => {
    // The module as the bundle runs it (CommonJS), with the pin appended.
    const mod = { exports: {} as Record<string, unknown> };
    runInNewContext(pinFactorySource(code), { module: mod, exports: mod.exports });
    const factory = mod.exports as unknown as () => unknown;
    expect(typeof factory).toBe("function");
    const blob = `var WasmBackendModuleThreadedSimd = ${factory.toString()}`;
    // A fresh realm without module, exports or the IIFE's _scriptDir: the Blob's text must stand alone.
    const realm: Record<string, unknown> = {};
    runInNewContext(`${blob}; this.kind = typeof WasmBackendModuleThreadedSimd;`, realm);
    expect(realm["kind"]).toBe("function");
    expect(factory.toString()).toBe(factoryExpression(code));
  });

  /**
   * What a pthread worker does with the Blob: defines the factory and calls it
   * as a pthread. The error it throws first ("none", or "Name: message").
   */
  function pthreadStart(moduleText: string): string {
    // Minified as the production build minifies it (vite uses rolldown's minifier), inside a CommonJS wrapper as bundled.
    const min = minifySync("factory.js", `globalThis.load = function (module, exports) {${moduleText}\n};`, { compress: true, mangle: true }).code;
    const outer: { load?: (m: { exports: unknown }, e: unknown) => void } = {};
    runInNewContext(min, outer);
    const mod = { exports: {} as unknown };
    outer.load!(mod, mod.exports);
    const blob = `var WasmBackendModuleThreadedSimd = ${String(mod.exports)}`;
    const realm: Record<string, unknown> = { importScripts() {}, location: { href: "blob:http://127.0.0.1/x" }, performance: { now: () => 0 } };
    realm["self"] = realm;
    try {
      runInNewContext(`${blob}; WasmBackendModuleThreadedSimd({ ENVIRONMENT_IS_PTHREAD: true });`, realm);
      return "none";
    } catch (e) {
      // An error of the other realm: not an `instanceof Error` here.
      return String(e);
    }
  }

  it("minified, the factory's own text dies in a pthread worker with a ReferenceError; the pinned text does not", () => {
    expect(pthreadStart(code)).toMatch(/^ReferenceError: \w+ is not defined$/);
    // The pinned factory gets past its start-up to where it reads the shared memory, which this fake worker was not given.
    const pinned = pthreadStart(pinFactorySource(code));
    expect(pinned).not.toMatch(/ReferenceError/);
    expect(pinned).toMatch(/byteLength/);
  });

  it("refuses a module of another shape instead of shipping a hanging page", () => {
    expect(() => pinFactorySource("module.exports = function () {};")).toThrow(/not the Emscripten module/);
    expect(() => pinFactorySource(code + "\n" + code)).toThrow(/not the Emscripten module/);
  });
});

describe("--cross-origin-isolation", () => {
  it("is off unless turned on, and takes only on or off", () => {
    expect(parseCoordinatorArgs([]).crossOriginIsolation).toBe(false);
    expect(parseCoordinatorArgs(["--cross-origin-isolation", "on"]).crossOriginIsolation).toBe(true);
    expect(parseCoordinatorArgs(["--cross-origin-isolation", "off"]).crossOriginIsolation).toBe(false);
    expect(() => parseCoordinatorArgs(["--cross-origin-isolation", "yes"])).toThrow(UsageError);
    expect(() => parseCoordinatorArgs(["--cross-origin-isolation"])).toThrow(UsageError);
  });

  it("names COOP same-origin and COEP require-corp, and nothing when off", () => {
    expect(isolationHeaders(true)).toEqual({ "Cross-Origin-Opener-Policy": "same-origin", "Cross-Origin-Embedder-Policy": "require-corp" });
    expect(isolationHeaders(false)).toEqual({});
  });

  describe("on the coordinator's responses", () => {
    const servers: RunningServer[] = [];
    const start = async (on: boolean): Promise<RunningServer> => {
      const run = new JobRun(tinyJobOptions({ store: new JobStore(mkdtempSync(join(tmpdir(), "grid-iso-")), "default", () => {}) }));
      const s = await startServer({ host: "127.0.0.1", port: 0, token: "iso-test-token-123", distDir: join(ROOT, "dist"), run, crossOriginIsolation: on });
      servers.push(s);
      return s;
    };
    let on: RunningServer;
    let off: RunningServer;
    beforeAll(async () => {
      on = await start(true);
      off = await start(false);
    });
    afterAll(async () => {
      await Promise.all(servers.map((s) => s.close()));
    });

    // The pages (or their 503/404 when dist/ is not built), the API, shards, unknown paths.
    const paths = ["/", "/console", "/api/status", "/api/nothing", "/data/none/shards/0", "/no-such-file.js"];

    it("carries both headers on every response when on", async () => {
      for (const p of paths) {
        const res = await fetch(on.url + p);
        for (const [k, v] of Object.entries(ISOLATION_HEADERS)) expect(res.headers.get(k), `${p} ${k}`).toBe(v);
      }
    });

    it("carries neither when off", async () => {
      for (const p of paths) {
        const res = await fetch(off.url + p);
        for (const k of Object.keys(ISOLATION_HEADERS)) expect(res.headers.get(k), `${p} ${k}`).toBeNull();
      }
    });
  });
});
