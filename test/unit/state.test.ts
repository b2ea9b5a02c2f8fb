/**
 * Durable coordinator state: the log read back after torn writes and garbage,
 * two checkpoints with fallback, what a restart does with a finished or a
 * different job, and a job that resumes from its checkpoint in-process.
 */
import { describe, expect, it } from "vitest";
import fc from "fast-check";
import { appendFileSync, existsSync, mkdtempSync, readFileSync, readdirSync, statSync, writeFileSync } from "node:fs";
import { tmpdir } from "node:os";
import { join } from "node:path";
import { compactedRecords, replayLog, type StateRecord } from "../../coordinator/resume.ts";
import { JobStore, StateMismatchError, decodeCheckpointFile, openJobState } from "../../coordinator/state.ts";
import { JobRun } from "../../coordinator/job.ts";
import { decodeModelUpload, encodeModelUpload, type ServerMessage } from "../../coordinator/protocol.ts";
import { mnistSoftmax } from "../../client/jobs/mnist-softmax.ts";
import { tinyDataset, tinyJobOptions } from "../support/tiny-run.ts";

const P = mnistSoftmax.parameters;
const tmp = (): string => mkdtempSync(join(tmpdir(), "grid-state-test-"));
const filled = (v: number): Float32Array => new Float32Array(P).fill(v);
const ckptRecord = (clock: number) => ({ k: "ckpt" as const, t: 1, clock, incarnation: 1, examples: clock * 8, coverage: [[0, 1]], epochsDone: [] });

describe("the state log", () => {
  it("skips a torn last line and unreadable lines, and says so", () => {
    const lines = [
      JSON.stringify({ k: "start", t: 1, incarnation: 3, job: "mnist-softmax", parameters: P, seed: 1 }),
      JSON.stringify({ k: "event", t: 2, kind: "joined", worker: "w7" }),
      "{not json",
      JSON.stringify({ k: "loss", c: 5, v: "NaN" }),
      JSON.stringify({ k: "view", e: 12 }),
      JSON.stringify({ k: "loss", c: 6, v: 1.5 }),
    ];
    const r = replayLog(lines.join("\n") + "\n" + '{"k":"test","c":9,"v":0.');
    expect(r.incarnation).toBe(3);
    expect(r.nextWorker).toBe(8);
    expect(r.epoch).toBe(12);
    expect(r.trainLoss).toEqual([[6, 1.5]]);
    expect(r.testSeries).toEqual([]);
    expect(r.notes.join(" ")).toMatch(/torn last line/);
    expect(r.notes.join(" ")).toMatch(/2 unreadable lines of the log \(first: line 3\)/);
  });

  it("cuts a torn tail off the file so the next record starts on its own line", () => {
    const store = new JobStore(tmp(), "default", () => {});
    store.append({ k: "view", e: 1 });
    store.close();
    appendFileSync(join(store.dir, "events.jsonl"), '{"k":"view","e":');
    const loaded = store.load(P);
    expect(loaded.notes.some((n) => /torn/.test(n))).toBe(true);
    store.append({ k: "view", e: 2 });
    store.close();
    const again = replayLog(readFileSync(join(store.dir, "events.jsonl"), "utf8"));
    expect(again.notes).toEqual([]);
    expect(again.epoch).toBe(2);
  });
});

describe("log compaction", () => {
  const recordArb: fc.Arbitrary<StateRecord> = fc.oneof(
    fc.record({ k: fc.constant("start" as const), t: fc.nat(), incarnation: fc.nat(20), job: fc.constantFrom("mnist-softmax", "mnist-mlp"), parameters: fc.nat(9000), seed: fc.nat(5) }),
    fc.record(
      { k: fc.constant("event" as const), t: fc.nat(), kind: fc.constantFrom("joined", "left", "done", "dropped"), worker: fc.constantFrom("w1", "w9", "w123", "console", ""), detail: fc.string({ maxLength: 8 }) },
      { requiredKeys: ["k", "t", "kind"] },
    ),
    fc.record({ k: fc.constant("view" as const), e: fc.nat(1000) }),
    fc.record({ k: fc.constant("control" as const), paused: fc.boolean() }),
    fc.record(
      { k: fc.constant("lineage" as const), h: fc.constantFrom(..."abcdef".split("").map((c) => c.repeat(64))), first: fc.constantFrom("w1", "w2", "w40"), drops: fc.nat(3), gone: fc.constantFrom(..."abc".split("").map((c) => c.repeat(64))) },
      { requiredKeys: ["k", "h", "first", "drops"] },
    ),
    fc.record({ k: fc.constant("loss" as const), c: fc.nat(500), v: fc.double({ noNaN: true, noDefaultInfinity: true, min: -10, max: 10 }) }),
    fc.record({ k: fc.constant("test" as const), c: fc.nat(500), v: fc.double({ noNaN: true, noDefaultInfinity: true, min: 0, max: 1 }) }),
    fc.record({ k: fc.constant("ckpt" as const), t: fc.nat(), clock: fc.nat(500), incarnation: fc.nat(20), examples: fc.nat(), coverage: fc.array(fc.array(fc.nat(50), { maxLength: 4 }), { maxLength: 3 }), epochsDone: fc.array(fc.record({ epoch: fc.nat(5), t: fc.nat() }), { maxLength: 2 }) }),
  );
  const text = (rs: StateRecord[]): string => rs.map((r) => JSON.stringify(r) + "\n").join("");
  const withoutNotes = (l: ReturnType<typeof replayLog>) => ({ ...l, notes: [] });

  it("a compacted log replays to the same state as the log it replaces, for any log", () => {
    const limits = { events: 7, series: 11 };
    fc.assert(
      fc.property(fc.array(recordArb, { maxLength: 120 }), fc.array(recordArb, { maxLength: 30 }), (before, after) => {
        const full = replayLog(text(before), limits);
        const compacted = compactedRecords(full, 99);
        if (full.job === null) {
          expect(compacted).toBeNull();
          return;
        }
        expect(compacted!.length).toBeLessThanOrEqual(2 + 7 + 2 * 11 + 4);
        expect(withoutNotes(replayLog(text(compacted!), limits))).toEqual(withoutNotes(full));
        // Records appended after a compaction replay as they would have on the whole log.
        expect(withoutNotes(replayLog(text([...compacted!, ...after]), limits))).toEqual(withoutNotes(replayLog(text([...before, ...after]), limits)));
      }),
      { numRuns: 300 },
    );
  });

  it("keeps the log file bounded on a long run, and a restart reads what it would have read from the whole log", () => {
    const warned: string[] = [];
    const small = new JobStore(tmp(), "default", (m) => warned.push(m), 64 * 1024);
    const whole = new JobStore(tmp(), "default", () => {}, Number.MAX_SAFE_INTEGER);
    for (const s of [small, whole]) s.load(P);
    let largest = 0;
    const both = (r: StateRecord): void => {
      small.append(r);
      whole.append(r);
    };
    both({ k: "start", t: 1, incarnation: 1, job: "mnist-softmax", parameters: P, seed: 3 });
    for (let c = 1; c <= 20_000; c++) {
      both({ k: "loss", c, v: 1 / c });
      if (c % 3 === 0) both({ k: "view", e: c });
      if (c % 7 === 0) both({ k: "event", t: c, kind: "joined", worker: `w${c}`, detail: "a page joined the job" });
      if (c % 10 === 0) both({ k: "test", c, v: c / 20_000 });
      if (c % 1000 === 0) {
        for (const s of [small, whole]) expect(s.checkpoint(c, filled(c), ckptRecord(c))).toBe(true);
        largest = Math.max(largest, statSync(join(small.dir, "events.jsonl")).size);
      }
    }
    small.close();
    whole.close();
    expect(warned).toEqual([]);
    expect(small.compactions).toBeGreaterThan(3);
    // Bounded by twice the retained history (2,000 losses, 2,000 tests, 500
    // events) plus one checkpoint interval's records, whatever the run's length.
    expect(largest).toBeLessThan(400 * 1024);
    const wholeSize = statSync(join(whole.dir, "events.jsonl")).size;
    expect(wholeSize).toBeGreaterThan(3 * largest);
    const a = new JobStore(small.dir.slice(0, -"/default".length), "default", () => {}).load(P);
    const b = new JobStore(whole.dir.slice(0, -"/default".length), "default", () => {}).load(P);
    expect(a.notes).toEqual([]);
    expect(withoutNotes(a.log)).toEqual(withoutNotes(b.log));
    expect(a.log.nextWorker).toBe(19_999 + 1);
    expect(a.log.epoch).toBe(19_998);
    expect(a.model?.clock).toBe(20_000);
  });

  it("a compaction cut short (left-over events.tmp) leaves the old log whole", () => {
    const store = new JobStore(tmp(), "default", () => {}, 1024);
    store.load(P);
    store.append({ k: "start", t: 1, incarnation: 1, job: "mnist-softmax", parameters: P, seed: 3 });
    for (let c = 1; c <= 50; c++) store.append({ k: "loss", c, v: c });
    store.close();
    writeFileSync(join(store.dir, "events.tmp"), '{"k":"start","t":1,"incarnation":9');
    const loaded = store.load(P);
    expect(existsSync(join(store.dir, "events.tmp"))).toBe(false);
    expect(loaded.log.incarnation).toBe(1);
    expect(loaded.log.trainLoss).toHaveLength(50);
  });
});

describe("checkpoints", () => {
  it("keeps two and falls back to the previous one when the newest is corrupt", () => {
    const warned: string[] = [];
    const store = new JobStore(tmp(), "default", (m) => warned.push(m));
    expect(store.checkpoint(10, filled(10), ckptRecord(10))).toBe(true);
    expect(store.checkpoint(20, filled(20), ckptRecord(20))).toBe(true);
    expect(readdirSync(store.dir).sort()).toEqual(["events.jsonl", "model.bin", "model.prev.bin"]);
    const body = new Uint8Array(readFileSync(join(store.dir, "model.bin")));
    const ok = decodeCheckpointFile(body, P);
    expect(typeof ok !== "string" && ok.clock).toBe(20);
    // /api/model's layout plus a hash: a flipped byte is caught.
    body[100] = (body[100] as number) ^ 0xff;
    writeFileSync(join(store.dir, "model.bin"), body);
    const loaded = store.load(P);
    expect(loaded.model?.clock).toBe(10);
    expect(loaded.model?.file).toBe("model.prev.bin");
    expect(loaded.model?.params[0]).toBe(10);
    expect(loaded.notes.join(" ")).toMatch(/model\.bin is unusable \(its checksum does not match\)/);
    expect(existsSync(join(store.dir, "model.bad"))).toBe(true);
    // The next checkpoint does not push the good previous one out for a bad one.
    expect(store.checkpoint(30, filled(30), ckptRecord(30))).toBe(true);
    const prev = decodeCheckpointFile(new Uint8Array(readFileSync(join(store.dir, "model.prev.bin"))), P);
    expect(typeof prev !== "string" && prev.clock).toBe(10);
    expect(warned).toEqual([]);
  });

  it("survives a truncated checkpoint and a left-over temporary file", () => {
    const store = new JobStore(tmp(), "default", () => {});
    store.checkpoint(4, filled(4), ckptRecord(4));
    store.checkpoint(8, filled(8), ckptRecord(8));
    const full = readFileSync(join(store.dir, "model.bin"));
    writeFileSync(join(store.dir, "model.bin"), full.subarray(0, 1000));
    writeFileSync(join(store.dir, "model.tmp"), full.subarray(0, 10));
    const loaded = store.load(P);
    expect(loaded.model?.clock).toBe(4);
    expect(existsSync(join(store.dir, "model.tmp"))).toBe(false);
    // Both gone: no model, but the directory still opens.
    writeFileSync(join(store.dir, "model.prev.bin"), "garbage");
    const none = store.load(P);
    expect(none.model).toBeNull();
    expect(none.log.checkpoints.map((c) => c.clock)).toEqual([4, 8]);
  });
});

describe("opening the state of a new run", () => {
  const job = { name: "mnist-softmax", parameters: P };

  it("refuses another unfinished job, moves a finished one aside, and starts fresh on --fresh", () => {
    const dir = tmp();
    const a = new JobStore(dir, "default", () => {});
    a.append({ k: "start", t: 1, incarnation: 1, job: "mnist-mlp", parameters: 203530, seed: 1 });
    a.close();
    expect(() => openJobState(new JobStore(dir, "default", () => {}), job, false, () => {})).toThrow(StateMismatchError);
    const lines: string[] = [];
    const r = openJobState(new JobStore(dir, "default", () => {}), job, true, (l) => lines.push(l));
    expect(r.incarnation).toBe(1);
    expect(lines.join("\n")).toMatch(/moved to .*default\..*\.fresh/);
    expect(readdirSync(dir).some((f) => f.endsWith(".fresh"))).toBe(true);

    const b = new JobStore(dir, "default", () => {});
    b.append({ k: "start", t: 1, incarnation: 1, job: "mnist-softmax", parameters: P, seed: 1 });
    b.checkpoint(50, filled(50), ckptRecord(50));
    b.append({ k: "event", t: 2, kind: "done", detail: "target reached" });
    b.close();
    const fresh = openJobState(new JobStore(dir, "default", () => {}), job, false, () => {});
    expect(fresh.checkpoint).toBeNull();
    expect(readdirSync(dir).some((f) => f.endsWith(".done"))).toBe(true);
  });
});

describe("a job that resumes", () => {
  function fakeWorker(run: JobRun, name: string): { id: string; inbox: ServerMessage[] } {
    const inbox: ServerMessage[] = [];
    const r = run.join({ type: "join", name, backend: "cpu", kernel: "k", adapter: "a" }, (m) => inbox.push(m));
    if (!r.ok) throw new Error(r.reason);
    return { id: r.id, inbox };
  }
  const clock = (c: number) =>
    ({ type: "clock", clock: c, minApplied: c, loss: 1, stepMs: 5, batch: 8, examples: c * 8, bytesIn: 0, bytesOut: 0, peers: 1 }) as const;

  it("starts every worker of the next incarnation at the checkpoint, with its parameters, history and ids", async () => {
    const dir = tmp();
    const data = tinyDataset();
    let now = 1_000_000;
    const opts = tinyJobOptions({ data, checkpointIntervalMs: 0, minEvalIntervalMs: 0, now: () => now });
    const store1 = new JobStore(dir, "default", () => {});
    const run1 = new JobRun({ ...opts, store: store1, resume: openJobState(store1, mnistSoftmax, false, () => {}) });
    const a = fakeWorker(run1, "a");
    const b = fakeWorker(run1, "b");
    for (let c = 1; c <= 12; c++) {
      now += 100;
      run1.onMessage(a.id, clock(c));
      run1.onMessage(b.id, clock(c));
      if (c % 5 === 0) {
        expect(run1.onBinary(a.id, new Uint8Array(encodeModelUpload(c, filled(c))))).toBeNull();
        await new Promise((r) => setTimeout(r, 0)); // the evaluation answers asynchronously
      }
    }
    const st1 = run1.status() as { durable: { checkpoint: { clock: number } | null; incarnation: number } };
    expect(st1.durable.incarnation).toBe(1);
    expect(st1.durable.checkpoint?.clock).toBe(10);
    store1.close(); // the process dies here

    const lines: string[] = [];
    const store2 = new JobStore(dir, "default", () => {});
    const run2 = new JobRun({ ...opts, store: store2, resume: openJobState(store2, mnistSoftmax, false, (l) => lines.push(l)) });
    expect(lines.join("\n")).toMatch(/resuming the job from its checkpoint at clock 10 \(model\.bin\), incarnation 2/);
    const c = fakeWorker(run2, "c");
    const welcome = c.inbox.find((m) => m.type === "welcome");
    expect(welcome).toMatchObject({ type: "welcome", workerId: "w3", startClock: 10, needsSnapshot: false, incarnation: 2, base: { clock: 10 } });
    const base = decodeModelUpload(run2.baseModel() ?? new Uint8Array(0), P);
    expect(base.ok && base.value.clock).toBe(10);
    expect(base.ok && base.value.params[7]).toBe(10);
    const st2 = run2.status() as {
      durable: { incarnation: number; resumedFrom: { clock: number } | null };
      examples: number;
      view: { epoch: number };
      metrics: { trainLoss: [number, number][]; test: { series: [number, number][] } };
      events: { kind: string }[];
    };
    expect(st2.durable).toMatchObject({ incarnation: 2, resumedFrom: { clock: 10 } });
    // History up to the checkpoint survives; what came after it went with the lost model.
    expect(Math.max(...st2.metrics.trainLoss.map(([x]) => x))).toBe(10);
    expect(st2.metrics.test.series.map(([x]) => x)).toEqual([5, 10]);
    expect(st2.examples).toBeGreaterThanOrEqual(2 * 10 * 8);
    expect(st2.view.epoch).toBeGreaterThan(2);
    expect(st2.events.map((e) => e.kind)).toEqual(expect.arrayContaining(["joined", "resumed"]));
    // A second joiner before anyone stepped also starts from the checkpoint.
    const d = fakeWorker(run2, "d");
    expect(d.inbox.find((m) => m.type === "welcome")).toMatchObject({ startClock: 10, base: { clock: 10 } });
    store2.close();
  });

  it("a job the organizer paused stays paused after a restart, and one resumed before it runs", () => {
    const dir = tmp();
    const opts = tinyJobOptions({ data: tinyDataset(), checkpointIntervalMs: 0, minEvalIntervalMs: 0, minWorkers: 1 });
    const incarnation = (): JobRun => {
      const store = new JobStore(dir, "default", () => {});
      const run = new JobRun({ ...opts, store, resume: openJobState(store, mnistSoftmax, false, () => {}) });
      stores.push(store);
      return run;
    };
    const stores: JobStore[] = [];
    const run1 = incarnation();
    fakeWorker(run1, "a");
    run1.control("pause");
    expect(run1.state).toBe("paused");
    stores.at(-1)!.close();
    const run2 = incarnation();
    expect(run2.state).toBe("paused");
    expect((run2.status() as { job: { state: string } }).job.state).toBe("paused");
    run2.control("resume");
    expect(run2.state).toBe("running");
    stores.at(-1)!.close();
    expect(incarnation().state).toBe("running");
    stores.at(-1)!.close();
  });

  it("knows the volunteers of the earlier incarnation: a page presenting its credential continues its lineage", () => {
    const dir = tmp();
    const opts = tinyJobOptions({ data: tinyDataset(), checkpointIntervalMs: 0, minEvalIntervalMs: 0 });
    const store1 = new JobStore(dir, "default", () => {});
    const run1 = new JobRun({ ...opts, store: store1, resume: openJobState(store1, mnistSoftmax, false, () => {}) });
    const a = fakeWorker(run1, "a");
    const b = fakeWorker(run1, "b");
    const credOf = (w: { inbox: ServerMessage[] }): string => {
      const m = w.inbox.find((x) => x.type === "welcome");
      if (m?.type !== "welcome") throw new Error("no welcome");
      return m.credential;
    };
    // b reloads once in the first incarnation: a new credential for the same lineage.
    run1.remove(b.id, "left", "reload");
    const b2: { id: string; inbox: ServerMessage[] } = { id: "", inbox: [] };
    const r = run1.join({ type: "join", name: "b", backend: "cpu", kernel: "k", adapter: "a", rejoin: credOf(b) }, (m) => b2.inbox.push(m));
    expect(r.ok).toBe(true);
    store1.close(); // the process dies here
    const logText = readFileSync(join(dir, "default", "events.jsonl"), "utf8");
    for (const cred of [credOf(a), credOf(b), credOf(b2)]) expect(logText).not.toContain(cred);

    const store2 = new JobStore(dir, "default", () => {});
    const run2 = new JobRun({ ...opts, store: store2, resume: openJobState(store2, mnistSoftmax, false, () => {}) });
    expect(run2.knowsCredential(credOf(a))).toBe(true);
    expect(run2.knowsCredential(credOf(b))).toBe(false); // replaced by b's second credential
    expect(run2.knowsCredential("0".repeat(32))).toBe(false);
    const join2 = (rejoin: string) => run2.join({ type: "join", name: "x", backend: "cpu", kernel: "k", adapter: "a", rejoin }, () => {});
    expect(join2(credOf(b))).toMatchObject({ ok: false, reason: "unknown credential" });
    const ra = join2(credOf(a));
    const rb = join2(credOf(b2));
    expect(ra.ok && rb.ok).toBe(true);
    expect(join2(credOf(a))).toMatchObject({ ok: false }); // used once
    const st = run2.status() as { workers: { id: string; lineage: string }[]; events: { kind: string; worker?: string; detail?: string }[] };
    const lineageOf = (id: string) => st.workers.find((w) => w.id === id)?.lineage;
    expect(ra.ok && lineageOf(ra.id)).toBe(a.id);
    expect(rb.ok && lineageOf(rb.id)).toBe(b.id);
    expect(st.events.filter((e) => e.kind === "rejoined").map((e) => e.detail)).toEqual(expect.arrayContaining([`again (first joined as ${a.id})`, `again (first joined as ${b.id})`]));
    store2.close();
  });
});
