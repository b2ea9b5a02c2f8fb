import { defineConfig } from "vite";
import { resolve } from "node:path";

// Multi-page build: the volunteer page (/), the organizer's console (/console)
// and the kernel self-test page (/selftest.html). Workers are bundled as ES
// modules; WGSL sources are imported with `?raw`.
export default defineConfig({
  root: ".",
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
  worker: { format: "es" },
  server: { host: "127.0.0.1" },
});
