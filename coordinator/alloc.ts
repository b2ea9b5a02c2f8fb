/**
 * Sharing volunteers between jobs: weighted max-min fairness on measured
 * throughput, within each job's minimum and maximum number of workers.
 *
 * A volunteer works for one job at a time. Job j's throughput is the sum of
 * its volunteers' measured rates on it (examples per second on that job's
 * kernels, over the median volunteer's: see `rateTable`); its normalized
 * share is that sum over its weight. The allocation
 *
 * 1. keeps every current assignment it can (a move costs a leave, a snapshot
 *    and maybe a download), dropping the ones to jobs that are gone or over
 *    their maximum (slowest first);
 * 2. meets minimums in priority order, taking for each job the free volunteer
 *    that is comparatively best at it (else one from a job above its own
 *    minimum, else from a lower-priority job's minimum), then gives every remaining volunteer
 *    to the job with the lowest normalized share that is below its maximum;
 * 3. then moves single volunteers while a move raises the lower of the two
 *    jobs' normalized shares by more than a relative margin (the hysteresis
 *    that keeps a settled grid from shuffling on measurement noise); of the
 *    moves that do, one of a volunteer that has run the target job before
 *    (measured there: its data is cached) is taken first, else the largest gain.
 *
 * So after `allocate`: no minimum or maximum is broken where the volunteers
 * allow it, no volunteer is idle while a job below its maximum exists, and
 * no single move would make the pair of jobs it touches fairer by more than
 * the margin. Pure: no I/O, deterministic (ties by priority, then id).
 */

export interface JobDemand {
  readonly id: string;
  /** Share weight (> 0). */
  readonly weight: number;
  readonly minWorkers: number;
  readonly maxWorkers: number;
  /** Higher first when minimums compete for too few volunteers. */
  readonly priority: number;
}

export interface Volunteer {
  readonly id: string;
  /** Measured examples per second per job id; a missing job is estimated. */
  readonly rates: ReadonlyMap<string, number>;
  /** The job it works for now, if any. */
  readonly current: string | null;
}

export interface AllocateOptions {
  /** A move must raise the pair's lower normalized share by this fraction (default 0.05). */
  readonly margin?: number;
  /** Bound on improving moves (default 50 × volunteers + 100; each move raises the sorted shares, so the search ends anyway). */
  readonly maxMoves?: number;
}

export type Assignment = Map<string, string | null>;

/**
 * A move must beat the margin by more than float noise: totals are running
 * sums, so a move exactly at the margin would otherwise be taken or not
 * depending on the order of earlier additions (and a settled grid would move).
 */
const GAIN_EPSILON = 1e-9;

/**
 * Normalized rate of each volunteer on each job: its examples per second
 * over the job's median volunteer, so jobs of very different cost per
 * example are compared in "median volunteers". A job's median volunteer is
 * the median of its measured rates, each first divided by that volunteer's
 * speed on the other jobs it ran: a job measured on one fast volunteer only
 * (a job that has just started) is not taken for a cheap job run by a median
 * one, which would make that volunteer count 1 there after counting 2.5 when
 * it was sent. A rate not measured yet is the volunteer's relative speed on
 * the jobs it has run (1 when none).
 */
export function rateTable(jobs: readonly JobDemand[], volunteers: readonly Volunteer[]): Map<string, Map<string, number>> {
  const measured = (r: number | undefined): r is number => r !== undefined && Number.isFinite(r) && r > 0;
  const medianOf = (j: string, scale: (v: Volunteer) => number): number | undefined => {
    const xs = volunteers.flatMap((v) => {
      const r = v.rates.get(j);
      return measured(r) ? [r / scale(v)] : [];
    });
    return xs.length > 0 ? median(xs) : undefined;
  };
  /** Mean of a volunteer's rates over `medians`, on the jobs other than `skip`; `fallback` when it ran none. */
  const speed = (v: Volunteer, medians: ReadonlyMap<string, number>, skip: string | null, fallback: number): number => {
    const rel: number[] = [];
    for (const [jid, r] of v.rates) {
      const m = medians.get(jid);
      if (jid !== skip && m !== undefined && measured(r)) rel.push(r / m);
    }
    return rel.length > 0 ? rel.reduce((a, b) => a + b, 0) / rel.length : fallback;
  };
  const raw = new Map<string, number>();
  for (const j of jobs) {
    const m = medianOf(j.id, () => 1);
    if (m !== undefined) raw.set(j.id, m);
  }
  const medians = new Map<string, number>();
  for (const j of jobs) {
    const m = medianOf(j.id, (v) => speed(v, raw, j.id, 1));
    if (m !== undefined) medians.set(j.id, m);
  }
  const table = new Map<string, Map<string, number>>();
  for (const v of volunteers) {
    const own = speed(v, medians, null, 1);
    const row = new Map<string, number>();
    for (const j of jobs) {
      const r = v.rates.get(j.id);
      const m = medians.get(j.id);
      row.set(j.id, measured(r) && m !== undefined ? r / m : own);
    }
    table.set(v.id, row);
  }
  return table;
}

export function allocate(jobs: readonly JobDemand[], volunteers: readonly Volunteer[], opts: AllocateOptions = {}): Assignment {
  const margin = opts.margin ?? 0.05;
  const maxMoves = opts.maxMoves ?? 50 * volunteers.length + 100;
  const rate = rateTable(jobs, volunteers);
  const r = (v: string, j: string): number => rate.get(v)?.get(j) ?? 1;
  const byId = new Map(volunteers.map((v) => [v.id, v]));
  const order = [...jobs].sort((a, b) => b.priority - a.priority || cmp(a.id, b.id));
  const members = new Map<string, string[]>(jobs.map((j) => [j.id, []]));
  const total = new Map<string, number>(jobs.map((j) => [j.id, 0]));
  const out: Assignment = new Map(volunteers.map((v) => [v.id, null]));
  const put = (v: string, j: string): void => {
    (members.get(j) as string[]).push(v);
    total.set(j, (total.get(j) ?? 0) + r(v, j));
    out.set(v, j);
  };
  const take = (v: string, j: string): void => {
    const list = members.get(j) as string[];
    list.splice(list.indexOf(v), 1);
    total.set(j, (total.get(j) ?? 0) - r(v, j));
    out.set(v, null);
  };
  const share = (j: JobDemand): number => (total.get(j.id) ?? 0) / j.weight;
  const count = (j: JobDemand): number => (members.get(j.id) as string[]).length;

  // 1. Keep current assignments, within each job's maximum (the fastest stay).
  const sortedVols = [...volunteers].sort((a, b) => cmp(a.id, b.id));
  for (const j of order) {
    const cur = sortedVols.filter((v) => v.current === j.id).sort((a, b) => r(b.id, j.id) - r(a.id, j.id) || cmp(a.id, b.id));
    for (const v of cur.slice(0, j.maxWorkers)) put(v.id, j.id);
  }
  const free = (): string[] => sortedVols.filter((v) => out.get(v.id) === null).map((v) => v.id);
  /** How much better `v` is at `j` than at the average job: spend specialists where they shine. */
  const advantage = (v: string, j: string): number => {
    const row = rate.get(v);
    if (!row || row.size === 0) return 1;
    let mean = 0;
    for (const x of row.values()) mean += x;
    mean /= row.size;
    return r(v, j) / mean;
  };
  const pick = (j: string, pool: string[]): string | undefined =>
    [...pool].sort((a, b) => advantage(b, j) - advantage(a, j) || r(b, j) - r(a, j) || cmp(a, b))[0];

  // 2a. Minimums in priority order; a higher-priority job may take from a lower one above its own minimum.
  for (const j of order) {
    while (count(j) < Math.min(j.minWorkers, j.maxWorkers)) {
      const pool = free();
      let v = pick(j.id, pool);
      if (v === undefined) {
        // Borrow: first from a job above its own minimum, else from a lower-priority job's minimum.
        const donor = order
          .filter((d) => d !== j && (count(d) > d.minWorkers || (d.priority < j.priority && count(d) > 0)))
          .sort((x, y) => Number(count(y) > y.minWorkers) - Number(count(x) > x.minWorkers) || x.priority - y.priority || cmp(x.id, y.id))[0];
        if (!donor) break;
        v = pick(j.id, members.get(donor.id) as string[]);
        if (v === undefined) break;
        take(v, donor.id);
      }
      put(v, j.id);
    }
  }
  // 2b. Everyone else to the job with the lowest normalized share that has room.
  for (;;) {
    const pool = free();
    if (pool.length === 0) break;
    const open = order.filter((j) => count(j) < j.maxWorkers);
    if (open.length === 0) break;
    const j = open.reduce((a, b) => (share(b) < share(a) ? b : a));
    put(pick(j.id, pool) as string, j.id);
  }
  // 3. Improving single moves, largest gain first.
  for (let moves = 0; moves < maxMoves; moves++) {
    let best: { v: string; from: string; to: string; gain: number; known: boolean } | null = null;
    for (const a of order) {
      if (count(a) <= a.minWorkers) continue;
      for (const b of order) {
        if (a === b || count(b) >= b.maxWorkers) continue;
        const before = Math.min(share(a), share(b));
        for (const v of members.get(a.id) as string[]) {
          const after = Math.min((total.get(a.id)! - r(v, a.id)) / a.weight, (total.get(b.id)! + r(v, b.id)) / b.weight);
          const gain = after - before;
          if (!(gain > margin * Math.max(before, 1e-12) + GAIN_EPSILON)) continue;
          const known = byId.get(v)?.rates.has(b.id) === true;
          if (!best || (known && !best.known) || (known === best.known && gain > best.gain)) best = { v, from: a.id, to: b.id, gain, known };
        }
      }
    }
    if (!best) break;
    take(best.v, best.from);
    put(best.v, best.to);
  }
  return out;
}

/**
 * Fairness error of an assignment: the largest gap between a job's share of
 * the total throughput and its weight's share of the total weight, over jobs
 * that are not pinned by their maximum (a job at its maximum may get less).
 */
export function fairnessError(jobs: readonly JobDemand[], volunteers: readonly Volunteer[], a: ReadonlyMap<string, string | null>): number {
  const rate = rateTable(jobs, volunteers);
  const totals = new Map<string, number>(jobs.map((j) => [j.id, 0]));
  const counts = new Map<string, number>(jobs.map((j) => [j.id, 0]));
  for (const [v, j] of a) {
    if (j === null || !totals.has(j)) continue;
    totals.set(j, (totals.get(j) ?? 0) + (rate.get(v)?.get(j) ?? 1));
    counts.set(j, (counts.get(j) ?? 0) + 1);
  }
  const all = [...totals.values()].reduce((x, y) => x + y, 0);
  const weights = jobs.reduce((x, j) => x + j.weight, 0);
  if (all <= 0 || weights <= 0) return 0;
  let err = 0;
  for (const j of jobs) {
    const actual = (totals.get(j.id) ?? 0) / all;
    const target = j.weight / weights;
    const pinned = (counts.get(j.id) ?? 0) >= j.maxWorkers || (counts.get(j.id) ?? 0) <= j.minWorkers;
    if (pinned) continue;
    err = Math.max(err, Math.abs(actual - target));
  }
  return err;
}

function median(xs: readonly number[]): number {
  const s = [...xs].sort((a, b) => a - b);
  const m = s.length >> 1;
  return s.length % 2 ? (s[m] as number) : ((s[m - 1] as number) + (s[m] as number)) / 2;
}

function cmp(a: string, b: string): number {
  return a < b ? -1 : a > b ? 1 : 0;
}
