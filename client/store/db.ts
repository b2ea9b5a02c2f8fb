/**
 * The volunteer's IndexedDB (idb): one typed schema, one upgrade switch.
 * `shards` caches training shards keyed by [job, shard id, content hash], so a
 * reload does not download them again and a changed shard is never reused.
 * `backendChoice` caches the compute backend measured fastest, keyed by
 * [adapter key, job] (see gpu/select.ts), so a reload skips the timing.
 * Storage errors (quota, eviction, private mode) are reported to the caller,
 * which falls back to downloading: the cache is an optimization, never required.
 */
import { openDB, type DBSchema, type IDBPDatabase } from "idb";

export interface GridDB extends DBSchema {
  shards: {
    key: [string, number, string];
    value: { job: string; id: number; hash: string; bytes: ArrayBuffer; storedAt: number };
    indexes: { byJob: string };
  };
  backendChoice: {
    key: [string, string];
    value: BackendChoiceRecord;
  };
}

/** A measured backend choice: the winner and every candidate's step time. */
export interface BackendChoiceRecord {
  readonly adapterKey: string;
  readonly job: string;
  /** The winning kernel variant, e.g. "wgsl-vec4" or "wasm-xnnpack". */
  readonly kernel: string;
  /** Milliseconds per gradient step of every candidate measured. */
  readonly measuredMs: Readonly<Record<string, number>>;
  readonly rows: number;
  readonly storedAt: number;
}

const DB_NAME = "the-grid";
const DB_VERSION = 2;

let dbPromise: Promise<IDBPDatabase<GridDB>> | null = null;

export function openGridDB(): Promise<IDBPDatabase<GridDB>> {
  if (dbPromise !== null) return dbPromise;
  // A connection the browser closed (storage evicted or cleared) or one that
  // failed to open is opened afresh next time.
  const forget = (): void => {
    if (dbPromise === opening) dbPromise = null;
  };
  const opening = openDB<GridDB>(DB_NAME, DB_VERSION, {
    terminated: forget,
    upgrade(db, oldVersion) {
      const createChoices = (): void => {
        db.createObjectStore("backendChoice", { keyPath: ["adapterKey", "job"] });
      };
      switch (oldVersion) {
        case 0: {
          const shards = db.createObjectStore("shards", { keyPath: ["job", "id", "hash"] });
          shards.createIndex("byJob", "job");
          createChoices();
          break;
        }
        case 1:
          createChoices();
          break;
      }
    },
  });
  dbPromise = opening;
  opening.catch(forget);
  return opening;
}

export async function getCachedShard(job: string, id: number, hash: string): Promise<ArrayBuffer | null> {
  const db = await openGridDB();
  const row = await db.get("shards", [job, id, hash]);
  return row?.bytes ?? null;
}

export async function putCachedShard(job: string, id: number, hash: string, bytes: ArrayBuffer): Promise<void> {
  const db = await openGridDB();
  await db.put("shards", { job, id, hash, bytes, storedAt: Date.now() });
}

export async function getBackendChoice(adapterKey: string, job: string): Promise<BackendChoiceRecord | null> {
  const db = await openGridDB();
  return (await db.get("backendChoice", [adapterKey, job])) ?? null;
}

export async function putBackendChoice(record: BackendChoiceRecord): Promise<void> {
  const db = await openGridDB();
  await db.put("backendChoice", record);
}

export async function clearBackendChoices(): Promise<void> {
  const db = await openGridDB();
  await db.clear("backendChoice");
}
