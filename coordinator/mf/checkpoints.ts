/**
 * The coordinator's checkpoints of every factor block: U_k and V_b with the
 * number of sub-epochs each reflects. Version 0 is the seeded initialization;
 * workers upload each block after training it. A block can only move forward
 * by one sub-epoch at a time, so a late or duplicate upload never overwrites
 * newer factors.
 */
import { blockRange, colBlockFloats, initColBlock, initRowBlock, rowBlockFloats, type MfConfig } from "../../client/mf/problem.ts";

export type BlockKind = "u" | "v";

export interface BlockCopy {
  version: number;
  data: Float32Array;
}

export class Checkpoints {
  private readonly blocks: Record<BlockKind, BlockCopy[]>;

  constructor(private readonly cfg: MfConfig) {
    this.blocks = {
      u: Array.from({ length: cfg.blocks }, (_, k) => ({ version: 0, data: initRowBlock(cfg, k) })),
      v: Array.from({ length: cfg.blocks }, (_, b) => ({ version: 0, data: initColBlock(cfg, b) })),
    };
  }

  /** Floats of block `index` of `kind`. */
  floats(kind: BlockKind, index: number): number {
    return kind === "u" ? rowBlockFloats(this.cfg, index) : colBlockFloats(this.cfg, index);
  }

  version(kind: BlockKind, index: number): number {
    return this.blocks[kind][index]?.version ?? -1;
  }

  /** The checkpoint itself (not a copy): for serving it. */
  peek(kind: BlockKind, index: number): Readonly<BlockCopy> | undefined {
    return this.blocks[kind][index];
  }

  /** A copy of block `index` at exactly `version`; throws if the checkpoint is at another version. */
  get(kind: BlockKind, index: number, version: number): BlockCopy {
    const b = this.blocks[kind][index];
    if (!b) throw new RangeError(`no ${kind} block ${index}`);
    if (b.version !== version) throw new Error(`${kind} block ${index} is at version ${b.version}, wanted ${version}`);
    return { version, data: Float32Array.from(b.data) };
  }

  /**
   * Store `data` as version `version` of the block. Accepted only as the next
   * version after the stored one, with the right size and finite values;
   * returns the reason otherwise.
   */
  put(kind: BlockKind, index: number, version: number, data: Float32Array): string | null {
    const b = this.blocks[kind][index];
    if (!b) return `no ${kind} block ${index}`;
    if (data.length !== b.data.length) return `${kind} block ${index} has ${b.data.length} floats, got ${data.length}`;
    if (version !== b.version + 1) return `${kind} block ${index} is at version ${b.version}, got ${version}`;
    for (let i = 0; i < data.length; i++) if (!Number.isFinite(data[i])) return `${kind} block ${index}: non-finite value`;
    b.data = Float32Array.from(data);
    b.version = version;
    return null;
  }

  /**
   * Every block from a whole model (U then V, the `assembled` layout) at
   * `version`: what a restarted coordinator resumes from.
   */
  restore(version: number, model: Float32Array): void {
    const uFloats = this.cfg.users * this.cfg.rank;
    if (model.length !== uFloats + this.cfg.items * this.cfg.rank) throw new RangeError(`a model of ${model.length} floats is not this problem's`);
    for (const kind of ["u", "v"] as const) {
      const n = kind === "u" ? this.cfg.users : this.cfg.items;
      const base = kind === "u" ? 0 : uFloats;
      this.blocks[kind].forEach((b, k) => {
        const [a, e] = blockRange(n, this.cfg.blocks, k);
        b.data = model.slice(base + a * this.cfg.rank, base + e * this.cfg.rank);
        b.version = version;
      });
    }
  }

  /** The whole U (users × rank) or V (items × rank), block after block. */
  assembled(kind: BlockKind): Float32Array {
    const n = kind === "u" ? this.cfg.users : this.cfg.items;
    const out = new Float32Array(n * this.cfg.rank);
    this.blocks[kind].forEach((b, k) => out.set(b.data, blockRange(n, this.cfg.blocks, k)[0] * this.cfg.rank));
    return out;
  }
}
