/**
 * Spot-checks with adaptive replication: the verdict on a task's results, the
 * choice of target and verifiers, and a job that checks its workers, flags the
 * one whose updates disagree, checks it more often and drops it after
 * repeated failures.
 */
import { describe, expect, it } from "vitest";
import { chooseTask, DEFAULT_SPOT, judge, newTrust, failed, agreed } from "../../coordinator/spotcheck.ts";
import { JobRun } from "../../coordinator/job.ts";
import { encodeModelUpload, type Digest, type ServerMessage, type SpotMessage } from "../../coordinator/protocol.ts";
import { replicaDigest } from "../../client/replica.ts";
import { tinyJobOptions } from "../support/tiny-run.ts";

const d = (scale: number, noise = 0): Digest => replicaDigest(Float32Array.from({ length: 50 }, (_, i) => scale * Math.sin(i + 1) + noise * Math.cos(7 * i)));

describe("judge", () => {
  it("finds the majority within the tolerance and names the others", () => {
    expect(judge([{ id: "w1", digest: d(1) }, { id: "w2", digest: d(1, 1e-6) }, { id: "w3", digest: d(-10) }], 1e-3)).toEqual({ agree: ["w1", "w2"], disagree: ["w3"] });
    expect(judge([{ id: "w1", digest: d(1) }, { id: "w2", digest: d(1) }, { id: "w3", digest: d(1) }], 1e-3)).toEqual({ agree: ["w1", "w2", "w3"], disagree: [] });
  });

  it("says nothing without a majority", () => {
    expect(judge([{ id: "w1", digest: d(1) }, { id: "w2", digest: d(2) }, { id: "w3", digest: d(3) }], 1e-3)).toBeNull();
    expect(judge([{ id: "w1", digest: d(1) }, { id: "w2", digest: d(2) }], 1e-3)).toBeNull();
  });
});

describe("chooseTask", () => {
  it("checks the least trusted worker more often and takes the most trusted as verifiers", () => {
    const now = 100_000;
    const trusted = { ...agreed(agreed(newTrust(0), 0), 0), lastCheckedAt: 50_000 };
    const suspect = { ...failed(newTrust(0), 0), lastCheckedAt: 60_000 };
    const c = [
      { id: "w1", trust: trusted },
      { id: "w2", trust: { ...trusted, trust: 0.9 } },
      { id: "w3", trust: suspect },
      { id: "w4", trust: newTrust(55_000) },
    ];
    const pick = chooseTask(c, now, DEFAULT_SPOT, () => 0.5);
    expect(pick?.target).toBe("w3");
    expect(pick?.verifiers.sort()).toEqual(["w1", "w2"]);
    expect(chooseTask(c.slice(0, 2), now, DEFAULT_SPOT, () => 0.5)).toBeNull();
  });
});

describe("a job with spot-checks", () => {
  it("flags the worker that disagrees, checks it more often, drops it after three failures, and serves the task's model", async () => {
    let now = 1_000;
    const run = new JobRun(tinyJobOptions({ now: () => now, spotChecks: { ...DEFAULT_SPOT, everyMs: 1000 }, evalEvery: 1 }));
    const inbox = new Map<string, ServerMessage[]>();
    for (let i = 0; i < 5; i++) {
      const r = run.join({ type: "join", backend: "cpu", kernel: "k", adapter: "a" }, (m) => {
        const id = m.type === "welcome" ? m.workerId : `w${i + 1}`;
        inbox.set(id, [...(inbox.get(id) ?? []), m]);
      });
      expect(r.ok).toBe(true);
    }
    // A reference model: an evaluation upload.
    const params = new Float32Array(run.job.parameters).fill(0.01);
    expect(run.onBinary("w1", new Uint8Array(encodeModelUpload(3, params)))).toBeNull();
    await new Promise((r) => setTimeout(r, 100));

    const bad = "w5";
    const involved = new Map<string, number>();
    const served: number[] = [];
    type Handler = (req: { params: Record<string, string> }, res: unknown) => void;
    const routes: Handler[] = [];
    const app = { get: (_path: string, h: Handler) => routes.push(h) };
    run.mount(app as never);
    for (let round = 0; round < 40 && run.isLive(bad); round++) {
      now += 1100;
      for (const id of inbox.keys()) if (run.isLive(id)) run.onMessage(id, { type: "heartbeat" });
      run.tick();
      for (const [id, msgs] of inbox) {
        const spot = msgs.filter((m): m is SpotMessage => m.type === "spot");
        inbox.set(id, msgs.filter((m) => m.type !== "spot"));
        for (const s of spot) {
          involved.set(id, (involved.get(id) ?? 0) + 1);
          if (served.length < 1) {
            let status = 200;
            let body: Buffer | null = null;
            routes[0]?.({ params: { task: s.task } }, { status: (c: number) => ((status = c), { json: () => undefined }), type: () => ({ send: (b: Buffer) => (body = b) }) });
            expect(status).toBe(200);
            served.push(body ? (body as Buffer).byteLength : 0);
          }
          run.onMessage(id, { type: "spot-result", task: s.task, digest: id === bad ? d(-10) : d(1, Number(id.slice(1)) * 1e-7) });
        }
      }
    }
    expect(served[0]).toBe(8 + 4 * run.job.parameters);
    const st = run.status() as { workers: { id: string; state: string; dropReason: string | null; trust: { trust: number; failures: number; checks: number } | null }[]; events: { kind: string; worker?: string }[]; spotChecks: { failed: number } };
    const w5 = st.workers.find((w) => w.id === bad);
    expect(w5?.state).toBe("dropped");
    expect(w5?.dropReason).toMatch(/misbehaving: failed 3 spot-checks/);
    expect(w5?.trust?.failures).toBe(3);
    const flagged = st.events.filter((e) => e.kind === "flagged");
    expect(flagged.map((e) => e.worker)).toEqual([bad, bad, bad]);
    for (const w of st.workers.filter((x) => x.id !== bad)) {
      expect(w.trust?.failures).toBe(0);
      expect(w.trust?.trust ?? 0).toBeGreaterThan(w5?.trust?.trust ?? 1);
    }
    // Failing made it the next target each time: three tasks in a row, then dropped.
    const tasks = st.spotChecks;
    expect(tasks.failed).toBe(3);
    expect(involved.get(bad)).toBe(3);
  });
});
