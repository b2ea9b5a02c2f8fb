/**
 * Block SGD for matrix factorization: one pass over the training ratings of
 * block (row block k, column block b), updating U_k and V_b in place.
 *
 * SGD over ratings has write conflicts: two ratings of the same row (or
 * column) update the same factor. So the ratings of a block are shuffled and
 * then cut into *rounds* by greedy edge colouring of the bipartite
 * rows × columns graph: no round holds two ratings of one row or one column.
 * The ratings of a round are independent, so a GPU dispatch may run them all
 * at once (shaders/mf-sgd.wgsl, one dispatch per round) and gets exactly the
 * result of this reference, which runs them one after another.
 *
 * Per rating (i, j, r): e = r − u_i·v_j;
 *   u_i ← u_i + lr·(e·v_j − λ·u_i),  v_j ← v_j + lr·(e·u_i − λ·v_j)  (both from the old values).
 */
import { blockOf, blockRange, hash4, stream, type MfConfig, type Ratings } from "./problem.ts";

/** The training ratings of one block in round order, with block-local indices. */
export interface BlockRatings {
  readonly rowBlock: number;
  readonly colBlock: number;
  /** Row index within the row block. */
  readonly rows: Uint32Array;
  /** Column index within the column block. */
  readonly cols: Uint32Array;
  readonly vals: Float32Array;
  /** Round r is ratings [roundStart[r], roundStart[r + 1]). */
  readonly roundStart: Uint32Array;
}

/**
 * Cuts `n` ratings (local rows < nRows, local cols < nCols) into conflict-free
 * rounds: returns the permutation (rating indices in round order) and the
 * round starts. Greedy first-fit colouring over bitsets of used rounds.
 */
export function buildRounds(rows: Uint32Array, cols: Uint32Array, nRows: number, nCols: number): { order: Uint32Array; roundStart: Uint32Array } {
  const n = rows.length;
  const rowDeg = new Uint32Array(nRows);
  const colDeg = new Uint32Array(nCols);
  for (let e = 0; e < n; e++) {
    rowDeg[rows[e] ?? 0]!++;
    colDeg[cols[e] ?? 0]!++;
  }
  let maxRow = 0;
  let maxCol = 0;
  for (const d of rowDeg) maxRow = Math.max(maxRow, d);
  for (const d of colDeg) maxCol = Math.max(maxCol, d);
  // First fit never needs more than maxRow + maxCol − 1 colours.
  const words = Math.max(1, Math.ceil((maxRow + maxCol) / 32));
  const rowUsed = new Uint32Array(nRows * words);
  const colUsed = new Uint32Array(nCols * words);
  const color = new Uint32Array(n);
  let rounds = 0;
  for (let e = 0; e < n; e++) {
    const ro = (rows[e] ?? 0) * words;
    const co = (cols[e] ?? 0) * words;
    let c = -1;
    for (let w = 0; w < words && c < 0; w++) {
      const free = ~((rowUsed[ro + w] ?? 0) | (colUsed[co + w] ?? 0)) >>> 0;
      if (free !== 0) {
        const bit = 31 - Math.clz32(free & -free);
        c = w * 32 + bit;
        rowUsed[ro + w] = (rowUsed[ro + w] ?? 0) | (1 << bit);
        colUsed[co + w] = (colUsed[co + w] ?? 0) | (1 << bit);
      }
    }
    if (c < 0) throw new Error("buildRounds: ran out of colours");
    color[e] = c;
    rounds = Math.max(rounds, c + 1);
  }
  const roundStart = new Uint32Array(rounds + 1);
  for (let e = 0; e < n; e++) roundStart[(color[e] ?? 0) + 1]!++;
  for (let r = 0; r < rounds; r++) roundStart[r + 1]! += roundStart[r] ?? 0;
  const fill = roundStart.slice(0, rounds);
  const order = new Uint32Array(n);
  for (let e = 0; e < n; e++) order[fill[color[e] ?? 0]!++] = e;
  return { order, roundStart };
}

/**
 * Splits the training ratings of row block k (global indices) into K blocks
 * by column block, shuffles each (seeded) and orders it into rounds.
 */
export function prepareRowBlock(cfg: MfConfig, k: number, train: Ratings): BlockRatings[] {
  const [r0] = blockRange(cfg.users, cfg.blocks, k);
  const byCol: number[][] = Array.from({ length: cfg.blocks }, () => []);
  for (let e = 0; e < train.vals.length; e++) byCol[blockOf(cfg.items, cfg.blocks, train.cols[e] ?? 0)]!.push(e);
  return byCol.map((idx, b) => {
    const [c0, c1] = blockRange(cfg.items, cfg.blocks, b);
    const [, r1] = blockRange(cfg.users, cfg.blocks, k);
    // Seeded Fisher–Yates: SGD wants the ratings in random order.
    const u = stream(hash4(cfg.seed, 7, k, b));
    for (let i = idx.length - 1; i > 0; i--) {
      const j = Math.floor(u() * (i + 1));
      const t = idx[i]!;
      idx[i] = idx[j]!;
      idx[j] = t;
    }
    const rows = Uint32Array.from(idx, (e) => (train.rows[e] ?? 0) - r0);
    const cols = Uint32Array.from(idx, (e) => (train.cols[e] ?? 0) - c0);
    const vals = Float32Array.from(idx, (e) => train.vals[e] ?? 0);
    const { order, roundStart } = buildRounds(rows, cols, r1 - r0, c1 - c0);
    return {
      rowBlock: k,
      colBlock: b,
      rows: order.map((e) => rows[e] ?? 0),
      cols: order.map((e) => cols[e] ?? 0),
      vals: Float32Array.from(order, (e) => vals[e] ?? 0),
      roundStart,
    };
  });
}

/**
 * One SGD pass over `block` on U_k (`u`) and V_b (`v`), in place, round by
 * round. Returns the sum of squared errors seen before each update (the
 * training loss of the pass). The CPU path of the volunteers and the test
 * oracle of the WGSL kernel.
 */
export function sgdBlock(u: Float32Array, v: Float32Array, rank: number, block: BlockRatings, lr: number, lambda: number): number {
  const { rows, cols, vals } = block;
  const n = vals.length;
  let sq = 0;
  const decay = 1 - lr * lambda;
  for (let e = 0; e < n; e++) {
    const uo = (rows[e] ?? 0) * rank;
    const vo = (cols[e] ?? 0) * rank;
    let dot = 0;
    for (let f = 0; f < rank; f++) dot += u[uo + f]! * v[vo + f]!;
    const err = vals[e]! - dot;
    sq += err * err;
    const g = lr * err;
    for (let f = 0; f < rank; f++) {
      const uf = u[uo + f]!;
      const vf = v[vo + f]!;
      u[uo + f] = decay * uf + g * vf;
      v[vo + f] = decay * vf + g * uf;
    }
  }
  return sq;
}
