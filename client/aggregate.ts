/**
 * Robust aggregation of one clock's updates (`--aggregation`, `--clip`), pure.
 *
 * `mean` is the grid's ordinary rule: every update is added to the replica as
 * it arrives (a clock's updates add up to their sum). The robust rules wait
 * until a clock's updates are all in (client/replica.ts) and then add
 *
 *     n · robust_i( clip(u_i) )          coordinate by coordinate,
 *
 * where n is the number of updates of that clock, so a clock moves the model
 * about as far as the sum would with honest workers. `clip` scales an update
 * whose L2 norm exceeds C down to norm C; C is `--clip C`, or with `auto`
 * (the default) the median of the clock's update norms, so one update scaled
 * up cannot move a clock further than a typical one. `trimmed:β` drops the
 * ⌊β·n⌋ largest and ⌊β·n⌋ smallest values of each coordinate and averages the
 * rest; `median` takes the middle value (the mean of the two middle ones for
 * even n).
 *
 * Determinism: the caller passes the updates sorted by worker id; every
 * replica computes the same f32 result from the same inputs bit for bit
 * (norms and sums in f64 in a fixed order, one rounding to f32 at the end).
 */

export type AggregationRule = { readonly kind: "mean" } | { readonly kind: "trimmed"; readonly beta: number } | { readonly kind: "median" };

/** Norm clipping: off, a fixed bound, or the median norm of the clock's updates. */
export type ClipRule = { readonly kind: "off" } | { readonly kind: "auto" } | { readonly kind: "fixed"; readonly bound: number };

export interface Aggregation {
  readonly rule: AggregationRule;
  readonly clip: ClipRule;
}

export const MEAN: Aggregation = { rule: { kind: "mean" }, clip: { kind: "off" } };

type Parse<T> = { ok: true; value: T } | { ok: false; message: string };

const DECIMAL = /^(?:0|[1-9][0-9]*)?(?:\.[0-9]+)?(?:e-?[0-9]+)?$/;

/** `mean`, `trimmed:β` with 0 < β < 0.5, or `median`. */
export function parseAggregationRule(text: string): Parse<AggregationRule> {
  if (text === "mean") return { ok: true, value: { kind: "mean" } };
  if (text === "median") return { ok: true, value: { kind: "median" } };
  if (text.startsWith("trimmed:")) {
    const raw = text.slice(8);
    const beta = Number(raw);
    if (raw === "" || !DECIMAL.test(raw) || !(beta > 0 && beta < 0.5)) {
      return { ok: false, message: `trimmed wants a fraction β with 0 < β < 0.5, got "${raw}"` };
    }
    return { ok: true, value: { kind: "trimmed", beta } };
  }
  return { ok: false, message: `unknown aggregation "${text}" (mean, trimmed:β, median)` };
}

/** `auto`, `off`, or a positive finite L2 bound. */
export function parseClip(text: string): Parse<ClipRule> {
  if (text === "auto") return { ok: true, value: { kind: "auto" } };
  if (text === "off") return { ok: true, value: { kind: "off" } };
  const bound = Number(text);
  if (text === "" || !DECIMAL.test(text) || !Number.isFinite(bound) || !(bound > 0)) {
    return { ok: false, message: `clip wants auto, off or a positive number, got "${text}"` };
  }
  return { ok: true, value: { kind: "fixed", bound } };
}

export function formatAggregationRule(r: AggregationRule): string {
  return r.kind === "trimmed" ? `trimmed:${r.beta}` : r.kind;
}

export function formatClip(c: ClipRule): string {
  return c.kind === "fixed" ? String(c.bound) : c.kind;
}

/** Both settings as they travel in the welcome's job spec; `mean` ignores the clip (it must be off). */
export function parseAggregation(rule: string, clip: string): Parse<Aggregation> {
  const r = parseAggregationRule(rule);
  if (!r.ok) return r;
  const c = parseClip(clip);
  if (!c.ok) return c;
  if (r.value.kind === "mean" && c.value.kind !== "off") return { ok: false, message: "clipping needs a robust aggregation (trimmed:β or median); mean adds updates as they come" };
  return { ok: true, value: { rule: r.value, clip: c.value } };
}

export function isRobust(a: Aggregation): boolean {
  return a.rule.kind !== "mean";
}

function l2(u: Float32Array): number {
  let s = 0;
  for (let i = 0; i < u.length; i++) s += (u[i] as number) * (u[i] as number);
  return Math.sqrt(s);
}

/** Median of a small list of numbers (mean of the two middle ones for an even count). */
function medianOf(xs: number[]): number {
  const s = [...xs].sort((a, b) => a - b);
  const m = s.length >> 1;
  return s.length % 2 === 1 ? (s[m] as number) : ((s[m - 1] as number) + (s[m] as number)) / 2;
}

/** The scale factor each update gets from clipping (1: unchanged). */
export function clipScales(updates: readonly Float32Array[], clip: ClipRule): number[] {
  if (clip.kind === "off" || updates.length === 0) return updates.map(() => 1);
  const norms = updates.map(l2);
  const bound = clip.kind === "fixed" ? clip.bound : medianOf(norms);
  return norms.map((n) => (n > bound && n > 0 ? bound / n : 1));
}

/**
 * n · robust(clip(u_1..u_n)) for one clock's updates (sorted by worker id by
 * the caller). `mean` here is the plain sum (what the grid applies without a
 * robust rule). Returns a fresh array; an empty list gives zeros.
 */
export function aggregate(updates: readonly Float32Array[], agg: Aggregation, length: number): Float32Array {
  const n = updates.length;
  const out = new Float32Array(length);
  if (n === 0) return out;
  for (const u of updates) if (u.length !== length) throw new RangeError(`aggregate: an update of ${u.length} values, want ${length}`);
  const scales = clipScales(updates, agg.clip);
  const rule = agg.rule;
  if (rule.kind === "mean") {
    for (let i = 0; i < length; i++) {
      let s = 0;
      for (let k = 0; k < n; k++) s += (updates[k] as Float32Array)[i] as number * (scales[k] as number);
      out[i] = s;
    }
    return out;
  }
  const trim = rule.kind === "trimmed" ? Math.min(Math.floor(rule.beta * n + 1e-9), (n - 1) >> 1) : 0;
  const col = new Float64Array(n);
  for (let i = 0; i < length; i++) {
    for (let k = 0; k < n; k++) col[k] = ((updates[k] as Float32Array)[i] as number) * (scales[k] as number);
    // Insertion sort: n is the number of workers, small.
    for (let a = 1; a < n; a++) {
      const v = col[a] as number;
      let b = a - 1;
      while (b >= 0 && (col[b] as number) > v) {
        col[b + 1] = col[b] as number;
        b--;
      }
      col[b + 1] = v;
    }
    let v: number;
    if (rule.kind === "median") {
      const m = n >> 1;
      v = n % 2 === 1 ? (col[m] as number) : ((col[m - 1] as number) + (col[m] as number)) / 2;
    } else {
      let s = 0;
      for (let k = trim; k < n - trim; k++) s += col[k] as number;
      v = s / (n - 2 * trim);
    }
    out[i] = n * v;
  }
  return out;
}
