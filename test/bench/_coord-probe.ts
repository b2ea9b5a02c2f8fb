/**
 * Loaded into the benchmarked coordinator with `--import` (test/bench/coordinator.ts):
 * measures the coordinator's own event-loop delay and garbage-collection
 * pauses, so the bench can tell the coordinator's stalls apart from the
 * machine's scheduling and the load generator's own delays.
 *
 * On SIGUSR2 it starts a window (clears its counters); on the next SIGUSR2 it
 * prints one line `bench-probe {json}` on stderr (the coordinator's log) and
 * starts the next window.
 */
import { monitorEventLoopDelay, PerformanceObserver, performance } from "node:perf_hooks";

const loop = monitorEventLoopDelay({ resolution: 5 });
loop.enable();
let gcMs = 0;
let gcMaxMs = 0;
let gcCount = 0;
let since = performance.now();
let open = false;

const gc = new PerformanceObserver((list) => {
  for (const e of list.getEntries()) {
    gcMs += e.duration;
    gcCount++;
    if (e.duration > gcMaxMs) gcMaxMs = e.duration;
  }
});
gc.observe({ entryTypes: ["gc"] });

function reset(): void {
  loop.reset();
  gcMs = gcMaxMs = gcCount = 0;
  since = performance.now();
}

process.on("SIGUSR2", () => {
  if (open) {
    const s = (performance.now() - since) / 1000;
    const line = {
      window_s: +s.toFixed(2),
      loop_p50_ms: +(loop.percentile(50) / 1e6).toFixed(1),
      loop_p99_ms: +(loop.percentile(99) / 1e6).toFixed(1),
      loop_max_ms: +(loop.max / 1e6).toFixed(1),
      gc_ms_per_s: +(gcMs / s).toFixed(1),
      gc_max_ms: +gcMaxMs.toFixed(1),
      gc_count: gcCount,
      heap_MB: +(process.memoryUsage().heapUsed / 2 ** 20).toFixed(1),
    };
    process.stderr.write(`bench-probe ${JSON.stringify(line)}\n`);
  }
  open = true;
  reset();
});
