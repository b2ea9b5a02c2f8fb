import { defineConfig } from "vite";
import { resolve } from "node:path";
import { tfjsThreadsPlugin } from "./scripts/tfjs-threads-plugin.ts";

// Multi-page build: the volunteer page (/), the organizer's console (/console)
// and the kernel self-test page (/selftest.html). Workers are bundled as ES
// modules; WGSL sources are imported with `?raw`. TF.js's threaded WASM
// factory keeps its original source for its pthread workers in both the page
// and the worker bundles (scripts/tfjs-threads-plugin.ts).
export default defineConfig({
  root: ".",
  plugins: [tfjsThreadsPlugin()],
  base: "/",
  build: {
    outDir: "dist",
    emptyOutDir: true,
    target: "es2022",
    sourcemap: true,
    rollupOptions: {
      input: {
        main: resolve(import.meta.dirname, "index.html"),
        console: resolve(import.meta.dirname, "coordinator/console/index.html"),
        selftest: resolve(import.meta.dirname, "selftest.html"),
        bench: resolve(import.meta.dirname, "bench.html"),
        transportBench: resolve(import.meta.dirname, "transport-bench.html"),
      },
    },
  },
  worker: { format: "es", plugins: () => [tfjsThreadsPlugin()] },
  server: { host: "127.0.0.1" },
});
