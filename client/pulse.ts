/**
 * Periodic callbacks on the page driven by a dedicated Web Worker's timers.
 * A hidden tab's main-thread timers are throttled (to once a second, or once a
 * minute after a while) or frozen, which would make a volunteer that is still
 * training look dead to the coordinator and to its peers. Heartbeats and link
 * liveness checks therefore run on the pulse: the worker's intervals post a
 * message per tick and the page runs the callback when the message arrives
 * (message delivery is not throttled like timers). Where no worker can be
 * started, the page's own setInterval is used.
 */
import type { PulseRequest } from "./pulse-worker.ts";

/** Run `fn` every `ms` until the returned function is called. */
export type Every = (ms: number, fn: () => void) => () => void;

let worker: Worker | null | undefined;
const callbacks = new Map<number, () => void>();
let nextId = 1;

function pulseWorker(): Worker | null {
  if (worker !== undefined) return worker;
  try {
    worker = new Worker(new URL("./pulse-worker.ts", import.meta.url), { type: "module" });
    worker.addEventListener("message", (ev: MessageEvent<number>) => callbacks.get(ev.data)?.());
  } catch {
    worker = null;
  }
  return worker;
}

/** `fn` every `ms`, ticked by the pulse worker (or the page's timers where there is none). */
export const every: Every = (ms, fn) => {
  const w = pulseWorker();
  if (w === null) {
    const t = setInterval(fn, ms);
    return () => clearInterval(t);
  }
  const id = nextId++;
  callbacks.set(id, fn);
  w.postMessage({ op: "start", id, ms } satisfies PulseRequest);
  return () => {
    if (!callbacks.delete(id)) return;
    w.postMessage({ op: "stop", id } satisfies PulseRequest);
  };
};

