/**
 * Who talks to whom on the data plane: pure logic, no DOM, no timers, so the
 * same code runs in the volunteer page, in unit tests and in the transport
 * benchmark's simulation.
 *
 * Up to `meshMax` members the grid is a full mesh: every worker links to every
 * other and sends its own update to each of them. Past it, the members form a
 * ring in worker-number order, each linked to the members 2^k positions away
 * in either direction (`2^k < N`), and an update travels down a binomial
 * broadcast tree rooted at its author: the member at ring distance `r` from
 * the author receives it from distance `r - 2^msb(r)` and forwards it to
 * distances `r + 2^k` for every `2^k > r` below N. So:
 *
 * - every member gets each update exactly once from its parent;
 * - an author sends its own update `ceil(log2 N)` times (the mesh: N - 1), and
 *   no member sends one update more often than that;
 * - a member keeps at most `2 ceil(log2 N)` links (the mesh: N - 1);
 * - an update is at most `ceil(log2 N)` hops from its author;
 * - forwarding load is even: over one clock every member sends exactly N - 1
 *   updates, its own and forwarded ones, as in the mesh. That figure cannot
 *   shrink with any topology while each replica receives every update: N
 *   updates reach N - 1 members each, so the sends add up to N(N - 1). Fewer
 *   bytes per update is the compression's job.
 *
 * Both ends of a link compute the same neighbour set from the same view (the
 * larger worker number dials). A join or leave shifts ring distances only for
 * pairs on either side of the member, about two link changes per member.
 *
 * Forwarding is de-duplicated by `(worker, clock)` ({@link SeenClocks}): a node
 * forwards an update the first time it sees it and never again, so a message
 * that crosses a view change (members on two trees at once) cannot loop.
 * Whatever a member misses while the overlay repairs is fetched by the
 * replicas' resend/chase paths from its neighbours, which retain every update
 * above the stable point.
 */

/** Default size up to which the grid is a full mesh (coordinator flag `--mesh-max`). */
export const DEFAULT_MESH_MAX = 16;

export interface Topology {
  readonly kind: "mesh" | "overlay";
  /** Worker numbers of the view's members, ascending. */
  readonly members: readonly number[];
  /** The members `self` keeps a link with (symmetric: a ∈ neighbours(b) ⇔ b ∈ neighbours(a)). */
  neighbours(self: number): number[];
  /** Whom `self` sends (or forwards) an update authored by `origin` to; empty for non-members. */
  forwardTo(origin: number, self: number): number[];
  /** Whom `self` receives `origin`'s updates from (null for the origin itself and non-members). */
  parentOf(origin: number, self: number): number | null;
}

/**
 * The topology of a view: a full mesh up to `meshMax` members, the ring overlay
 * above. `members` are worker numbers (duplicates ignored).
 */
export function buildTopology(members: Iterable<number>, meshMax: number = DEFAULT_MESH_MAX): Topology {
  const unique = [...new Set(members)].filter((n) => Number.isInteger(n) && n >= 0).sort((a, b) => a - b);
  return unique.length <= meshMax ? new Mesh(unique) : new RingOverlay(unique);
}

class Mesh implements Topology {
  readonly kind = "mesh";
  private readonly set: ReadonlySet<number>;

  constructor(readonly members: readonly number[]) {
    this.set = new Set(members);
  }

  neighbours(self: number): number[] {
    return this.set.has(self) ? this.members.filter((m) => m !== self) : [];
  }

  forwardTo(origin: number, self: number): number[] {
    return origin === self ? this.neighbours(self) : [];
  }

  parentOf(origin: number, self: number): number | null {
    return origin !== self && this.set.has(origin) && this.set.has(self) ? origin : null;
  }
}

/** Highest power of two <= r (r >= 1). */
function msb(r: number): number {
  return 2 ** Math.floor(Math.log2(r));
}

class RingOverlay implements Topology {
  readonly kind = "overlay";
  private readonly index = new Map<number, number>();

  constructor(readonly members: readonly number[]) {
    members.forEach((m, i) => this.index.set(m, i));
  }

  private at(i: number): number {
    const n = this.members.length;
    return this.members[((i % n) + n) % n] as number;
  }

  private readonly linkCache = new Map<number, number[]>();

  neighbours(self: number): number[] {
    const i = this.index.get(self);
    if (i === undefined) return [];
    const cached = this.linkCache.get(self);
    if (cached) return [...cached];
    const out = new Set<number>();
    for (let step = 1; step < this.members.length; step *= 2) {
      out.add(this.at(i + step));
      out.add(this.at(i - step));
    }
    out.delete(self);
    const sorted = [...out].sort((a, b) => a - b);
    this.linkCache.set(self, sorted);
    return [...sorted];
  }

  /** Ring distance from origin to self, or null when either is not a member. */
  private rank(origin: number, self: number): { o: number; r: number } | null {
    const o = this.index.get(origin);
    const s = this.index.get(self);
    if (o === undefined || s === undefined) return null;
    const n = this.members.length;
    return { o, r: (s - o + n) % n };
  }

  forwardTo(origin: number, self: number): number[] {
    const k = this.rank(origin, self);
    if (!k) return [];
    const out: number[] = [];
    for (let step = k.r === 0 ? 1 : 2 * msb(k.r); k.r + step < this.members.length; step *= 2) {
      out.push(this.at(k.o + k.r + step));
    }
    return out;
  }

  parentOf(origin: number, self: number): number | null {
    const k = this.rank(origin, self);
    if (!k || k.r === 0) return null;
    return this.at(k.o + k.r - msb(k.r));
  }
}

/**
 * Which `(worker, clock)` pairs this node has already forwarded. Memory is
 * bounded: per worker, clocks more than `window` below the highest one seen
 * count as seen (they are old; a replica still lacking one fetches it by a
 * resend request, whose answers need no forwarding).
 */
export class SeenClocks {
  private readonly byWorker = new Map<number, { max: number; clocks: Set<number> }>();

  constructor(private readonly window = 1024) {}

  /** Records the pair; true the first time it is seen (forward it), false after. */
  mark(worker: number, clock: number): boolean {
    let w = this.byWorker.get(worker);
    if (!w) {
      w = { max: clock, clocks: new Set() };
      this.byWorker.set(worker, w);
    }
    if (clock <= w.max - this.window) return false;
    if (w.clocks.has(clock)) return false;
    w.clocks.add(clock);
    if (clock > w.max) w.max = clock;
    if (w.clocks.size > 2 * this.window) {
      for (const c of w.clocks) if (c <= w.max - this.window) w.clocks.delete(c);
    }
    return true;
  }

  /** Forget workers that left the view. */
  retain(workers: ReadonlySet<number>): void {
    for (const k of this.byWorker.keys()) if (!workers.has(k)) this.byWorker.delete(k);
  }
}

/** What one clock costs when every member sends one update (the transport bench's simulation). */
export interface BroadcastCost {
  readonly members: number;
  /** Sends of its own update by one worker, largest over the members. */
  readonly ownFanoutMax: number;
  /** Updates one worker sends per clock (its own and forwarded ones): mean and largest. */
  readonly uploadMean: number;
  readonly uploadMax: number;
  /** Links (peer connections) per worker: mean and largest. */
  readonly linksMean: number;
  readonly linksMax: number;
  /** Longest chain of hops from an author to a member. */
  readonly depthMax: number;
  /** Deliveries per (origin, member) pair that were not exactly one (0 when the tree is right). */
  readonly deliveryErrors: number;
}

/** Runs one clock of updates through `topology` and counts what every member sends. */
export function broadcastCost(topology: Topology): BroadcastCost {
  const members = topology.members;
  const sends = new Map<number, number>(members.map((m) => [m, 0]));
  let ownFanoutMax = 0;
  let depthMax = 0;
  let deliveryErrors = 0;
  for (const origin of members) {
    const got = new Map<number, number>();
    let frontier: number[] = [origin];
    let depth = 0;
    ownFanoutMax = Math.max(ownFanoutMax, topology.forwardTo(origin, origin).length);
    while (frontier.length > 0) {
      const next: number[] = [];
      for (const x of frontier) {
        for (const y of topology.forwardTo(origin, x)) {
          sends.set(x, (sends.get(x) ?? 0) + 1);
          got.set(y, (got.get(y) ?? 0) + 1);
          next.push(y);
        }
      }
      if (next.length > 0) depth++;
      frontier = next;
    }
    for (const m of members) if (m !== origin && got.get(m) !== 1) deliveryErrors++;
    if (got.has(origin)) deliveryErrors++;
    depthMax = Math.max(depthMax, depth);
  }
  const up = [...sends.values()];
  const links = members.map((m) => topology.neighbours(m).length);
  const mean = (xs: number[]): number => (xs.length === 0 ? 0 : xs.reduce((a, b) => a + b, 0) / xs.length);
  return {
    members: members.length,
    ownFanoutMax,
    uploadMean: mean(up),
    uploadMax: Math.max(0, ...up),
    linksMean: mean(links),
    linksMax: Math.max(0, ...links),
    depthMax,
    deliveryErrors,
  };
}
