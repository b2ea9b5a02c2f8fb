import { describe, expect, it } from "vitest";
import { createRefBackend } from "../../client/gpu/ref-backend.ts";
import { refAdam, refMomentum } from "../../client/gpu/kernels-ref.ts";
import { adam, lrScale, momentum, optimizerByName, sgd } from "../../client/jobs/optimizers.ts";
import { JOBS } from "../../client/jobs/registry.ts";
import { OutOfMemoryError, withSession, type ComputeBackend } from "../../client/gpu/backend.ts";
import { parseCoordinatorArgs, UsageError } from "../../coordinator/cli.ts";
import { jobSpecSchema, parseServerMessage, type ServerMessage } from "../../coordinator/protocol.ts";
import { JobRun } from "../../coordinator/job.ts";
import { tinyJobOptions } from "../support/tiny-run.ts";

const grad = (n: number, seed: number): Float32Array => {
  let s = seed;
  return Float32Array.from({ length: n }, () => ((s = (s * 1103515245 + 12345) >>> 0) / 2 ** 32) * 2 - 1);
};

describe("optimizer references", () => {
  it("momentum: v' = μv + g, Δ = −lr·v'", () => {
    const r = refMomentum(new Float32Array([1, -2]), new Float32Array([0.5, 0.5]), 0.1, 0.9);
    expect(Array.from(r.velocity)).toEqual([Math.fround(1.45), Math.fround(-1.55)]);
    expect(r.delta[0]).toBeCloseTo(-0.145, 7);
    expect(r.delta[1]).toBeCloseTo(0.155, 7);
  });
  it("adam: bias-corrected step, |Δ| ≈ lr on a constant gradient", () => {
    const g = new Float32Array([3, -0.001]);
    let m: Float32Array = new Float32Array(2);
    let v: Float32Array = new Float32Array(2);
    for (let step = 1; step <= 5; step++) {
      const r = refAdam(g, m, v, { lr: 0.01, beta1: 0.9, beta2: 0.999, eps: 1e-8, step });
      // With a constant gradient the corrected m/√v is sign(g), whatever its size.
      expect(r.delta[0]).toBeCloseTo(-0.01, 6);
      expect(r.delta[1]).toBeCloseTo(0.01, 4);
      m = r.m;
      v = r.v;
    }
  });
  it("rejects a mismatched state", () => {
    expect(() => refMomentum(new Float32Array(3), new Float32Array(2), 1, 0.9)).toThrow(/velocity has 2/);
    expect(() => momentum().delta(new Float32Array(3), 1, momentum().createState(2))).toThrow(/does not match/);
  });
});

describe("optimizers on a backend (the path a job's step takes)", () => {
  for (const make of [() => momentum(0.9), () => adam(), () => sgd()]) {
    it(`${make().name}: apply() on the kernels equals the host delta over three steps, state included`, async () => {
      const n = 1001;
      const a = make();
      const b = make();
      const sa = a.createState(n);
      const sb = b.createState(n);
      for (let k = 0; k < 3; k++) {
        const g = grad(n, 11 + k);
        const got = await a.apply(createRefBackend(), g, 0.02, sa);
        const want = b.delta(g, 0.02, sb);
        expect(Array.from(got)).toEqual(Array.from(want));
      }
      expect(sa.step).toBe(3);
      sa.slots.forEach((s, i) => expect(Array.from(s)).toEqual(Array.from(sb.slots[i]!)));
    });
  }

  it("falls back to the host loop when the backend is out of memory, losing no state", async () => {
    const inner = createRefBackend();
    const full: ComputeBackend = { ...inner, session: () => Promise.reject(new OutOfMemoryError("simulated")) };
    const a = adam();
    const b = adam();
    const sa = a.createState(5);
    const sb = b.createState(5);
    const g = grad(5, 3);
    expect(Array.from(await a.apply(full, g, 0.1, sa))).toEqual(Array.from(b.delta(g, 0.1, sb)));
    expect(sa.step).toBe(1);
  });

  it("a job's step takes the optimizer it is given, each with its own state", async () => {
    const job = JOBS["linreg"]!;
    const backend = createRefBackend();
    const x = grad(job.inputDim * 8, 5).map((v) => Math.abs(v));
    const batch = { x, labels: new Uint32Array(8), size: 8 };
    const params = job.init(2);
    const { grad: g } = await job.meanGradient(backend, params, batch);
    const first = await job.step(backend, params, batch, 0.01, adam());
    // Adam's first step is −lr·sign(g) wherever g is not tiny.
    const i = g.findIndex((v) => Math.abs(v) > 1e-3);
    expect(first.update[i]!).toBeCloseTo(-0.01 * Math.sign(g[i]!), 5);
    // The job's own optimizer (plain SGD for linreg) is unaffected by Adam's state.
    const plain = await job.step(backend, params, batch, 0.01);
    expect(plain.update[i]!).toBeCloseTo(-0.01 * g[i]!, 7);
  });
});

describe("a job's fused step (gradient and optimizer in one session)", () => {
  const job = JOBS["mnist-mlp"]!;
  const rows = 6;
  const batch = {
    x: grad(job.inputDim * rows, 21).map((v) => Math.abs(v)),
    labels: Uint32Array.from({ length: rows }, (_, i) => (i * 7) % job.classes),
    size: rows,
  };
  for (const make of [() => momentum(0.9), () => adam(), () => sgd()]) {
    it(`${make().name}: equals the mean gradient followed by the host optimizer over three steps, as does the chunked path`, async () => {
      const fused = createRefBackend();
      const split = createRefBackend(4); // 6 rows in chunks of 4 and 2: gradient first, optimizer after
      const a = make();
      const b = make();
      const c = make();
      const d = make();
      const sb = b.createState(job.parameters);
      const sd = d.createState(job.parameters);
      const params = job.init(3);
      const buffer = new Float32Array(job.parameters);
      for (let k = 0; k < 3; k++) {
        // The worker's way: one update buffer, written by every step.
        const got = await job.step(fused, params, batch, 0.05, a, buffer);
        expect(got.update).toBe(buffer);
        const { grad: g, loss } = await job.meanGradient(fused, params, batch);
        expect(got.loss).toBe(loss);
        expect(Array.from(got.update)).toEqual(Array.from(b.delta(g, 0.05, sb)));
        const viaChunks = await job.step(split, params, batch, 0.05, c);
        const chunked = await job.meanGradient(split, params, batch);
        expect(Array.from(viaChunks.update)).toEqual(Array.from(d.delta(chunked.grad, 0.05, sd)));
        for (let i = 0; i < params.length; i++) params[i] = params[i]! + got.update[i]!;
      }
    });
  }

  it("retries with half the rows after an out-of-memory error in the fused session", async () => {
    const inner = createRefBackend(rows);
    let failures = 1;
    const flaky = withSession(inner, (body) => (failures-- > 0 ? Promise.reject(new OutOfMemoryError("simulated")) : inner.session(body)));
    const params = job.init(4);
    const got = await job.step(flaky, params, batch, 0.05, momentum(0.9));
    expect(inner.maxRows).toBe(3);
    const want = await job.step(createRefBackend(), params, batch, 0.05, momentum(0.9));
    const far = got.update.reduce((m, v, i) => Math.max(m, Math.abs(v - want.update[i]!)), 0);
    expect(far).toBeLessThan(1e-6);
  });

  it("names a gradient whose blocks do not tile the parameters, and a bad readInto", async () => {
    const broken = { ...job, gradient: (s: Parameters<typeof job.gradient>[0], p: Float32Array, bt: typeof batch) => ({ ...job.gradient(s, p, bt), grads: job.gradient(s, p, bt).grads.slice(1) }) };
    const { defineJob } = await import("../../client/jobs/job.ts");
    const bad = defineJob(broken);
    await expect(bad.step(createRefBackend(), job.init(1), batch, 0.1)).rejects.toThrow(/3 blocks hold 2826 values, expected 203530/);
    await expect(bad.meanGradient(createRefBackend(), job.init(1), batch)).rejects.toThrow(/expected 203530/);
    await expect(
      createRefBackend().session((s) => s.readInto([s.upload(new Float32Array(6), 2, 3)], [new Float32Array(5)])),
    ).rejects.toThrow(/2×3 but its destination holds 5/);
  });
});

describe("--optimizer", () => {
  it("is parsed, validated and carried in the job spec", () => {
    expect(parseCoordinatorArgs(["--job", "mnist-mlp", "--optimizer", "adam"]).optimizer).toBe("adam");
    expect(parseCoordinatorArgs([]).optimizer).toBeNull();
    expect(() => parseCoordinatorArgs(["--optimizer", "rmsprop"])).toThrow(UsageError);
    expect(() => parseCoordinatorArgs(["--optimizer", "rmsprop"])).toThrow(/sgd\|momentum\|adam/);
    const spec = { name: "mnist-mlp", parameters: 1, batch: 1, learningRate: 0.1, seed: 1, maxClock: 0, evalEvery: 1 };
    expect(jobSpecSchema.safeParse({ ...spec, optimizer: "momentum" }).success).toBe(true);
    expect(jobSpecSchema.safeParse({ ...spec, optimizer: "lbfgs" }).success).toBe(false);
    expect(optimizerByName("momentum").name).toBe("momentum(0.9)");
  });
});

describe("--lr-scaling", () => {
  it("scales a worker's rate by 1, 1/√K or 1/K for K active workers", () => {
    expect([1, 4, 9].map((k) => lrScale("sum", k))).toEqual([1, 1, 1]);
    expect([1, 4, 9].map((k) => lrScale("sqrt", k))).toEqual([1, 0.5, 1 / 3]);
    expect([1, 4, 8].map((k) => lrScale("mean", k))).toEqual([1, 0.25, 0.125]);
    // A view without members (a worker between views) steps at the unscaled rate.
    expect(lrScale("mean", 0)).toBe(1);
  });

  it("under mean, K workers' updates at the same parameters add up to one step on their K minibatches together", async () => {
    const job = JOBS["mnist-softmax"]!;
    const backend = createRefBackend();
    const params = job.init(3);
    const K = 4;
    const rows = 8;
    const x = grad(K * rows * job.inputDim, 11).map((v) => Math.abs(v));
    const labels = Uint32Array.from({ length: K * rows }, (_, i) => (i * 7) % job.classes);
    const lr = job.learningRate;
    const sum = new Float64Array(job.parameters);
    for (let k = 0; k < K; k++) {
      const part = { x: x.slice(k * rows * job.inputDim, (k + 1) * rows * job.inputDim), labels: labels.slice(k * rows, (k + 1) * rows), size: rows };
      const { update } = await job.step(backend, params, part, lr * lrScale("mean", K));
      update.forEach((u, i) => (sum[i] = (sum[i] ?? 0) + u));
    }
    const { update: whole } = await job.step(backend, params, { x, labels, size: K * rows }, lr);
    let worst = 0;
    let scale = 0;
    whole.forEach((w, i) => {
      worst = Math.max(worst, Math.abs(w - (sum[i] ?? 0)));
      scale = Math.max(scale, Math.abs(w));
    });
    expect(scale).toBeGreaterThan(0);
    expect(worst / scale).toBeLessThan(1e-5);
    // Under sum the same clock moves K times as far.
    const { update: one } = await job.step(backend, params, { x: x.slice(0, rows * job.inputDim), labels: labels.slice(0, rows), size: rows }, lr * lrScale("sum", K));
    const { update: oneMean } = await job.step(backend, params, { x: x.slice(0, rows * job.inputDim), labels: labels.slice(0, rows), size: rows }, lr * lrScale("mean", K));
    one.forEach((u, i) => expect(u).toBeCloseTo((oneMean[i] ?? 0) * K, 5));
  });

  it("is parsed, validated and carried to the workers in the welcome's job spec", () => {
    expect(parseCoordinatorArgs([]).lrScaling).toBe("sum");
    expect(parseCoordinatorArgs(["--lr-scaling", "sqrt"]).lrScaling).toBe("sqrt");
    expect(() => parseCoordinatorArgs(["--lr-scaling", "linear"])).toThrow(/--lr-scaling must be one of sum, sqrt, mean/);
    const spec = { name: "mnist-softmax", parameters: 1, batch: 1, learningRate: 0.1, seed: 1, maxClock: 0, evalEvery: 1 };
    expect(jobSpecSchema.safeParse({ ...spec, lrScaling: "mean" }).success).toBe(true);
    expect(jobSpecSchema.safeParse({ ...spec, lrScaling: "linear" }).success).toBe(false);
    for (const lrScaling of ["sqrt", undefined] as const) {
      const run = new JobRun(tinyJobOptions(lrScaling ? { lrScaling } : {}));
      const got: ServerMessage[] = [];
      const r = run.join({ type: "join", backend: "cpu", kernel: "k", adapter: "a" }, (m) => void got.push(m));
      expect(r.ok).toBe(true);
      const welcome = got.find((m) => m.type === "welcome");
      if (welcome?.type !== "welcome") throw new Error("no welcome");
      // What the page receives passes the page's runtime check and says the rule (absent: unscaled).
      const parsed = parseServerMessage(JSON.stringify(welcome));
      expect(parsed.ok && parsed.value.type === "welcome" ? parsed.value.job.lrScaling : "unparsed").toBe(lrScaling);
    }
  });
});
