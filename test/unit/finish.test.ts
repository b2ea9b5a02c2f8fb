/**
 * The end of a job (finish → final clocks → drain → digests) with a joiner
 * still syncing: it leaves at its start clock instead of draining, and the
 * job completes on the digests of the workers in the gate.
 */
import { describe, expect, it } from "vitest";
import { JobRun } from "../../coordinator/job.ts";
import type { ServerMessage } from "../../coordinator/protocol.ts";
import { tinyJobOptions } from "../support/tiny-run.ts";

function join(run: JobRun, name: string): { id: string; inbox: ServerMessage[] } {
  const inbox: ServerMessage[] = [];
  const r = run.join({ type: "join", name, backend: "cpu", kernel: "k", adapter: "a" }, (m) => inbox.push(m));
  if (!r.ok) throw new Error(r.reason);
  return { id: r.id, inbox };
}

const clock = (c: number) => ({ type: "clock", clock: c, minApplied: c, loss: 1, stepMs: 5, batch: 8, examples: c * 8, bytesIn: 0, bytesOut: 0, peers: 1 }) as const;
const digest = { sum: 1, l2: 2, proj: [0.5] };

describe("the end of a job", () => {
  it("lets a joiner still syncing leave instead of draining, and completes on the others' digests", () => {
    let now = 1_000_000;
    const run = new JobRun(tinyJobOptions({ minEvalIntervalMs: 0, now: () => now }));
    const a = join(run, "a");
    for (let c = 1; c <= 40; c++) {
      now += 10;
      run.onMessage(a.id, clock(c));
    }
    const b = join(run, "b");
    expect(b.inbox.find((m) => m.type === "welcome")).toMatchObject({ needsSnapshot: true });
    const st = () => run.status() as { job: { state: string }; workers: { id: string; state: string; syncing: boolean }[]; events: { kind: string; worker?: string; detail?: string }[] };
    expect(st().workers.find((w) => w.id === b.id)).toMatchObject({ state: "active", syncing: true });

    run.finish("test over");
    // Both were told to finish; the joiner then left at its start clock (no update of its own to lose).
    expect(a.inbox.some((m) => m.type === "finish")).toBe(true);
    expect(b.inbox.some((m) => m.type === "finish")).toBe(true);
    expect(st().workers.find((w) => w.id === b.id)?.state).toBe("left");
    expect(st().events.some((e) => e.kind === "left" && e.worker === b.id && /ended before it had synced/.test(e.detail ?? ""))).toBe(true);
    // The drain target is a's final clock (and b's start clock as a cut): a's digest completes the job.
    run.onMessage(a.id, { type: "final", clock: 40 });
    const drain = a.inbox.find((m) => m.type === "drain");
    expect(drain?.type === "drain" && drain.target[a.id]).toBe(40);
    expect(b.inbox.some((m) => m.type === "drain")).toBe(false);
    run.onMessage(a.id, { type: "digest", digest, vector: { [a.id]: 40 } });
    expect(st().job.state).toBe("done");
    // A late final from the joiner that left changes nothing.
    run.onMessage(b.id, { type: "final", clock: 40 });
    expect(st().job.state).toBe("done");
  });
});
