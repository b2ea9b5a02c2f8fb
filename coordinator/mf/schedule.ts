/**
 * The rotation schedule of block-parallel matrix factorization (pure, no I/O).
 *
 * Rows and columns are cut into K blocks. Row block k has one owner, the
 * worker holding U_k; in sub-epoch t row block k is trained against column
 * block (k + t) mod K. Since k ↦ (k + t) mod K is a bijection, no two row
 * blocks meet the same column block in one sub-epoch, and since each row block
 * has one owner, no two workers touch the same U_k or V_b at once. After
 * sub-epoch t the column block b = (k + t) mod K goes to the owner of row block
 * k − 1, which needs it in sub-epoch t + 1.
 *
 * Sub-epochs end at a barrier: the coordinator holds a checkpoint of every
 * block after each one (the workers upload U_k and V_b when they finish a
 * block), and sub-epoch t + 1 starts when all K blocks of t are in. So every
 * block is always either with its owner or recoverable from the checkpoint of
 * the last barrier: a worker that leaves loses no factor, only the unfinished
 * work of the current sub-epoch.
 *
 * Repair: the row blocks of a worker that leaves go to the workers holding the
 * fewest (a standby worker without a block first); with nobody left they wait
 * in the checkpoint. A joiner takes an unowned block at once, or one block of
 * a worker holding several at the next barrier.
 */

export interface Schedule {
  readonly blocks: number;
  /** Current sub-epoch. */
  t: number;
  /** owners[k]: the worker holding row block k, null while it waits in the checkpoint. */
  readonly owners: (string | null)[];
  /** Row blocks whose sub-epoch-t task is done (their U_k and V_(k+t) are checkpointed at t + 1). */
  readonly done: Set<number>;
  /** Active workers in the order they joined. */
  readonly workers: string[];
}

/** One worker's task in a sub-epoch: train block (row, col). */
export interface Task {
  readonly row: number;
  readonly col: number;
  readonly worker: string;
}

export function createSchedule(blocks: number): Schedule {
  if (!Number.isInteger(blocks) || blocks < 1) throw new RangeError(`blocks must be a positive integer, got ${blocks}`);
  return { blocks, t: 0, owners: new Array<string | null>(blocks).fill(null), done: new Set(), workers: [] };
}

/** Column block that row block k trains against in sub-epoch t. */
export function colFor(blocks: number, k: number, t: number): number {
  return (((k + t) % blocks) + blocks) % blocks;
}

/** Row block that trains column block b in sub-epoch t. */
export function rowFor(blocks: number, b: number, t: number): number {
  return (((b - t) % blocks) + blocks) % blocks;
}

/** Row blocks held by `worker`. */
export function blocksOf(s: Schedule, worker: string): number[] {
  const out: number[] = [];
  s.owners.forEach((o, k) => {
    if (o === worker) out.push(k);
  });
  return out;
}

/** The worker holding the fewest row blocks (the earliest joined on ties), or null. */
function leastLoaded(s: Schedule): string | null {
  let best: string | null = null;
  let bestLoad = Infinity;
  for (const w of s.workers) {
    const load = blocksOf(s, w).length;
    if (load < bestLoad) {
      best = w;
      bestLoad = load;
    }
  }
  return best;
}

/** Give every unowned row block to the least-loaded worker. Returns the blocks handed out. */
function adoptOrphans(s: Schedule): { block: number; worker: string }[] {
  const moved: { block: number; worker: string }[] = [];
  for (let k = 0; k < s.blocks; k++) {
    if (s.owners[k] !== null) continue;
    const w = leastLoaded(s);
    if (w === null) break;
    s.owners[k] = w;
    moved.push({ block: k, worker: w });
  }
  return moved;
}

/** A worker joins: it takes an unowned row block if there is one, else stands by. */
export function addWorker(s: Schedule, worker: string): { block: number; worker: string }[] {
  if (s.workers.includes(worker)) return [];
  s.workers.push(worker);
  return adoptOrphans(s);
}

/**
 * A worker leaves (closed, dropped, silent): its row blocks go to the others
 * from the checkpoint. A block it already finished this sub-epoch stays done
 * (its checkpoint is in); an unfinished one is redone by the new owner.
 */
export function removeWorker(s: Schedule, worker: string): { block: number; worker: string }[] {
  const i = s.workers.indexOf(worker);
  if (i < 0) return [];
  s.workers.splice(i, 1);
  for (let k = 0; k < s.blocks; k++) if (s.owners[k] === worker) s.owners[k] = null;
  return adoptOrphans(s);
}

/** The tasks of sub-epoch t: one per owned row block. */
export function tasks(s: Schedule): Task[] {
  const out: Task[] = [];
  s.owners.forEach((w, k) => {
    if (w !== null) out.push({ row: k, col: colFor(s.blocks, k, s.t), worker: w });
  });
  return out;
}

/**
 * `worker` reports row block k done in the current sub-epoch. Ignored (false)
 * unless it owns k and k is not done yet. When all K blocks are done the
 * sub-epoch ends (`true` in `advanced`): t moves on and work is rebalanced
 * towards standby workers.
 */
export function markDone(s: Schedule, worker: string, k: number): { accepted: boolean; advanced: boolean; moved: { block: number; worker: string }[] } {
  if (k < 0 || k >= s.blocks || s.owners[k] !== worker || s.done.has(k)) return { accepted: false, advanced: false, moved: [] };
  s.done.add(k);
  if (s.done.size < s.blocks) return { accepted: true, advanced: false, moved: [] };
  s.t++;
  s.done.clear();
  return { accepted: true, advanced: true, moved: rebalance(s) };
}

/** At a barrier: move blocks from workers holding several to workers holding none. */
export function rebalance(s: Schedule): { block: number; worker: string }[] {
  const moved: { block: number; worker: string }[] = [];
  for (;;) {
    const idle = s.workers.find((w) => blocksOf(s, w).length === 0);
    if (idle === undefined) break;
    let donor: string | null = null;
    let most = 1;
    for (const w of s.workers) {
      const n = blocksOf(s, w).length;
      if (n > most) {
        donor = w;
        most = n;
      }
    }
    if (donor === null) break;
    // Its second block: spreading [0, 1, 2, 3] over joiners in order gives worker i block i.
    const k = blocksOf(s, donor)[1]!;
    s.owners[k] = idle;
    moved.push({ block: k, worker: idle });
  }
  return moved;
}

/**
 * Problems with the schedule as it stands (empty when sound): an owner that is
 * not an active worker, an unowned block while workers are active, or two
 * workers given the same row or column block in the current sub-epoch.
 */
export function violations(s: Schedule): string[] {
  const out: string[] = [];
  s.owners.forEach((w, k) => {
    if (w !== null && !s.workers.includes(w)) out.push(`row block ${k} owned by inactive ${w}`);
    if (w === null && s.workers.length > 0) out.push(`row block ${k} unowned while ${s.workers.length} workers are active`);
  });
  const rowBy = new Map<number, string>();
  const colBy = new Map<number, string>();
  for (const task of tasks(s)) {
    const r = rowBy.get(task.row);
    if (r !== undefined && r !== task.worker) out.push(`row block ${task.row} given to ${r} and ${task.worker} in sub-epoch ${s.t}`);
    rowBy.set(task.row, task.worker);
    const c = colBy.get(task.col);
    if (c !== undefined) out.push(`column block ${task.col} given twice in sub-epoch ${s.t}`);
    colBy.set(task.col, task.worker);
  }
  return out;
}
