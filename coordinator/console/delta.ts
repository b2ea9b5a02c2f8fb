/**
 * Status deltas for the console's push stream (GET /api/stream, served by
 * coordinator/push.ts). Pure JSON in, JSON out: no DOM, no I/O, imported by
 * the coordinator (to compute deltas) and by the console (to apply them), and
 * unit-tested as a round trip (test/unit/console-delta.test.ts).
 *
 * A status is treated as plain JSON. A delta from status A to status B:
 *
 *   {
 *     "seq": 42,                        // the stream's message number (see push.ts)
 *     "set": { "clock": {...}, ... },   // top-level fields whose value changed, replaced whole
 *     "unset": ["lastEvalMsAgo"],       // top-level fields B no longer has
 *     "workers": {                      // keyed by worker id
 *       "upsert": [{ "id": "w2", "clock": 57, "lastSeenMs": 120 }],  // changed fields only; all fields for a new worker
 *       "remove": ["w9"],
 *       "order": ["w1", "w2", "w10"]    // only when B's order is not A's order with new ids appended
 *     },
 *     "lists": {                        // growing lists, by path
 *       "events": { "append": [...] },                // B = A + these
 *       "metrics.trainLoss": { "reset": [...] }       // B = these (the list was thinned or replaced)
 *     }
 *   }
 *
 * Growing lists are `events`, `metrics.trainLoss` and `metrics.test.series`;
 * everything else under `metrics` travels in `set.metrics` with those lists
 * left out. Absent keys mean "unchanged". Applying the delta of (A, B) to A
 * gives a value deep-equal (as JSON) to B.
 */

export type Json = null | boolean | number | string | Json[] | { [key: string]: Json };
export type JsonObject = { [key: string]: Json };

export type ListDelta = { append: Json[] } | { reset: Json[] };

export interface WorkersDelta {
  upsert: JsonObject[];
  remove: string[];
  order?: string[];
}

export interface StatusDelta {
  seq: number;
  set?: JsonObject;
  unset?: string[];
  workers?: WorkersDelta;
  lists?: { [path: string]: ListDelta };
}

/** Paths of the lists that only grow (or are thinned, then sent whole). */
export const LIST_PATHS: readonly (readonly string[])[] = [["events"], ["metrics", "trainLoss"], ["metrics", "test", "series"]];

export function isObject(v: unknown): v is JsonObject {
  return typeof v === "object" && v !== null && !Array.isArray(v);
}

/** Deep equality of JSON values (key order ignored). */
export function jsonEqual(a: Json | undefined, b: Json | undefined): boolean {
  if (a === b) return true;
  if (a === undefined || b === undefined || a === null || b === null) return false;
  if (Array.isArray(a)) {
    if (!Array.isArray(b) || a.length !== b.length) return false;
    for (let i = 0; i < a.length; i++) if (!jsonEqual(a[i], b[i])) return false;
    return true;
  }
  if (isObject(a)) {
    if (!isObject(b)) return false;
    const ka = Object.keys(a);
    if (ka.length !== Object.keys(b).length) return false;
    for (const k of ka) if (!(k in b) || !jsonEqual(a[k], b[k])) return false;
    return true;
  }
  return false;
}

function getPath(o: JsonObject, path: readonly string[]): Json | undefined {
  let cur: Json | undefined = o;
  for (const k of path) {
    if (!isObject(cur)) return undefined;
    cur = cur[k];
  }
  return cur;
}

/** A copy of `o` with the growing lists taken out (objects on the way copied, the rest shared). */
function withoutLists(o: JsonObject): JsonObject {
  const out: JsonObject = { ...o };
  for (const path of LIST_PATHS) {
    let parent: JsonObject = out;
    for (let i = 0; i < path.length - 1; i++) {
      const key = path[i] as string;
      const child = parent[key];
      if (!isObject(child)) {
        parent = {};
        break;
      }
      const copy = { ...child };
      parent[key] = copy;
      parent = copy;
    }
    delete parent[path[path.length - 1] as string];
  }
  return out;
}

/**
 * True when `next` is `prev` with items appended. Checked on the first, middle
 * and last items of `prev`: the coordinator only ever appends or thins its
 * older half, and thinning moves those.
 */
function extendsList(prev: readonly Json[], next: readonly Json[]): boolean {
  if (next.length < prev.length) return false;
  if (prev.length === 0) return true;
  const probes = new Set([0, prev.length >> 1, prev.length - 1]);
  for (const i of probes) if (!jsonEqual(prev[i], next[i])) return false;
  return true;
}

function workerList(o: JsonObject): JsonObject[] {
  const w = o["workers"];
  return Array.isArray(w) ? w.filter(isObject) : [];
}

function workerId(w: JsonObject): string {
  return String(w["id"]);
}

/** The delta from `prev` to `next` (both plain JSON statuses), numbered `seq`. Empty parts are left out. */
export function diffStatus(prev: JsonObject, next: JsonObject, seq: number): StatusDelta {
  const delta: StatusDelta = { seq };

  const a = withoutLists(prev);
  const b = withoutLists(next);
  const set: JsonObject = {};
  for (const [k, v] of Object.entries(b)) {
    if (k === "workers") continue;
    if (!jsonEqual(a[k], v)) set[k] = v;
  }
  const unset = Object.keys(a).filter((k) => k !== "workers" && !(k in b));
  if (Object.keys(set).length > 0) delta.set = set;
  if (unset.length > 0) delta.unset = unset;

  const before = new Map(workerList(prev).map((w) => [workerId(w), w]));
  const after = workerList(next);
  const upsert: JsonObject[] = [];
  for (const w of after) {
    const id = workerId(w);
    const old = before.get(id);
    if (old === undefined) {
      upsert.push(w);
      continue;
    }
    const changed: JsonObject = {};
    for (const [k, v] of Object.entries(w)) if (!jsonEqual(old[k], v)) changed[k] = v;
    for (const k of Object.keys(old)) if (!(k in w)) changed[k] = null;
    if (Object.keys(changed).length > 0) upsert.push({ ...changed, id });
  }
  const afterIds = new Set(after.map(workerId));
  const remove = [...before.keys()].filter((id) => !afterIds.has(id));
  const implied = [...before.keys()].filter((id) => afterIds.has(id));
  for (const w of after) if (!before.has(workerId(w))) implied.push(workerId(w));
  const order = after.map(workerId);
  if (upsert.length > 0 || remove.length > 0 || !implied.every((id, i) => id === order[i])) {
    delta.workers = { upsert, remove };
    if (!implied.every((id, i) => id === order[i])) delta.workers.order = order;
  }

  const lists: { [path: string]: ListDelta } = {};
  for (const path of LIST_PATHS) {
    const p = getPath(prev, path);
    const n = getPath(next, path);
    if (!Array.isArray(n)) continue;
    if (!Array.isArray(p)) {
      // A list that did not exist (a first evaluation's series): send it even when empty.
      lists[path.join(".")] = { reset: n };
      continue;
    }
    const pl = p;
    if (extendsList(pl, n)) {
      if (n.length > pl.length) lists[path.join(".")] = { append: n.slice(pl.length) };
    } else {
      lists[path.join(".")] = { reset: n };
    }
  }
  if (Object.keys(lists).length > 0) delta.lists = lists;
  return delta;
}

/** True when the delta carries no change (only its number). */
export function isEmptyDelta(d: StatusDelta): boolean {
  return d.set === undefined && d.unset === undefined && d.workers === undefined && d.lists === undefined;
}

/**
 * `base` with `delta` applied, as a new value (`base` is not modified).
 * Lenient: parts that do not fit (a list path under a missing object) are
 * created; the console validates the result with its status schema anyway.
 */
export function applyDelta(base: JsonObject, delta: StatusDelta): JsonObject {
  const out: JsonObject = { ...base };
  for (const k of delta.unset ?? []) delete out[k];
  const lists = delta.lists ?? {};
  for (const [k, v] of Object.entries(delta.set ?? {})) {
    if (k === "metrics" && isObject(v)) {
      // `set.metrics` comes without its lists: keep the ones we have.
      const merged: JsonObject = { ...v };
      const old = out["metrics"];
      if (isObject(old)) {
        if (!("trainLoss" in merged) && old["trainLoss"] !== undefined) merged["trainLoss"] = old["trainLoss"];
        const oldTest = old["test"];
        const newTest = merged["test"];
        if (isObject(newTest) && isObject(oldTest) && !("series" in newTest) && oldTest["series"] !== undefined) {
          merged["test"] = { ...newTest, series: oldTest["series"] };
        }
      }
      out[k] = merged;
    } else {
      out[k] = v;
    }
  }

  if (delta.workers !== undefined) {
    const byId = new Map(workerList(out).map((w) => [workerId(w), w]));
    const order = workerList(out).map(workerId);
    for (const id of delta.workers.remove) byId.delete(id);
    for (const patch of delta.workers.upsert) {
      const id = workerId(patch);
      const old = byId.get(id);
      if (old === undefined) order.push(id);
      byId.set(id, { ...(old ?? {}), ...patch });
    }
    const ids = delta.workers.order ?? order;
    const seen = new Set<string>();
    const workers: JsonObject[] = [];
    for (const id of ids) {
      const w = byId.get(id);
      if (w !== undefined && !seen.has(id)) {
        seen.add(id);
        workers.push(w);
      }
    }
    out["workers"] = workers;
  }

  for (const path of LIST_PATHS) {
    const change = lists[path.join(".")];
    if (change === undefined) continue;
    // Copy the objects on the way so `base` stays untouched.
    let parent: JsonObject = out;
    for (let i = 0; i < path.length - 1; i++) {
      const key = path[i] as string;
      const child = parent[key];
      const copy: JsonObject = isObject(child) ? { ...child } : {};
      parent[key] = copy;
      parent = copy;
    }
    const leaf = path[path.length - 1] as string;
    const current = parent[leaf];
    parent[leaf] = "reset" in change ? change.reset : [...(Array.isArray(current) ? current : []), ...change.append];
  }
  return out;
}

function isStringArray(v: unknown): v is string[] {
  return Array.isArray(v) && v.every((x) => typeof x === "string");
}

function isListDelta(v: unknown): v is ListDelta {
  if (!isObject(v)) return false;
  return Array.isArray(v["append"]) !== Array.isArray(v["reset"]);
}

/**
 * Checks the shape of a decoded `delta` message (the values inside are
 * checked later, by the console's status schema on the merged status).
 * Returns null for anything that is not a delta.
 */
export function parseDelta(raw: unknown): StatusDelta | null {
  if (!isObject(raw)) return null;
  const { seq, set, unset, workers, lists } = raw;
  if (typeof seq !== "number" || !Number.isInteger(seq)) return null;
  if (set !== undefined && !isObject(set)) return null;
  if (unset !== undefined && !isStringArray(unset)) return null;
  if (workers !== undefined) {
    if (!isObject(workers)) return null;
    const { upsert, remove, order } = workers;
    if (!Array.isArray(upsert) || !upsert.every((w) => isObject(w) && typeof w["id"] === "string")) return null;
    if (!isStringArray(remove)) return null;
    if (order !== undefined && !isStringArray(order)) return null;
  }
  if (lists !== undefined && (!isObject(lists) || !Object.values(lists).every(isListDelta))) return null;
  return raw as unknown as StatusDelta;
}

/** Checks a decoded `full` message: `{seq, status}`. */
export function parseFull(raw: unknown): { seq: number; status: JsonObject } | null {
  if (!isObject(raw)) return null;
  const { seq, status } = raw;
  if (typeof seq !== "number" || !Number.isInteger(seq) || !isObject(status)) return null;
  return { seq, status };
}
