/**
 * Work sizing: the minibatch each worker should use so that workers of
 * different compute speeds finish a clock at about the same time.
 *
 * Each worker reports its compute time per step (`computeMs`, the part of a
 * step that grows with the batch; a throttle's idle share counted in) at the
 * batch it ran, i.e. a cost per example. The rule gives every worker a batch
 * inversely proportional to that cost, at least minShare × base, adding up to
 * `base` per measured worker, then caps each at maxShare × base: equal compute
 * time per clock, and a clock covers about as many examples as without sizing
 * (fewer when a cap binds), so the effective learning rate per clock stays
 * comparable (each worker scales its learning rate by `batch / base`, its
 * share of the clock's examples).
 *
 * Time that does not grow with the batch is left out on purpose: a
 * `?slowdown=F` page waits a fixed delay per step, and sizing must not hide
 * it. A page that computes as fast as the others gets the same batch however
 * long it waits, so it stays slow by its whole delay and the straggler policy
 * sees exactly what it would without sizing.
 *
 * Hysteresis: a worker keeps its current batch unless the new one differs
 * by more than `deadband` of it, so equally fast workers stay at `base`
 * through measurement noise. Workers without a measurement (or before there
 * are two measured ones) keep their current batch. Pure; no I/O.
 */

export interface SizingSample {
  readonly id: string;
  /** The batch the worker runs now. */
  readonly batch: number;
  /** Mean compute time per step at `batch`, ms (0: not measured yet). */
  readonly computeMs: number;
}

export interface SizingPolicy {
  /** Smallest batch as a share of the base batch. */
  readonly minShare: number;
  /** Largest batch as a share of the base batch. */
  readonly maxShare: number;
  /** Keep the current batch when the new one is within this share of it. */
  readonly deadband: number;
}

export const DEFAULT_SIZING: SizingPolicy = { minShare: 0.25, maxShare: 2, deadband: 0.2 };

/** The largest batch a worker is ever given (the protocol's and the backends' bound). */
export const MAX_SIZED_BATCH = 4096;

/** The batch per worker id (see the file comment). */
export function sizeBatches(samples: readonly SizingSample[], base: number, policy: SizingPolicy = DEFAULT_SIZING): Map<string, number> {
  const out = new Map<string, number>();
  const lo = Math.max(1, Math.floor(base * policy.minShare));
  const hi = Math.min(MAX_SIZED_BATCH, Math.max(lo, Math.ceil(base * policy.maxShare)));
  const measured: { id: string; current: number; per: number }[] = [];
  for (const s of samples) {
    const ok = s.batch >= 1 && Number.isFinite(s.computeMs) && s.computeMs > 0;
    if (!ok) out.set(s.id, s.batch >= 1 ? s.batch : base);
    else measured.push({ id: s.id, current: s.batch, per: s.computeMs / s.batch });
  }
  if (measured.length < 2) {
    for (const m of measured) out.set(m.id, m.current);
    return out;
  }
  // T is solved with the floor only: a fast worker held at the cap does not
  // push more examples onto slower ones (the clock then covers fewer).
  const floorAt = (t: number, m: (typeof measured)[number]): number => Math.max(lo, t / m.per);
  const total = (t: number): number => measured.reduce((n, m) => n + floorAt(t, m), 0);
  const want = base * measured.length;
  // total(T) is continuous and nondecreasing: bisect between all-at-floor and one worker doing all.
  let a = Math.min(...measured.map((m) => lo * m.per));
  let b = Math.max(...measured.map((m) => want * m.per));
  for (let i = 0; i < 60 && b - a > 1e-9 * Math.max(1, b); i++) {
    const mid = (a + b) / 2;
    if (total(mid) < want) a = mid;
    else b = mid;
  }
  const t = (a + b) / 2;
  for (const m of measured) {
    const next = Math.round(Math.min(hi, floorAt(t, m)));
    out.set(m.id, Math.abs(next - m.current) <= policy.deadband * m.current ? m.current : next);
  }
  return out;
}
