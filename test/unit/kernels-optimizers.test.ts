import { describe, expect, it } from "vitest";
import { createRefBackend } from "../../client/gpu/ref-backend.ts";
import { refAdam, refMomentum } from "../../client/gpu/kernels-ref.ts";
import { adam, momentum, optimizerByName, sgd } from "../../client/jobs/optimizers.ts";
import { JOBS } from "../../client/jobs/registry.ts";
import { OutOfMemoryError, type ComputeBackend } from "../../client/gpu/backend.ts";
import { parseCoordinatorArgs, UsageError } from "../../coordinator/cli.ts";
import { jobSpecSchema } from "../../coordinator/protocol.ts";

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
