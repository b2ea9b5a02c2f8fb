/**
 * `--epochs N` ends the job on the coverage count (every shard processed N
 * times), not on a count of examples: a page that closes mid-shard leaves
 * work that the shard's next holder redoes, so examples outrun coverage.
 */
import { describe, expect, it } from "vitest";
import { JobRun } from "../../coordinator/job.ts";
import type { ServerMessage } from "../../coordinator/protocol.ts";
import { tinyJobOptions } from "../support/tiny-run.ts";

const joinMsg = { type: "join", backend: "cpu", kernel: "k", adapter: "a" } as const;

function clock(clockValue: number, examples: number, shardsDone: number[]) {
  return {
    type: "clock", clock: clockValue, minApplied: 0, loss: 1, stepMs: 4, batch: 8, examples,
    bytesIn: 0, bytesOut: 0, peers: 0, ...(shardsDone.length > 0 ? { shardsDone } : {}),
  } as const;
}

describe("--epochs", () => {
  it("finishes when every shard is covered N times, however many examples were counted before", () => {
    const run = new JobRun(tinyJobOptions({ maxEpochs: 2, viewBatchMs: 0 }));
    const shards = run.status() as { coverage: { shards: number } };
    expect(shards.coverage.shards).toBe(4);
    const box: ServerMessage[] = [];
    const r = run.join(joinMsg, (m) => box.push(m));
    if (!r.ok) throw new Error(r.reason);
    const finished = (): boolean => box.some((m) => m.type === "finish");
    // 1,000 examples (five times the data set) but shard 3 never completed:
    // the epochs are not covered, the job goes on.
    run.onMessage(r.id, clock(1, 400, [0, 1, 2]));
    run.onMessage(r.id, clock(2, 1000, [0, 1, 2]));
    expect(finished()).toBe(false);
    run.onMessage(r.id, clock(3, 1050, [3]));
    expect(finished()).toBe(false); // epoch 1 covered, epoch 2 lacks shard 3
    run.onMessage(r.id, clock(4, 1100, [3]));
    expect(finished()).toBe(true);
    const st = run.status() as { coverage: { epochsDone: unknown[] }; events: { kind: string; detail?: string }[] };
    expect(st.coverage.epochsDone).toHaveLength(2);
    expect(st.events.some((e) => e.kind === "finishing" && /2 epochs covered/.test(e.detail ?? ""))).toBe(true);
  });

  it("keeps a finished job's records: its workers going quiet afterwards are not marked left", () => {
    let t = 1_000_000;
    const run = new JobRun(tinyJobOptions({ maxEpochs: 1, viewBatchMs: 0, now: () => t }));
    const r = run.join(joinMsg, () => {});
    if (!r.ok) throw new Error(r.reason);
    run.onMessage(r.id, clock(1, 200, [0, 1, 2, 3]));
    run.onMessage(r.id, { type: "final", clock: 1 });
    run.onMessage(r.id, { type: "digest", digest: { sum: 1, l2: 1, proj: [1] }, vector: { [r.id]: 1 } });
    const before = run.status() as { job: { state: string }; workers: { id: string; state: string; digest: unknown }[] };
    expect(before.job.state).toBe("done");
    t += 60_000; // a minute of silence (the volunteer moved on, or closed its page)
    run.tick();
    const after = run.status() as typeof before;
    expect(after.workers.map((w) => [w.id, w.state])).toEqual([[r.id, "active"]]);
    expect(after.workers[0]?.digest).toEqual({ sum: 1, l2: 1, proj: [1] });
  });
});
