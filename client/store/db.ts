/**
 * The volunteer's IndexedDB (idb): one typed schema, one upgrade switch.
 * `shards` caches training shards keyed by [job, shard id, content hash], so a
 * reload does not download them again and a changed shard is never reused.
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
}

const DB_NAME = "the-grid";
const DB_VERSION = 1;

let dbPromise: Promise<IDBPDatabase<GridDB>> | null = null;

export function openGridDB(): Promise<IDBPDatabase<GridDB>> {
  dbPromise ??= openDB<GridDB>(DB_NAME, DB_VERSION, {
    upgrade(db, oldVersion) {
      switch (oldVersion) {
        case 0: {
          const shards = db.createObjectStore("shards", { keyPath: ["job", "id", "hash"] });
          shards.createIndex("byJob", "job");
        }
      }
    },
  });
  return dbPromise;
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
