/**
 * A volunteer's share of the mf model and data: the row blocks U_k it owns,
 * the column blocks V_b handed to it, and the training ratings of its row
 * blocks (generated from the seed on first use, cut into blocks and rounds).
 * Pure TypeScript: the page's Web Worker (worker.ts) wraps it, and the
 * coordinator's tests drive it directly.
 */
import { blockRange, colBlockFloats, generateRows, rowBlockFloats, trueItems, type MfConfig } from "./problem.ts";
import { prepareRowBlock, sgdBlock, type BlockRatings } from "./sgd.ts";
import type { FactorBlock } from "./wire.ts";

/** One SGD pass over a block, in place; returns the sum of squared errors. */
export type BlockSgd = (u: Float32Array, v: Float32Array, rank: number, block: BlockRatings, lr: number, lambda: number) => number | Promise<number>;

export class MfTrainer {
  private readonly held = new Map<string, { version: number; data: Float32Array }>();
  private readonly ratings = new Map<number, BlockRatings[]>();
  private vStar: Float32Array | null = null;
  private peak = 0;

  constructor(readonly cfg: MfConfig) {}

  private key(kind: "u" | "v", index: number): string {
    return `${kind}${index}`;
  }

  /** Floats of block `index` of `kind`, undefined when there is no such block. */
  floatsOf(kind: "u" | "v", index: number): number | undefined {
    if (!Number.isInteger(index) || index < 0 || index >= this.cfg.blocks) return undefined;
    return kind === "u" ? rowBlockFloats(this.cfg, index) : colBlockFloats(this.cfg, index);
  }

  /** The version of a held block, or null. */
  version(kind: "u" | "v", index: number): number | null {
    return this.held.get(this.key(kind, index))?.version ?? null;
  }

  /** Hold `b` (a newer version replaces an older one; an older one is ignored). Returns whether it was taken. */
  put(b: FactorBlock): boolean {
    const k = this.key(b.kind, b.index);
    const old = this.held.get(k);
    if (old && old.version > b.version) return false;
    if (b.data.length !== this.floatsOf(b.kind, b.index)) return false;
    this.held.set(k, { version: b.version, data: Float32Array.from(b.data) });
    this.peak = Math.max(this.peak, this.modelBytes());
    return true;
  }

  /** A copy of a held block. */
  get(kind: "u" | "v", index: number): FactorBlock | null {
    const h = this.held.get(this.key(kind, index));
    return h ? { kind, index, version: h.version, data: Float32Array.from(h.data) } : null;
  }

  release(kind: "u" | "v", index: number): void {
    this.held.delete(this.key(kind, index));
  }

  /** Drop the row blocks (and their ratings) this worker no longer owns. */
  keepRows(rows: readonly number[]): void {
    for (let k = 0; k < this.cfg.blocks; k++) {
      if (rows.includes(k)) continue;
      this.release("u", k);
      this.ratings.delete(k);
    }
  }

  /** Bytes of factors held now (row and column blocks). */
  modelBytes(): number {
    let n = 0;
    for (const h of this.held.values()) n += h.data.byteLength;
    return n;
  }

  peakModelBytes(): number {
    return this.peak;
  }

  /** The prepared ratings of row block k (generated on first use). */
  blockRatings(k: number): BlockRatings[] {
    let r = this.ratings.get(k);
    if (!r) {
      this.vStar ??= trueItems(this.cfg);
      const [a, b] = blockRange(this.cfg.users, this.cfg.blocks, k);
      r = prepareRowBlock(this.cfg, k, generateRows(this.cfg, a, b, this.vStar).train);
      this.ratings.set(k, r);
    }
    return r;
  }

  /**
   * Train block (row, col) with `sgd` on the held U_row and V_col, which must
   * be at the same version; both move one version on. Returns the squared
   * error sum and the number of ratings.
   */
  async train(row: number, col: number, lr: number, sgd: BlockSgd = sgdBlock): Promise<{ sq: number; ratings: number }> {
    const u = this.held.get(this.key("u", row));
    const v = this.held.get(this.key("v", col));
    if (!u || !v) throw new Error(`block (${row}, ${col}): factors not held`);
    if (u.version !== v.version) throw new Error(`block (${row}, ${col}): U at version ${u.version}, V at ${v.version}`);
    const block = this.blockRatings(row)[col]!;
    const sq = await sgd(u.data, v.data, this.cfg.rank, block, lr, this.cfg.lambda);
    u.version++;
    v.version++;
    return { sq, ratings: block.vals.length };
  }
}
