/**
 * Durable job state in `--state-dir`: an append-only event log (JSON lines)
 * and model checkpoints written atomically (temporary file, fsync, rename).
 * A failing disk is reported once and never crashes the coordinator: the job
 * goes on in memory.
 */
import { mkdirSync, openSync, writeSync, fsyncSync, closeSync, renameSync, readFileSync, existsSync } from "node:fs";
import { join } from "node:path";

export interface Checkpoint {
  readonly clock: number;
  readonly params: Float32Array;
}

export class JobStore {
  private readonly dir: string;
  private logFd: number | null = null;
  private failed = false;

  constructor(
    stateDir: string,
    jobId: string,
    private readonly warn: (msg: string) => void = (m) => console.error(m),
  ) {
    this.dir = join(stateDir, jobId);
    try {
      mkdirSync(this.dir, { recursive: true });
      this.logFd = openSync(join(this.dir, "events.jsonl"), "a");
    } catch (e) {
      this.fail("cannot open the state directory", e);
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

  /** Append one record to the log (one JSON object per line). */
  append(record: Record<string, unknown>): void {
    if (this.logFd === null) return;
    try {
      writeSync(this.logFd, JSON.stringify(record) + "\n");
    } catch (e) {
      this.fail("cannot append to the event log", e);
    }
  }

  /** Write the model atomically as `model.bin` (layout of /api/model). */
  checkpoint(clock: number, body: Uint8Array): boolean {
    const final = join(this.dir, "model.bin");
    const tmp = `${final}.tmp`;
    try {
      const fd = openSync(tmp, "w");
      try {
        writeSync(fd, body);
        fsyncSync(fd);
      } finally {
        closeSync(fd);
      }
      renameSync(tmp, final);
      this.append({ t: Date.now(), kind: "checkpoint", clock });
      return true;
    } catch (e) {
      this.fail("cannot write a checkpoint", e);
      return false;
    }
  }

  /** The last checkpoint's bytes, if any. */
  readCheckpoint(): Uint8Array | null {
    const path = join(this.dir, "model.bin");
    if (!existsSync(path)) return null;
    try {
      return new Uint8Array(readFileSync(path));
    } catch {
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
