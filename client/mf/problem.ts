/**
 * The matrix-factorization problem of job `mf`: a synthetic ratings matrix
 * R ≈ U*·V*ᵀ + noise, generated deterministically from the seed, so every
 * node (coordinator and volunteers) can produce exactly the ratings it needs
 * and nothing but the seed and the sizes travels.
 *
 * - True factors: u*_i, v*_j ∈ ℝʳ with N(0, r^(-1/2)) entries, so a noiseless
 *   rating has variance 1.
 * - Row i observes each column with probability `density` (geometric gaps);
 *   the rating is u*_i·v*_j + N(0, noise²).
 * - A fixed 10% of the observed entries (by a hash of (i, j)) is held out for
 *   the test RMSE. `noise` is the floor no estimator beats on them.
 * - Rows and columns are split into K contiguous blocks (`blockRange`).
 *
 * Pure TypeScript, no DOM or Node imports: the page's worker, the coordinator
 * and the tests use the same code.
 */

export interface MfConfig {
  readonly users: number;
  readonly items: number;
  readonly rank: number;
  readonly density: number;
  readonly noise: number;
  /** K: row blocks and column blocks. */
  readonly blocks: number;
  readonly seed: number;
  /** SGD step size at epoch 0 and its decay: lr_e = lr / (1 + decay·e). */
  readonly lr: number;
  readonly lrDecay: number;
  /** L2 regularization λ. */
  readonly lambda: number;
  /** Standard deviation of the initial factors. */
  readonly initStd: number;
}

/** Share of observed entries held out for the test RMSE. */
export const TEST_SHARE = 0.1;

/** Ratings as parallel arrays (row, column, value); indices are global unless said otherwise. */
export interface Ratings {
  readonly rows: Uint32Array;
  readonly cols: Uint32Array;
  readonly vals: Float32Array;
}

/** [start, end) of block `k` of `n` indices cut into `blocks` blocks. */
export function blockRange(n: number, blocks: number, k: number): [number, number] {
  return [Math.floor((k * n) / blocks), Math.floor(((k + 1) * n) / blocks)];
}

/** The block holding index `i` (inverse of `blockRange`). */
export function blockOf(n: number, blocks: number, i: number): number {
  let k = Math.min(blocks - 1, Math.floor((i * blocks) / n));
  while (k > 0 && blockRange(n, blocks, k)[0] > i) k--;
  while (k < blocks - 1 && blockRange(n, blocks, k)[1] <= i) k++;
  return k;
}

/** A 32-bit hash of up to four integers (murmur3-style finalizer over a mix). */
function mix(h: number, x: number): number {
  h = Math.imul(h ^ (x >>> 0), 0x85ebca6b) >>> 0;
  h = ((h << 13) | (h >>> 19)) >>> 0;
  return (Math.imul(h, 5) + 0xe6546b64) >>> 0;
}

export function hash4(a: number, b: number, c = 0, d = 0): number {
  let h = mix(mix(mix((a ^ 0x9e3779b9) >>> 0, b), c), d);
  h ^= h >>> 16;
  h = Math.imul(h, 0x85ebca6b) >>> 0;
  h ^= h >>> 13;
  h = Math.imul(h, 0xc2b2ae35) >>> 0;
  h ^= h >>> 16;
  return h >>> 0;
}

/** A seeded stream of floats in (0, 1) (mulberry32). */
export function stream(seed: number): () => number {
  let s = seed >>> 0;
  return () => {
    s = (s + 0x6d2b79f5) >>> 0;
    let t = s;
    t = Math.imul(t ^ (t >>> 15), t | 1);
    t ^= t + Math.imul(t ^ (t >>> 7), t | 61);
    return (((t ^ (t >>> 14)) >>> 0) + 0.5) / 4294967296;
  };
}

/** One N(0, 1) draw (Box–Muller, the cosine half). */
function normal(u: () => number): number {
  return Math.sqrt(-2 * Math.log(u())) * Math.cos(2 * Math.PI * u());
}

const TAG_U = 1;
const TAG_V = 2;
const TAG_ROW = 3;
const TAG_TEST = 4;
const TAG_INIT_U = 5;
const TAG_INIT_V = 6;

/** Rows [from, to) of a seeded factor matrix with N(0, std²) entries: row i is a pure function of (seed, tag, i). */
function factorRows(seed: number, tag: number, rank: number, from: number, to: number, std: number): Float32Array {
  const out = new Float32Array((to - from) * rank);
  for (let i = from; i < to; i++) {
    const u = stream(hash4(seed, tag, i));
    for (let f = 0; f < rank; f++) out[(i - from) * rank + f] = std * normal(u);
  }
  return out;
}

/** True item factors v*_j for j ∈ [from, to). */
export function trueItems(cfg: MfConfig, from = 0, to = cfg.items): Float32Array {
  return factorRows(cfg.seed, TAG_V, cfg.rank, from, to, cfg.rank ** -0.25);
}

/** Whether observed entry (i, j) is held out for testing. */
export function isTest(seed: number, i: number, j: number): boolean {
  return hash4(seed, TAG_TEST, i, j) / 4294967296 < TEST_SHARE;
}

/**
 * The observed ratings of rows [from, to), split into training and test
 * entries, in row-major order. `vStar` is `trueItems(cfg)` (pass it in when
 * generating several row ranges). `keepTrain: false` keeps only the test
 * entries (the same ones).
 */
export function generateRows(cfg: MfConfig, from: number, to: number, vStar = trueItems(cfg), keepTrain = true): { train: Ratings; test: Ratings } {
  const r = cfg.rank;
  const logMiss = Math.log(1 - cfg.density);
  const tr = { rows: [] as number[], cols: [] as number[], vals: [] as number[] };
  const te = { rows: [] as number[], cols: [] as number[], vals: [] as number[] };
  const ustar = new Float32Array(r);
  for (let i = from; i < to; i++) {
    const urow = factorRows(cfg.seed, TAG_U, r, i, i + 1, cfg.rank ** -0.25);
    ustar.set(urow);
    const u = stream(hash4(cfg.seed, TAG_ROW, i));
    // Geometric gaps between observed columns: one draw per observed entry.
    let j = cfg.density >= 1 ? 0 : Math.floor(Math.log(u()) / logMiss);
    while (j < cfg.items) {
      let dot = 0;
      for (let f = 0; f < r; f++) dot += (ustar[f] ?? 0) * (vStar[j * r + f] ?? 0);
      const value = dot + cfg.noise * normal(u);
      const dest = isTest(cfg.seed, i, j) ? te : keepTrain ? tr : null;
      if (dest) {
        dest.rows.push(i);
        dest.cols.push(j);
        dest.vals.push(value);
      }
      j += cfg.density >= 1 ? 1 : 1 + Math.floor(Math.log(u()) / logMiss);
    }
  }
  const pack = (x: typeof tr): Ratings => ({ rows: Uint32Array.from(x.rows), cols: Uint32Array.from(x.cols), vals: Float32Array.from(x.vals) });
  return { train: pack(tr), test: pack(te) };
}

/** Ratings of several parts, one after another. */
export function concatRatings(parts: readonly Ratings[]): Ratings {
  const n = parts.reduce((s, x) => s + x.vals.length, 0);
  const out = { rows: new Uint32Array(n), cols: new Uint32Array(n), vals: new Float32Array(n) };
  let o = 0;
  for (const x of parts) {
    out.rows.set(x.rows, o);
    out.cols.set(x.cols, o);
    out.vals.set(x.vals, o);
    o += x.vals.length;
  }
  return out;
}

/** Every observed rating of the problem (`keepTrain: false`: only the held-out ones), generated 2,000 rows at a time. */
export function generateAll(cfg: MfConfig, keepTrain = true): { train: Ratings; test: Ratings } {
  const vStar = trueItems(cfg);
  const train: Ratings[] = [];
  const test: Ratings[] = [];
  for (let a = 0; a < cfg.users; a += 2000) {
    const g = generateRows(cfg, a, Math.min(cfg.users, a + 2000), vStar, keepTrain);
    train.push(g.train);
    test.push(g.test);
  }
  return { train: concatRatings(train), test: concatRatings(test) };
}

/** Initial row factors U_k of row block k (a pure function of the seed; version 0 of its checkpoint). */
export function initRowBlock(cfg: MfConfig, k: number): Float32Array {
  const [a, b] = blockRange(cfg.users, cfg.blocks, k);
  return factorRows(cfg.seed, TAG_INIT_U, cfg.rank, a, b, cfg.initStd);
}

/** Initial column factors V_b of column block b. */
export function initColBlock(cfg: MfConfig, b: number): Float32Array {
  const [a, e] = blockRange(cfg.items, cfg.blocks, b);
  return factorRows(cfg.seed, TAG_INIT_V, cfg.rank, a, e, cfg.initStd);
}

/** Floats of row block k and of column block b. */
export function rowBlockFloats(cfg: MfConfig, k: number): number {
  const [a, b] = blockRange(cfg.users, cfg.blocks, k);
  return (b - a) * cfg.rank;
}
export function colBlockFloats(cfg: MfConfig, b: number): number {
  const [a, e] = blockRange(cfg.items, cfg.blocks, b);
  return (e - a) * cfg.rank;
}

/** Floats of the whole model U and V. */
export function modelFloats(cfg: MfConfig): number {
  return (cfg.users + cfg.items) * cfg.rank;
}

/** Step size in sub-epoch t (epoch = t / K). */
export function learningRate(cfg: MfConfig, t: number): number {
  return cfg.lr / (1 + cfg.lrDecay * Math.floor(t / cfg.blocks));
}

/**
 * RMSE of the factors on `ratings`; `rowFactor(i)` / `colFactor(j)` give the
 * offset of row i in `u` and column j in `v` (global indices).
 */
export function rmse(
  ratings: Ratings,
  rank: number,
  u: (i: number) => [Float32Array, number],
  v: (j: number) => [Float32Array, number],
): number {
  const n = ratings.vals.length;
  if (n === 0) return 0;
  let sq = 0;
  for (let e = 0; e < n; e++) {
    const [ua, uo] = u(ratings.rows[e] ?? 0);
    const [va, vo] = v(ratings.cols[e] ?? 0);
    let dot = 0;
    for (let f = 0; f < rank; f++) dot += (ua[uo + f] ?? 0) * (va[vo + f] ?? 0);
    const err = (ratings.vals[e] ?? 0) - dot;
    sq += err * err;
  }
  return Math.sqrt(sq / n);
}
