/**
 * Seeded random numbers for parameter initialization: every replica calls
 * `init(seed)` and must get bit-identical parameters, so no Math.random.
 */

/** xorshift32 floats in [0, 1); never returns 0 (safe for log). */
export function uniformSource(seed: number): () => number {
  let s = (seed >>> 0) ^ 0x9e3779b9 || 1;
  return () => {
    s ^= s << 13;
    s >>>= 0;
    s ^= s >>> 17;
    s ^= s << 5;
    s >>>= 0;
    return (s + 1) / 0x1_0000_0001;
  };
}

/** Fills `out[from, from + n)` with N(0, std²) draws (Box–Muller) from `u`. */
export function fillNormal(out: Float32Array, from: number, n: number, std: number, u: () => number): void {
  for (let i = 0; i < n; i += 2) {
    const r = Math.sqrt(-2 * Math.log(u()));
    const t = 2 * Math.PI * u();
    out[from + i] = std * r * Math.cos(t);
    if (i + 1 < n) out[from + i + 1] = std * r * Math.sin(t);
  }
}

/**
 * `n` floats in [-0.5, 0.5) from a linear congruential generator: inputs for
 * the kernel benchmarks and probes (the same for a seed on every page and
 * thread, cheap, not for initialization).
 */
export function noiseInputs(n: number, seed: number): Float32Array {
  const out = new Float32Array(n);
  let s = seed >>> 0 || 1;
  for (let i = 0; i < n; i++) {
    s = (s * 1664525 + 1013904223) >>> 0;
    out[i] = s / 0x1_0000_0000 - 0.5;
  }
  return out;
}
