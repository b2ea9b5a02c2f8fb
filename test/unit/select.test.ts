import { describe, expect, it } from "vitest";
import { withSession, type ComputeBackend, type Session } from "../../client/gpu/backend.ts";
import { createRefBackend } from "../../client/gpu/ref-backend.ts";
import { HOPELESS, syntheticBatch, timeBackend } from "../../client/gpu/select.ts";
import { JOBS } from "../../client/jobs/registry.ts";

/** The reference backend, each session taking at least `ms` of wall time; counts sessions. */
function slowBackend(ms: number): { backend: ComputeBackend; sessions: () => number } {
  const inner = createRefBackend(4096);
  let n = 0;
  const backend = withSession(inner, async <T>(body: (s: Session) => Promise<T>): Promise<T> => {
    n++;
    await new Promise((r) => setTimeout(r, ms));
    return inner.session(body);
  });
  return { backend, sessions: () => n };
}

describe("timing a backend candidate (gpu/select.ts)", () => {
  const job = JOBS["linreg"]!;
  const batch = syntheticBatch(job, 16);

  it("times a candidate that can win: a warm-up and at least two runs, median of them", async () => {
    const { backend, sessions } = slowBackend(20);
    const ms = await timeBackend(backend, job, batch, 100, 1000);
    expect(sessions()).toBeGreaterThanOrEqual(3);
    expect(ms).toBeGreaterThanOrEqual(19);
  });

  it("stops after one run when that run is over twice the best so far", async () => {
    const { backend, sessions } = slowBackend(20);
    // Beat 9 ms: warm-up (~20) is under HOPELESS × 9, the run (~20) over 2 × 9.
    await timeBackend(backend, job, batch, 1000, 9);
    expect(sessions()).toBe(2);
  });

  it("does not time a candidate whose warm-up is over HOPELESS times the best so far; the warm-up stands for it", async () => {
    const { backend, sessions } = slowBackend(40);
    const ms = await timeBackend(backend, job, batch, 1000, 40 / (HOPELESS + 1));
    expect(sessions()).toBe(1);
    expect(ms).toBeGreaterThanOrEqual(39);
  });
});
