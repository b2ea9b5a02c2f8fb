/**
 * Build plugin: keeps TF.js's threaded WASM build startable from a minified
 * bundle.
 *
 * TF.js starts each pthread worker from a Blob holding
 * `"var WasmBackendModuleThreadedSimd = " + factory.toString()`. The factory
 * (an Emscripten module, `wasm-out/tfjs-backend-wasm-threaded-simd.js`) is a
 * function returned by an arrow IIFE that declares `_scriptDir`; the function
 * reads it only behind `typeof _scriptDir !== "undefined"`. A minifier knows
 * the variable is declared, drops that guard and renames it, so the
 * function's text no longer stands alone and every pthread worker dies with
 * `ReferenceError: e is not defined` (README, Known gaps).
 *
 * The fix: the module's factory gets its own `toString` that returns the
 * module's original IIFE expression (the text Emscripten wrote, ~55 KB), so
 * the pthread workers evaluate exactly what Emscripten meant whatever the
 * minifier did to the copy that runs on the calling thread. Both copies speak
 * to each other only through string-keyed messages and the shared WASM
 * memory. If the module's text is not shaped as expected (another TF.js
 * version), the build fails instead of shipping a page that hangs.
 */
import type { Plugin } from "vite";

/** The module whose factory TF.js stringifies (path as it appears in a module id, `/` separated). */
export const THREADED_FACTORY_MODULE = "@tensorflow/tfjs-backend-wasm/wasm-out/tfjs-backend-wasm-threaded-simd.js";

const NAME = "WasmBackendModuleThreadedSimd";
const HEAD = `var ${NAME} = `;
const TAIL = "})();\nif (typeof exports === 'object'";

/** The IIFE expression `(() => { … })()` that defines the factory, cut out of the module's text. */
export function factoryExpression(code: string): string {
  const start = code.indexOf(HEAD);
  const end = code.indexOf(TAIL);
  if (start < 0 || end < 0 || end < start || code.indexOf(HEAD, start + 1) >= 0 || code.indexOf(TAIL, end + 1) >= 0) {
    throw new Error(`${THREADED_FACTORY_MODULE}: not the Emscripten module this build expects (look for "${HEAD}" … "${TAIL.split("\n")[0]}")`);
  }
  const expr = code.slice(start + HEAD.length, end + "})()".length);
  if (!expr.startsWith("(() => {")) throw new Error(`${THREADED_FACTORY_MODULE}: the factory is not an arrow IIFE`);
  return expr;
}

/** The module's text with the factory's `toString` pinned to its original expression. */
export function pinFactorySource(code: string): string {
  const expr = factoryExpression(code);
  return `${code}\n;${NAME}.toString = function () { return ${JSON.stringify(expr)}; };\n`;
}

function isFactoryModule(id: string): boolean {
  return id.split("?", 1)[0]!.replaceAll("\\", "/").endsWith(`/${THREADED_FACTORY_MODULE}`);
}

/** The vite/rolldown plugin (for the page bundles and, separately, the worker bundles). */
export function tfjsThreadsPlugin(): Plugin {
  let pinned = 0;
  return {
    name: "grid:tfjs-threaded-factory-source",
    enforce: "pre",
    buildStart() {
      pinned = 0;
    },
    transform(code, id) {
      if (!isFactoryModule(id)) return null;
      pinned++;
      return { code: pinFactorySource(code), map: null };
    },
    buildEnd(error) {
      // A bundle that pulls in TF.js's WASM backend must have had its factory pinned.
      if (error === undefined && pinned === 0 && [...this.getModuleIds()].some((m) => m.replaceAll("\\", "/").includes("/@tensorflow/tfjs-backend-wasm/"))) {
        this.error(`${THREADED_FACTORY_MODULE} was bundled without its pinned source`);
      }
    },
  };
}
