/**
 * Durable job state in `--state-dir/default/`: an append-only log of JSON
 * lines (`events.jsonl`, records in coordinator/resume.ts) and two model
 * checkpoints, `model.bin` (newest) and `model.prev.bin` (the one before).
 *
 * Checkpoint file: the /api/model layout (`u32` magic "GMDL", `u32` clock,
 * little-endian `f32` parameters) followed by the 32-byte SHA-256 of those
 * bytes. Written as: temporary file, fsync, `model.bin` → `model.prev.bin`,
 * temporary → `model.bin`, fsync of the directory; then its log record. A
 * crash at any point leaves at least one whole, verifiable checkpoint.
 *
 * The log is compacted when it grows past a bound (`compactBytes`, 8 MB by
 * default), right after a checkpoint: the records that replay to the same
 * state (coordinator/resume.ts) go to `events.tmp`, fsync, renamed over
 * `events.jsonl`, fsync of the directory. A crash leaves the old log or the
 * new one, whole; a failed compaction keeps the old log and is reported.
 *
 * Reading back (`load`) never fails on bad contents: a torn last log line is
 * cut off, unreadable lines are skipped, a checkpoint that does not verify is
 * set aside (`model.bad`) and the previous one is used; every repair is
 * reported. A failing disk is reported once and never crashes the
 * coordinator: the job goes on in memory.
 */
import {
  closeSync,
  existsSync,
  fstatSync,
  fsyncSync,
  ftruncateSync,
  mkdirSync,
  openSync,
  readFileSync,
  readSync,
  renameSync,
  rmSync,
  writeSync,
} from "node:fs";
import { createHash } from "node:crypto";
import { join } from "node:path";
import { decodeModelUpload, encodeModelUpload } from "./protocol.ts";
import { compactedRecords, replayText, resumeState, type LogReplay, type ResumeLog, type ResumeState, type StateRecord } from "./resume.ts";

const LOG = "events.jsonl";
const MODEL = "model.bin";
const PREV = "model.prev.bin";
const TMP = "model.tmp";
const LOG_TMP = "events.tmp";
/** The log is compacted after a checkpoint once it is larger than this. */
export const COMPACT_BYTES = 8 * 1024 * 1024;
const HASH_BYTES = 32;

/** Write a whole file and fsync it (the first step of every atomic replace in the state directory). */
export function writeSynced(path: string, data: string | Uint8Array): void {
  const fd = openSync(path, "w");
  try {
    if (typeof data === "string") writeSync(fd, data);
    else writeSync(fd, data);
    fsyncSync(fd);
  } finally {
    closeSync(fd);
  }
}

/** Fsync a directory, so the renames done in it are durable. */
export function syncDirectory(dir: string): void {
  const fd = openSync(dir, "r");
  try {
    fsyncSync(fd);
  } finally {
    closeSync(fd);
  }
}

/** A checkpoint file's bytes: the /api/model layout plus its SHA-256. */
export function encodeCheckpointFile(clock: number, params: Float32Array): Uint8Array {
  const body = new Uint8Array(encodeModelUpload(clock, params));
  const out = new Uint8Array(body.byteLength + HASH_BYTES);
  out.set(body);
  out.set(createHash("sha256").update(body).digest(), body.byteLength);
  return out;
}

/** Verify and decode a checkpoint file; a reason when it is not whole. */
export function decodeCheckpointFile(bytes: Uint8Array, parameters: number): { clock: number; params: Float32Array } | string {
  if (bytes.byteLength !== 8 + parameters * 4 + HASH_BYTES) return `${bytes.byteLength} bytes, want ${8 + parameters * 4 + HASH_BYTES}`;
  const body = bytes.subarray(0, bytes.byteLength - HASH_BYTES);
  const want = createHash("sha256").update(body).digest();
  if (!want.equals(bytes.subarray(body.byteLength))) return "its checksum does not match";
  const r = decodeModelUpload(body, parameters);
  return r.ok ? r.value : r.message;
}

export interface LoadedState {
  readonly log: ResumeLog;
  /** The newest checkpoint that verifies, and which file it came from. */
  readonly model: { clock: number; params: Float32Array; file: string } | null;
  /** What was repaired or skipped, one line each. */
  readonly notes: string[];
}

export class JobStore {
  readonly dir: string;
  private logFd: number | null = null;
  private failed = false;
  /** The log as a restart would read it, kept up to date by `append` once `load` has read the file. */
  private replay: LogReplay | null = null;
  /** Bytes in the log file (known once `load` has read it). */
  private logBytes = 0;
  /** Compact when the log passes this; raised after a failed compaction so it is not retried at every checkpoint. */
  private compactAt: number;
  /** Compactions done by this store (for the status and tests). */
  compactions = 0;

  constructor(
    stateDir: string,
    jobId: string,
    private readonly warn: (msg: string) => void = (m) => console.error(m),
    private readonly compactBytes = COMPACT_BYTES,
  ) {
    this.compactAt = compactBytes;
    this.dir = join(stateDir, jobId);
    try {
      mkdirSync(this.dir, { recursive: true });
    } catch (e) {
      this.fail("cannot create the state directory", e);
    }
  }

  private fail(what: string, e: unknown): void {
    if (this.failed) return;
    this.failed = true;
    this.warn(`state: ${what} (${e instanceof Error ? e.message : String(e)}); continuing in memory`);
  }

  get healthy(): boolean {
    return !this.failed;
  }

  /**
   * Read the log and the checkpoints back, repairing what a crash may have
   * left: the torn last line is cut off the file (so new records start on a
   * line of their own), a left-over temporary file is removed, and a
   * checkpoint that does not verify is renamed `model.bad`.
   */
  load(parameters: number): LoadedState {
    const notes: string[] = [];
    let text = "";
    const logPath = join(this.dir, LOG);
    try {
      if (existsSync(logPath)) text = readFileSync(logPath, "utf8");
    } catch (e) {
      notes.push(`cannot read the log (${e instanceof Error ? e.message : String(e)}); starting without its history`);
    }
    const replay = replayText(text);
    const log = replay.result();
    notes.push(...log.notes);
    this.repairTail();
    this.replay = replay;
    this.logBytes = Buffer.byteLength(text) - Buffer.byteLength(text.slice(text.lastIndexOf("\n") + 1));
    try {
      rmSync(join(this.dir, TMP), { force: true });
      rmSync(join(this.dir, LOG_TMP), { force: true });
    } catch {
      // A left-over temporary file is harmless.
    }
    let model: LoadedState["model"] = null;
    for (const file of [MODEL, PREV]) {
      const path = join(this.dir, file);
      if (!existsSync(path)) continue;
      let why: string;
      try {
        const r = decodeCheckpointFile(new Uint8Array(readFileSync(path)), parameters);
        if (typeof r !== "string") {
          model = { ...r, file };
          break;
        }
        why = r;
      } catch (e) {
        why = e instanceof Error ? e.message : String(e);
      }
      notes.push(`checkpoint ${file} is unusable (${why}); set aside as model.bad`);
      try {
        renameSync(path, join(this.dir, "model.bad"));
      } catch {
        // Left in place: it will be replaced by the next checkpoint.
      }
    }
    if (model && model.file === PREV) notes.push(`resuming from the previous checkpoint (${PREV}, clock ${model.clock})`);
    return { log, model, notes };
  }

  /** Cut a torn last line (no trailing newline) off the log file. */
  private repairTail(): void {
    const path = join(this.dir, LOG);
    if (!existsSync(path)) return;
    let fd: number | null = null;
    try {
      fd = openSync(path, "r+");
      const size = fstatSync(fd).size;
      if (size === 0) return;
      // Scan back for the last newline in blocks.
      const block = Buffer.alloc(64 * 1024);
      let end = size;
      while (end > 0) {
        const start = Math.max(0, end - block.length);
        const n = readSync(fd, block, 0, end - start, start);
        const i = block.subarray(0, n).lastIndexOf(0x0a);
        if (i >= 0) {
          const keep = start + i + 1;
          if (keep < size) {
            ftruncateSync(fd, keep);
            fsyncSync(fd);
          }
          return;
        }
        end = start;
      }
      ftruncateSync(fd, 0);
    } catch (e) {
      this.fail("cannot repair the log's last line", e);
    } finally {
      if (fd !== null) closeSync(fd);
    }
  }

  /** Append one record to the log (one JSON object per line). */
  append(record: StateRecord): void {
    if (this.failed) return;
    try {
      if (this.logFd === null) {
        this.repairTail();
        this.logFd = openSync(join(this.dir, LOG), "a");
      }
      const line = JSON.stringify(record) + "\n";
      writeSync(this.logFd, line);
      this.logBytes += Buffer.byteLength(line);
      this.replay?.add(record);
    } catch (e) {
      this.fail("cannot append to the log", e);
    }
  }

  /**
   * Rewrite the log as the records that replay to the same state (see the
   * file comment). Returns whether it did; on an error the old log stays.
   */
  compact(t: number): boolean {
    if (this.failed || this.replay === null) return false;
    const records = compactedRecords(this.replay.result(), t);
    if (records === null) return false;
    const tmp = join(this.dir, LOG_TMP);
    try {
      const text = records.map((r) => JSON.stringify(r) + "\n").join("");
      writeSynced(tmp, text);
      this.close();
      renameSync(tmp, join(this.dir, LOG));
      syncDirectory(this.dir);
      // `this.replay` stays: the compacted records replay to the state it holds.
      this.logBytes = Buffer.byteLength(text);
      this.compactAt = Math.max(this.compactBytes, 2 * this.logBytes);
      this.compactions++;
      return true;
    } catch (e) {
      this.compactAt = 2 * Math.max(this.logBytes, this.compactAt);
      this.warn(`state: cannot compact the log (${e instanceof Error ? e.message : String(e)}); keeping it whole, next try at ${this.compactAt} bytes`);
      try {
        rmSync(tmp, { force: true });
      } catch {
        // Removed at the next load.
      }
      return false;
    }
  }

  /**
   * Write a model checkpoint durably (see the file comment), then its log
   * record. Returns whether the checkpoint is on disk.
   */
  checkpoint(clock: number, params: Float32Array, record: StateRecord): boolean {
    if (this.failed) return false;
    const tmp = join(this.dir, TMP);
    try {
      writeSynced(tmp, encodeCheckpointFile(clock, params));
      const final = join(this.dir, MODEL);
      if (existsSync(final)) renameSync(final, join(this.dir, PREV));
      renameSync(tmp, final);
      syncDirectory(this.dir);
      this.append(record);
      if (this.logFd !== null) fsyncSync(this.logFd);
      if (this.logBytes > this.compactAt) this.compact(record.k === "ckpt" ? record.t : Date.now());
      return true;
    } catch (e) {
      this.fail("cannot write a checkpoint", e);
      return false;
    }
  }

  /** The newest checkpoint in the /api/model layout, if one verifies. */
  readCheckpoint(parameters: number): Uint8Array | null {
    for (const file of [MODEL, PREV]) {
      const path = join(this.dir, file);
      if (!existsSync(path)) continue;
      try {
        const r = decodeCheckpointFile(new Uint8Array(readFileSync(path)), parameters);
        if (typeof r !== "string") return new Uint8Array(encodeModelUpload(r.clock, r.params));
      } catch {
        // Try the previous one.
      }
    }
    return null;
  }

  /**
   * Move the whole job directory aside (`default.TIMESTAMP.REASON`) so the
   * next run starts fresh without losing the old state. Returns the new path.
   */
  archive(reason: string): string | null {
    this.close();
    const to = `${this.dir}.${new Date().toISOString().replace(/[:.]/g, "-")}.${reason}`;
    try {
      renameSync(this.dir, to);
      mkdirSync(this.dir, { recursive: true });
      return to;
    } catch (e) {
      this.fail("cannot move the old state aside", e);
      return null;
    }
  }

  close(): void {
    if (this.logFd !== null) {
      try {
        closeSync(this.logFd);
      } catch {
        // already closed
      }
      this.logFd = null;
    }
  }
}

/** Thrown when the state directory holds another job: the organizer must choose. */
export class StateMismatchError extends Error {}

/**
 * Open the job's state for a new run: resume an unfinished job of the same
 * kind from its newest good checkpoint; move a finished job's state (or any,
 * with `fresh`) aside and start anew. Reports what it did through `log`.
 */
export function openJobState(
  store: JobStore,
  job: { name: string; parameters: number },
  fresh: boolean,
  log: (line: string) => void,
): ResumeState {
  let loaded = store.load(job.parameters);
  const known = loaded.log.job !== null;
  if (known && !fresh && !loaded.log.done && (loaded.log.job !== job.name || loaded.log.parameters !== job.parameters)) {
    throw new StateMismatchError(
      `--state-dir ${store.dir} holds an unfinished ${loaded.log.job} job, not ${job.name}: pass --fresh to set it aside and start anew, or use another --state-dir`,
    );
  }
  if (known && (fresh || loaded.log.done)) {
    const to = store.archive(fresh ? "fresh" : "done");
    log(`state: the ${loaded.log.done ? "finished" : "earlier"} job's state was moved to ${to ?? "(could not move it)"}; starting a fresh job`);
    loaded = store.load(job.parameters);
  }
  for (const n of loaded.notes) log(`state: ${n}`);
  const r = resumeState(loaded.log, loaded.model);
  if (r.checkpoint) log(`state: resuming the job from its checkpoint at clock ${r.checkpoint.clock} (${r.checkpoint.file}), incarnation ${r.incarnation}`);
  else if (known) log(`state: no usable checkpoint; the job restarts from its initial parameters (incarnation ${r.incarnation})`);
  return r;
}
