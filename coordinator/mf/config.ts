/**
 * Flags of job `mf` (`--mf-users` …) and their defaults, parsed strictly like
 * the other coordinator flags (cli.ts calls `mfConfigFromValues`).
 */
import type { MfConfig } from "../../client/mf/problem.ts";

export const MF_FLAGS = {
  "mf-users": { type: "string" },
  "mf-items": { type: "string" },
  "mf-rank": { type: "string" },
  "mf-density": { type: "string" },
  "mf-noise": { type: "string" },
  "mf-blocks": { type: "string" },
  "mf-lambda": { type: "string" },
  "mf-epochs": { type: "string" },
  "mf-target": { type: "string" },
} as const;

/** Defaults of the issue: 20,000 users × 5,000 items, rank 16, 2% observed, σ = 0.1, K = 4. */
export const MF_DEFAULTS: MfConfig = {
  users: 20_000,
  items: 5_000,
  rank: 16,
  density: 0.02,
  noise: 0.1,
  blocks: 4,
  seed: 1,
  lr: 0.04,
  lrDecay: 0.1,
  lambda: 0.001,
  initStd: 0.3,
};

export interface MfRunConfig {
  readonly problem: MfConfig;
  /** Stop after this many epochs (K sub-epochs each). */
  readonly maxEpochs: number;
  /** Stop when test RMSE ≤ target × noise. */
  readonly target: number;
}

export class MfFlagError extends Error {}

function num(name: string, v: string | undefined, def: number, min: number, max: number, integer: boolean): number {
  if (v === undefined) return def;
  const n = Number(v);
  if (v.trim() === "" || !Number.isFinite(n) || (integer && !Number.isInteger(n))) {
    throw new MfFlagError(`--${name} wants ${integer ? "a whole number" : "a number"}, got "${v}"`);
  }
  if (n < min || n > max) throw new MfFlagError(`--${name} must be between ${min} and ${max}, got ${n}`);
  return n;
}

/** The mf settings from flag values; `seed` and `lr` come from the shared flags. */
export function mfConfigFromValues(str: (k: string) => string | undefined, seed: number, lr: number | null): MfRunConfig {
  const d = MF_DEFAULTS;
  const users = num("mf-users", str("mf-users"), d.users, 2, 10_000_000, true);
  const items = num("mf-items", str("mf-items"), d.items, 2, 10_000_000, true);
  const blocks = num("mf-blocks", str("mf-blocks"), d.blocks, 1, 256, true);
  if (blocks > Math.min(users, items)) throw new MfFlagError(`--mf-blocks ${blocks} is more than the users or items`);
  const density = num("mf-density", str("mf-density"), d.density, 1e-6, 1, false);
  if (users * items * density > 50_000_000) throw new MfFlagError("--mf-users × --mf-items × --mf-density is above 50 million ratings");
  return {
    problem: {
      ...d,
      users,
      items,
      blocks,
      density,
      rank: num("mf-rank", str("mf-rank"), d.rank, 1, 256, true),
      noise: num("mf-noise", str("mf-noise"), d.noise, 1e-4, 10, false),
      lambda: num("mf-lambda", str("mf-lambda"), d.lambda, 0, 10, false),
      seed,
      lr: lr ?? d.lr,
    },
    maxEpochs: num("mf-epochs", str("mf-epochs"), 100, 1, 100_000, true),
    target: num("mf-target", str("mf-target"), 1.05, 1, 100, false),
  };
}
