import fc from "fast-check";
import { describe, expect, it } from "vitest";
import { rng } from "../support/random.ts";
import {
  ErrorFeedback,
  INT8_BLOCK,
  NO_COMPRESSION,
  UPDATE_REJECT_REASONS,
  decodeUpdate,
  encodeExact,
  encodeUpdate,
  formatCompression,
  fromHalfBits,
  parseCompression,
  toHalfBits,
  topIndices,
  type Compression,
  type UpdateRejectReason,
} from "../../client/compress.ts";
import { Encoding } from "../../client/peer/frames.ts";


/** Gaussian-ish values with a few outliers, like an optimizer's delta. */
function randomUpdate(rand: () => number, n: number, scale = 1e-2): Float32Array {
  const x = new Float32Array(n);
  for (let i = 0; i < n; i++) {
    const g = (rand() + rand() + rand() - 1.5) * scale;
    x[i] = rand() < 0.01 ? g * 30 : g;
  }
  return x;
}

const c = (text: string): Compression => {
  const p = parseCompression(text);
  if (!p.ok) throw new Error(p.message);
  return p.value;
};

const ALL = ["none", "fp16", "int8", "topk:0.01", "topk:0.01+fp16", "topk:0.01+int8", "topk:0.2+int8", "topk:1"];

describe("--compression values", () => {
  it("parses every form and prints it back canonically", () => {
    expect(c("none")).toEqual(NO_COMPRESSION);
    expect(c("fp16")).toEqual({ topk: null, values: "f16" });
    expect(c("int8")).toEqual({ topk: null, values: "int8" });
    expect(c("topk:0.01")).toEqual({ topk: 0.01, values: "f32" });
    expect(c("topk:0.01+int8")).toEqual({ topk: 0.01, values: "int8" });
    expect(c("fp16+topk:.05")).toEqual({ topk: 0.05, values: "f16" });
    expect(c("topk:1e-3")).toEqual({ topk: 0.001, values: "f32" });
    for (const t of ALL) expect(formatCompression(c(t))).toBe(t);
    expect(formatCompression(c("int8+topk:0.5"))).toBe("topk:0.5+int8");
  });

  it("refuses bad values with one line", () => {
    for (const bad of ["", "None", "gzip", "topk", "topk:", "topk:0", "topk:1.5", "topk:-0.1", "topk:abc", "topk:0x1",
      "topk:NaN", "topk:Infinity", "fp16+int8", "topk:0.1+topk:0.2", "none+int8", "int8+", "+int8", "int8+int8"]) {
      const p = parseCompression(bad);
      expect(p.ok, bad).toBe(false);
      if (!p.ok) expect(p.message).not.toContain("\n");
    }
  });
});

describe("half precision", () => {
  it("every finite half converts to its value and back to the same bits", () => {
    const wrong: number[] = [];
    for (let h = 0; h < 65536; h++) {
      const v = fromHalfBits(h);
      const ok = (h & 0x7c00) === 0x7c00 ? Number.isNaN(v) : Number.isFinite(v) && toHalfBits(v) === h;
      if (!ok) wrong.push(h);
    }
    expect(wrong).toEqual([]);
  });

  it("rounds to the nearest half (ties to even) and saturates instead of overflowing", () => {
    const rand = rng(7);
    const wrong: number[] = [];
    for (let i = 0; i < 20_000; i++) {
      const v = Math.fround((rand() - 0.5) * 2 ** (rand() * 40 - 28));
      const h = toHalfBits(v);
      const got = fromHalfBits(h);
      // No other half is closer.
      for (const other of [h - 1, h + 1, h ^ 0x8000]) {
        if (other < 0 || other > 0xffff || (other & 0x7c00) === 0x7c00) continue;
        if (Math.abs(v - got) > Math.abs(v - fromHalfBits(other))) wrong.push(v);
      }
    }
    expect(wrong).toEqual([]);
    expect(fromHalfBits(toHalfBits(1e6))).toBe(65504);
    expect(fromHalfBits(toHalfBits(-Infinity))).toBe(-65504);
    expect(fromHalfBits(toHalfBits(1 + 2 ** -11))).toBe(1); // tie, even mantissa
    expect(fromHalfBits(toHalfBits(1 + 3 * 2 ** -11))).toBe(1 + 2 ** -9); // tie, odd mantissa rounds up
    expect(fromHalfBits(toHalfBits(2 ** -26))).toBe(0);
    expect(fromHalfBits(toHalfBits(2 ** -24))).toBe(2 ** -24);
  });
});

describe("round trips", () => {
  const n = 5_000;
  const x = randomUpdate(rng(11), n);
  const maxAbs = x.reduce((m, v) => Math.max(m, Math.abs(v)), 0);

  it("none is exact; fp16 within half an ulp of half precision; int8 within half a step per block", () => {
    const none = encodeUpdate(x, c("none"));
    expect(none.encoding).toBe(Encoding.F32);
    const d0 = decodeUpdate(none.encoding, none.payload, n);
    expect(d0.ok && [...d0.value]).toEqual([...x]);

    const half = encodeUpdate(x, c("fp16"));
    expect(half.encoding).toBe(Encoding.F16);
    expect(half.payload.byteLength).toBe(2 * n);
    const d1 = decodeUpdate(half.encoding, half.payload, n);
    if (!d1.ok) throw new Error(d1.reason);
    const far = x.findIndex((v, i) => Math.abs((d1.value[i] ?? 0) - v) > Math.abs(v) * 2 ** -11 + 2 ** -25);
    expect(far).toBe(-1);

    const q = encodeUpdate(x, c("int8"));
    expect(q.encoding).toBe(Encoding.INT8);
    expect(q.payload.byteLength).toBe(4 * Math.ceil(n / INT8_BLOCK) + n);
    const d2 = decodeUpdate(q.encoding, q.payload, n);
    if (!d2.ok) throw new Error(d2.reason);
    for (let b = 0; b < n; b += INT8_BLOCK) {
      const block = x.subarray(b, b + INT8_BLOCK);
      const step = block.reduce((m, v) => Math.max(m, Math.abs(v)), 0) / 127;
      const far = block.findIndex((v, i) => Math.abs((d2.value[b + i] ?? 0) - v) > step * 0.5001);
      expect(far).toBe(-1);
    }
  });

  it("topk keeps exactly the largest entries; with fp16 or int8 their values are coded", () => {
    const k = Math.ceil(0.01 * n);
    const idx = topIndices(x, k);
    expect(idx.length).toBe(k);
    const chosen = new Set(idx);
    const threshold = Math.min(...[...idx].map((i) => Math.abs(x[i] ?? 0)));
    expect(x.findIndex((v, i) => !chosen.has(i) && Math.abs(v) > threshold)).toBe(-1);
    for (const [text, encoding, tol] of [
      ["topk:0.01", Encoding.SPARSE_F32, 0],
      ["topk:0.01+fp16", Encoding.SPARSE_F16, 2 ** -11],
      ["topk:0.01+int8", Encoding.SPARSE_INT8, 0.5 / 127],
    ] as const) {
      const e = encodeUpdate(x, c(text));
      expect(e.encoding).toBe(encoding);
      const d = decodeUpdate(e.encoding, e.payload, n);
      if (!d.ok) throw new Error(d.reason);
      const bound = (i: number): number => tol * (encoding === Encoding.SPARSE_INT8 ? maxAbs : Math.abs(x[i] ?? 0)) * 1.0001;
      const wrong = x.findIndex((v, i) => (chosen.has(i) ? Math.abs((d.value[i] ?? 0) - v) > bound(i) : d.value[i] !== 0));
      expect(wrong, text).toBe(-1);
    }
  });

  it("ties in magnitude pick the lowest indices; k = n and all-zero updates work", () => {
    const t = new Float32Array([1, -1, 1, -1, 0.5]);
    expect([...topIndices(t, 2)]).toEqual([0, 1]);
    expect([...topIndices(t, 5)]).toEqual([0, 1, 2, 3, 4]);
    for (const text of ALL) {
      const z = new Float32Array(300);
      const e = encodeUpdate(z, c(text));
      const d = decodeUpdate(e.encoding, e.payload, 300);
      expect(d.ok && d.value.every((v) => v === 0), text).toBe(true);
    }
  });

  it("a large ratio falls back to the smaller dense form", () => {
    const e = encodeUpdate(x, c("topk:1"));
    expect(e.encoding).toBe(Encoding.F32);
    expect(encodeUpdate(x, c("topk:0.9+int8")).encoding).toBe(Encoding.INT8);
  });

  it("bytes for mnist-mlp's 203,530 parameters: topk:0.01 ≥ 50× and int8 ≥ 3.9× fewer than dense", () => {
    const big = randomUpdate(rng(3), 203_530);
    const dense = encodeUpdate(big, NO_COMPRESSION).payload.byteLength;
    const size = (t: string): number => encodeUpdate(big, c(t)).payload.byteLength;
    expect(dense / size("topk:0.01")).toBeGreaterThanOrEqual(50);
    expect(dense / size("int8")).toBeGreaterThanOrEqual(3.9);
    expect(dense / size("fp16")).toBe(2);
    expect(size("topk:0.01+int8")).toBeLessThan(size("topk:0.01+fp16"));
    expect(size("topk:0.01+fp16")).toBeLessThan(size("topk:0.01"));
  });
});

describe("error feedback", () => {
  it("Σ applied decoded updates + residual = Σ raw updates (fast-check)", () => {
    fc.assert(
      fc.property(
        fc.constantFrom(...ALL),
        fc.integer({ min: 1, max: 400 }),
        fc.integer({ min: 1, max: 12 }),
        fc.integer(),
        (text, n, steps, seed) => {
          const rand = rng(seed);
          const ef = new ErrorFeedback(c(text), n);
          const raw = new Float64Array(n);
          const applied = new Float64Array(n);
          let scale = 0;
          for (let s = 0; s < steps; s++) {
            const u = randomUpdate(rand, n, 10 ** (rand() * 4 - 4));
            const { encoded, decoded } = ef.encode(u);
            // Receivers decode the same bytes to the same values.
            const r = decodeUpdate(encoded.encoding, encoded.payload, n);
            if (!r.ok) return false;
            for (let i = 0; i < n; i++) {
              if (!Object.is(r.value[i], decoded[i]) && r.value[i] !== decoded[i]) return false;
              raw[i] = (raw[i] ?? 0) + (u[i] ?? 0);
              applied[i] = (applied[i] ?? 0) + (decoded[i] ?? 0);
              scale = Math.max(scale, Math.abs(u[i] ?? 0));
            }
          }
          for (let i = 0; i < n; i++) {
            const gap = Math.abs((applied[i] ?? 0) + (ef.residual[i] ?? 0) - (raw[i] ?? 0));
            if (gap > 1e-5 * scale * steps) return false;
          }
          return true;
        },
      ),
      { numRuns: 300, seed: 42 },
    );
  });

  it("nothing is lost: repeated topk sends carry every entry eventually", () => {
    const n = 1000;
    const ef = new ErrorFeedback(c("topk:0.01+int8"), n);
    const u = randomUpdate(rng(5), n);
    const applied = new Float32Array(n);
    ef.encode(u).decoded.forEach((v, i) => (applied[i] = v));
    // Later zero updates flush the residual, ten entries at a time.
    for (let s = 0; s < 400; s++) ef.encode(new Float32Array(n)).decoded.forEach((v, i) => (applied[i] = (applied[i] ?? 0) + v));
    const err = Math.max(...u.map((v, i) => Math.abs(v - (applied[i] ?? 0))));
    expect(err).toBeLessThan(1e-4);
  });

  it("refuses an update of the wrong length", () => {
    expect(() => new ErrorFeedback(NO_COMPRESSION, 3).encode(new Float32Array(4))).toThrow(RangeError);
  });
});

describe("exact re-encoding of decoded updates (re-sends, snapshots)", () => {
  it("decodes to bit-identical values, in the job's own encoding almost always", () => {
    const rand = rng(99);
    let compact = 0;
    let total = 0;
    for (const text of ALL) {
      const comp = c(text);
      for (let trial = 0; trial < 40; trial++) {
        const n = 1 + Math.floor(rand() * 3000);
        const ef = new ErrorFeedback(comp, n);
        const { encoded, decoded } = ef.encode(randomUpdate(rand, n, 10 ** (rand() * 6 - 5)));
        const again = encodeExact(decoded, comp);
        const d = decodeUpdate(again.encoding, again.payload, n);
        if (!d.ok) throw new Error(d.reason);
        const differ = decoded.findIndex((v, i) => d.value[i] !== v);
        expect(differ, `${text} n=${n}`).toBe(-1);
        total++;
        if (again.encoding === encoded.encoding && again.payload.byteLength <= encoded.payload.byteLength) compact++;
      }
    }
    expect(compact / total).toBeGreaterThan(0.99);
  });

  it("falls back to an exact form for values no compact form holds", () => {
    const x = Float32Array.from([0.1, 0, 0, 1e-7, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 3.3333]);
    const e = encodeExact(x, c("int8"));
    expect(e.encoding).toBe(Encoding.SPARSE_F32);
    const d = decodeUpdate(e.encoding, e.payload, x.length);
    expect(d.ok && [...d.value]).toEqual([...x]);
    const dense = Float32Array.from({ length: 50 }, (_, i) => 1 / (i + 3));
    expect(encodeExact(dense, c("fp16")).encoding).toBe(Encoding.F32);
  });
});

describe("decoding refuses malformed payloads", () => {
  const n = 3000;
  const x = randomUpdate(rng(1), n);
  const enc = (t: string): Uint8Array<ArrayBuffer> => encodeUpdate(x, c(t)).payload.slice();
  const sparseHead = (p: Uint8Array<ArrayBuffer>): DataView => new DataView(p.buffer);
  const cases: Record<UpdateRejectReason, () => { ok: boolean; reason?: string }> = {
    "unknown-encoding": () => decodeUpdate(0, enc("none"), n),
    "wrong-length": () => decodeUpdate(Encoding.INT8, enc("int8").subarray(1), n),
    "non-finite": () => {
      const p = enc("fp16");
      p.set([0x00, 0x7c], 10); // +Inf
      return decodeUpdate(Encoding.F16, p, n);
    },
    "bad-scale": () => {
      const p = enc("int8");
      new DataView(p.buffer).setFloat32(4, -1, true);
      return decodeUpdate(Encoding.INT8, p, n);
    },
    "bad-code": () => {
      const p = enc("topk:0.01+int8");
      p[12] = 0x80;
      return decodeUpdate(Encoding.SPARSE_INT8, p, n);
    },
    "bad-count": () => {
      const p = enc("topk:0.01");
      sparseHead(p).setUint32(0, n + 1, true);
      return decodeUpdate(Encoding.SPARSE_F32, p, n);
    },
    "bad-index": () => {
      const p = enc("topk:0.01");
      // Make the last index varint jump past n.
      p[p.length - 1] = 0x7f;
      return decodeUpdate(Encoding.SPARSE_F32, p, 130);
    },
  };
  for (const reason of UPDATE_REJECT_REASONS) {
    it(reason, () => {
      const r = cases[reason]();
      expect(r.ok).toBe(false);
      expect(r.reason).toBe(reason);
    });
  }

  it("more sparse refusals: index bytes not used up, a 6-byte varint, NaN value, header only", () => {
    const p = enc("topk:0.01");
    const view = sparseHead(p);
    const m = view.getUint32(0, true);
    const ib = view.getUint32(4, true);
    // One index byte too many declared: length check.
    const longer = new Uint8Array(p.length + 1);
    longer.set(p);
    new DataView(longer.buffer).setUint32(4, ib + 1, true);
    expect(decodeUpdate(Encoding.SPARSE_F32, longer, n)).toEqual({ ok: false, reason: "bad-index" });
    // A varint of 6 continuation bytes.
    const six = new Uint8Array(8 + 4);
    new DataView(six.buffer).setUint32(0, 1, true);
    new DataView(six.buffer).setUint32(4, 5, true);
    const bad = new Uint8Array([...six.subarray(0, 8), 0, 0, 0x80, 0x3f, 0xff, 0xff, 0xff, 0xff, 0xff]);
    expect(decodeUpdate(Encoding.SPARSE_F32, bad, n)).toEqual({ ok: false, reason: "bad-index" });
    const nan = p.slice();
    new DataView(nan.buffer).setFloat32(8, Number.NaN, true);
    expect(decodeUpdate(Encoding.SPARSE_F32, nan, n)).toEqual({ ok: false, reason: "non-finite" });
    expect(decodeUpdate(Encoding.SPARSE_F32, p.subarray(0, 7), n)).toEqual({ ok: false, reason: "wrong-length" });
    expect(m).toBeGreaterThan(0);
    // Huge declared count with a short buffer.
    const huge = p.slice();
    new DataView(huge.buffer).setUint32(0, 0xffffffff, true);
    expect(decodeUpdate(Encoding.SPARSE_F32, huge, 2 ** 33)).toEqual({ ok: false, reason: "bad-count" });
  });
});
