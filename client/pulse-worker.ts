/**
 * The pulse's Web Worker: one interval per request, each tick posted back to
 * the page. A worker's timers are not throttled when its page is hidden, so
 * ticks keep coming while the page's own setInterval runs once a minute or
 * not at all (client/pulse.ts).
 */
export type PulseRequest = { readonly op: "start"; readonly id: number; readonly ms: number } | { readonly op: "stop"; readonly id: number };

const timers = new Map<number, ReturnType<typeof setInterval>>();

self.addEventListener("message", (ev: MessageEvent<PulseRequest>) => {
  const r = ev.data;
  if (r.op === "start") {
    clearInterval(timers.get(r.id));
    timers.set(r.id, setInterval(() => self.postMessage(r.id), Math.max(10, r.ms)));
  } else {
    clearInterval(timers.get(r.id));
    timers.delete(r.id);
  }
});
