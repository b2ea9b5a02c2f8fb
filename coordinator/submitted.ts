/**
 * Jobs submitted with `POST /api/jobs`, remembered in `--state-dir` so that a
 * restarted coordinator runs them again (each job's own state, its log and
 * checkpoints, is in `--state-dir/ID/` like any job's, so it resumes from its
 * checkpoint as a job of the jobs file does).
 *
 * File `submitted-jobs.json` (job ids cannot hold a dot, so it never meets a
 * job's directory): `{"v": 1, "jobs": [ENTRY, ...]}`, each entry as in
 * `--jobs FILE` with its defaults filled in, in submission order. Written
 * whole each time, atomically as the checkpoints are (temporary file, fsync,
 * rename over the old one, fsync of the directory), so a crash leaves the old
 * list or the new one. Reading back never fails: an unreadable file or entry
 * is reported and skipped. A failing disk is reported once and the grid goes
 * on in memory.
 */
import { existsSync, mkdirSync, readFileSync, renameSync, rmSync } from "node:fs";
import { join } from "node:path";
import { z } from "zod";
import { jobEntrySchema, type JobEntry } from "./jobs.ts";
import { syncDirectory, writeSynced } from "./state.ts";

export const SUBMITTED_FILE = "submitted-jobs.json";
const TMP = "submitted-jobs.tmp";

const fileSchema = z.object({ v: z.literal(1), jobs: z.array(z.unknown()).max(10_000) });

export class SubmittedJobs {
  private entries: JobEntry[] = [];
  private failed = false;

  constructor(
    private readonly stateDir: string,
    private readonly warn: (line: string) => void,
  ) {}

  private path(name = SUBMITTED_FILE): string {
    return join(this.stateDir, name);
  }

  /** Read the list back; what cannot be read is reported through `warn` and skipped. */
  load(): JobEntry[] {
    rmSync(this.path(TMP), { force: true });
    if (!existsSync(this.path())) return (this.entries = []);
    let raw: unknown;
    try {
      raw = JSON.parse(readFileSync(this.path(), "utf8"));
    } catch (e) {
      this.warn(`state: ${SUBMITTED_FILE} is unreadable (${e instanceof Error ? e.message.split("\n")[0] : String(e)}); no submitted job is restored`);
      return (this.entries = []);
    }
    const file = fileSchema.safeParse(raw);
    if (!file.success) {
      this.warn(`state: ${SUBMITTED_FILE} is not a list of submitted jobs; no submitted job is restored`);
      return (this.entries = []);
    }
    const out: JobEntry[] = [];
    for (const item of file.data.jobs) {
      const e = jobEntrySchema.safeParse(item);
      if (!e.success || out.some((x) => x.id === e.data.id)) {
        this.warn(`state: a submitted job in ${SUBMITTED_FILE} is not a valid entry; skipped`);
        continue;
      }
      out.push(e.data);
    }
    return (this.entries = out);
  }

  /** Remember a submitted job (its entry with defaults filled in). */
  add(entry: JobEntry): void {
    this.entries = [...this.entries.filter((e) => e.id !== entry.id), entry];
    this.write();
  }

  /** Forget a submitted job (cancelled): a restart does not run it again. */
  forget(id: string): void {
    if (!this.entries.some((e) => e.id === id)) return;
    this.entries = this.entries.filter((e) => e.id !== id);
    this.write();
  }

  /** Keep only these (the ones a restart could add back). */
  keep(ids: ReadonlySet<string>): void {
    const before = this.entries.length;
    this.entries = this.entries.filter((e) => ids.has(e.id));
    if (this.entries.length !== before) this.write();
  }

  /** `--fresh`: set the list aside (`submitted-jobs.json.TIMESTAMP.fresh`) so the grid starts with the jobs file only. */
  archive(): string | null {
    this.entries = [];
    if (!existsSync(this.path())) return null;
    const to = `${this.path()}.${new Date().toISOString().replace(/[:.]/g, "-")}.fresh`;
    try {
      renameSync(this.path(), to);
      return to;
    } catch (e) {
      this.fail("cannot move the submitted jobs aside", e);
      return null;
    }
  }

  private fail(what: string, e: unknown): void {
    if (this.failed) return;
    this.failed = true;
    this.warn(`state: ${what} (${e instanceof Error ? e.message : String(e)}); submitted jobs are kept in memory only`);
  }

  private write(): void {
    if (this.failed) return;
    try {
      mkdirSync(this.stateDir, { recursive: true });
      const tmp = this.path(TMP);
      writeSynced(tmp, JSON.stringify({ v: 1, jobs: this.entries }) + "\n");
      renameSync(tmp, this.path());
      syncDirectory(this.stateDir);
    } catch (e) {
      this.fail("cannot write the submitted jobs", e);
    }
  }
}
