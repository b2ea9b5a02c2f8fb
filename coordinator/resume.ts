/**
 * What the coordinator's append-only state log holds and how a restart reads
 * it back (pure, no I/O; coordinator/state.ts does the files).
 *
 * The log (`events.jsonl`) is one JSON record per line, each tagged by `k`:
 *
 * | k       | written when                         | fields                                        |
 * | ------- | ------------------------------------ | --------------------------------------------- |
 * | `start` | the coordinator starts (incarnation) | `t, incarnation, job, parameters, seed`       |
 * | `event` | every job event (joined, left, …)    | `t, kind, worker?, detail?`                   |
 * | `view`  | every view                           | `e` (the view epoch)                          |
 * | `loss`  | the mean training loss at a new clock | `c, v`                                       |
 * | `test`  | a test evaluation                    | `c, v`                                        |
 * | `ckpt`  | a model checkpoint is durable        | `t, clock, incarnation, examples, coverage, epochsDone` |
 * | `meta`  | first line of a compacted log        | `epoch, nextWorker, done`                     |
 * | `control` | the organizer pauses or resumes the job | `paused`                                   |
 * | `lineage` | a credential is issued, or its volunteer is dropped | `h` (SHA-256 of the credential), `first`, `drops`, `gone?` (the hash it replaces) |
 *
 * Compaction (`compactedRecords`) rewrites the log as the few records that
 * replay to the same `ResumeLog`: one `start`, one `meta` (what the dropped
 * records contributed to the view epoch, the worker numbering and `done`),
 * then the retained events, series and checkpoint records.
 *
 * The log is read as untrusted input: each line is parsed with a schema; a
 * torn last line (a crash in the middle of a write) and any unreadable line
 * are skipped and reported, never fatal.
 */
import { z } from "zod";

const int = z.number().int().min(0).max(Number.MAX_SAFE_INTEGER);
const finite = z.number().finite();
const text = z.string().max(400);
const hash = z.string().regex(/^[0-9a-f]{64}$/);

export const stateRecordSchema = z.discriminatedUnion("k", [
  z.object({ k: z.literal("start"), t: int, incarnation: int, job: z.string().max(64), parameters: int, seed: int }),
  z.object({ k: z.literal("event"), t: int, kind: z.string().max(40), worker: text.optional(), detail: text.optional() }),
  z.object({ k: z.literal("view"), e: int }),
  z.object({ k: z.literal("meta"), epoch: int, nextWorker: int, done: z.boolean() }),
  z.object({ k: z.literal("control"), paused: z.boolean() }),
  z.object({ k: z.literal("lineage"), h: hash, first: z.string().max(20), drops: int, gone: hash.optional() }),
  z.object({ k: z.literal("loss"), c: int, v: finite }),
  z.object({ k: z.literal("test"), c: int, v: finite }),
  z.object({
    k: z.literal("ckpt"),
    t: int,
    clock: int,
    incarnation: int,
    examples: int,
    /** Epoch coverage at the checkpoint: the shards done in each open epoch. */
    coverage: z.array(z.array(int).max(100_000)).max(1000),
    epochsDone: z.array(z.object({ epoch: int, t: int })).max(100_000),
  }),
]);
export type StateRecord = z.infer<typeof stateRecordSchema>;
export type CheckpointRecord = Extract<StateRecord, { k: "ckpt" }>;

export interface ResumeEvent {
  readonly t: number;
  readonly kind: string;
  readonly worker?: string;
  readonly detail?: string;
}

/** What a restarted coordinator takes over from the log (the model comes from the checkpoint file). */
export interface ResumeLog {
  /** Incarnation of the last run that wrote the log (0: empty log). */
  readonly incarnation: number;
  readonly job: string | null;
  readonly parameters: number | null;
  readonly seed: number | null;
  /** Highest view epoch any earlier run published. */
  readonly epoch: number;
  /** Next free worker number (ids are never reused across restarts). */
  readonly nextWorker: number;
  readonly done: boolean;
  /** The organizer's last word was pause (the job stays paused after a restart). */
  readonly paused: boolean;
  readonly events: ResumeEvent[];
  readonly trainLoss: [number, number][];
  readonly testSeries: [number, number][];
  /** The last few checkpoint records, oldest first. */
  readonly checkpoints: CheckpointRecord[];
  /**
   * Volunteers a restart still recognizes (their page presents its credential
   * when it rejoins): credential hash → the worker id it first joined as and
   * its straggler drops; the newest `LINEAGES_KEPT`, oldest first.
   */
  readonly lineages: [string, LineageRecord][];
  /** Lines that could not be read (what and where), for the coordinator's log. */
  readonly notes: string[];
}

/** Keep the newest `max` entries. */
function tail<T>(arr: T[], max: number): T[] {
  return arr.length > max ? arr.slice(arr.length - max) : arr;
}

export interface LineageRecord {
  readonly first: string;
  readonly drops: number;
}

/** Credentials a restart remembers (the newest). */
export const LINEAGES_KEPT = 10_000;

/** How much history a replay keeps (the newest of each). */
export interface ReplayLimits {
  readonly events: number;
  readonly series: number;
}
const DEFAULT_LIMITS: ReplayLimits = { events: 500, series: 2000 };

/**
 * The log read record by record. The coordinator's store feeds it the records
 * it appends too, so the state a restart would read is known at any time
 * without reading the file (compaction writes it out).
 */
export class LogReplay {
  private incarnation = 0;
  private job: string | null = null;
  private parameters: number | null = null;
  private seed: number | null = null;
  private epoch = 0;
  private nextWorker = 1;
  private done = false;
  private paused = false;
  private events: ResumeEvent[] = [];
  private trainLoss: [number, number][] = [];
  private testSeries: [number, number][] = [];
  private checkpoints: CheckpointRecord[] = [];
  private readonly lineages = new Map<string, LineageRecord>();
  private bad = 0;
  private firstBad = 0;
  private lines = 0;
  private readonly notes: string[] = [];

  constructor(private readonly limits: ReplayLimits = DEFAULT_LIMITS) {}

  /** One line of the log file (without its newline); an unreadable one is counted, not fatal. */
  line(text: string): void {
    this.lines++;
    if (text.trim() === "") return;
    let raw: unknown;
    try {
      raw = JSON.parse(text);
    } catch {
      raw = undefined;
    }
    const r = stateRecordSchema.safeParse(raw);
    if (!r.success) {
      if (this.bad++ === 0) this.firstBad = this.lines;
      return;
    }
    this.add(r.data);
  }

  /** Text after the log's last newline: a write cut short by a crash. */
  torn(text: string): void {
    if (text !== "") this.notes.push(`skipped a torn last line of ${text.length} bytes (a write cut short by a crash)`);
  }

  add(rec: StateRecord): void {
    const { limits } = this;
    switch (rec.k) {
      case "start":
        this.incarnation = Math.max(this.incarnation, rec.incarnation);
        this.job = rec.job;
        this.parameters = rec.parameters;
        this.seed = rec.seed;
        return;
      case "meta":
        this.epoch = Math.max(this.epoch, rec.epoch);
        this.nextWorker = Math.max(this.nextWorker, rec.nextWorker);
        this.done ||= rec.done;
        return;
      case "event": {
        this.events.push({ t: rec.t, kind: rec.kind, ...(rec.worker ? { worker: rec.worker } : {}), ...(rec.detail ? { detail: rec.detail } : {}) });
        if (this.events.length > 2 * limits.events) this.events = tail(this.events, limits.events);
        const m = rec.worker ? /^w([0-9]{1,9})$/.exec(rec.worker) : null;
        if (m) this.nextWorker = Math.max(this.nextWorker, Number(m[1]) + 1);
        if (rec.kind === "done") this.done = true;
        return;
      }
      case "view":
        this.epoch = Math.max(this.epoch, rec.e);
        return;
      case "control":
        this.paused = rec.paused;
        return;
      case "loss":
        this.trainLoss.push([rec.c, rec.v]);
        if (this.trainLoss.length > 2 * limits.series) this.trainLoss = tail(this.trainLoss, limits.series);
        return;
      case "test":
        this.testSeries.push([rec.c, rec.v]);
        if (this.testSeries.length > 2 * limits.series) this.testSeries = tail(this.testSeries, limits.series);
        return;
      case "ckpt":
        this.checkpoints.push(rec);
        if (this.checkpoints.length > 4) this.checkpoints.shift();
        return;
      case "lineage":
        if (rec.gone !== undefined) this.lineages.delete(rec.gone);
        this.lineages.delete(rec.h);
        this.lineages.set(rec.h, { first: rec.first, drops: rec.drops });
        if (this.lineages.size > LINEAGES_KEPT) this.lineages.delete(this.lineages.keys().next().value as string);
        return;
    }
  }

  result(): ResumeLog {
    const notes = [...this.notes];
    if (this.bad > 0) notes.push(`skipped ${this.bad} unreadable line${this.bad === 1 ? "" : "s"} of the log (first: line ${this.firstBad})`);
    return {
      incarnation: this.incarnation,
      job: this.job,
      parameters: this.parameters,
      seed: this.seed,
      epoch: this.epoch,
      nextWorker: this.nextWorker,
      done: this.done,
      paused: this.paused,
      events: tail(this.events, this.limits.events),
      trainLoss: tail(this.trainLoss, this.limits.series),
      testSeries: tail(this.testSeries, this.limits.series),
      checkpoints: [...this.checkpoints],
      lineages: [...this.lineages],
      notes,
    };
  }
}

/**
 * Replay the log text. Text after the last newline is a line cut short by a
 * crash: it is skipped (and reported in `notes`).
 */
export function replayLog(textIn: string, limits: ReplayLimits = DEFAULT_LIMITS): ResumeLog {
  return replayText(textIn, limits).result();
}

/** The replay of a log's text, to go on with the records appended after it. */
export function replayText(textIn: string, limits: ReplayLimits = DEFAULT_LIMITS): LogReplay {
  const lines = textIn.split("\n");
  const last = lines.pop() ?? "";
  const r = new LogReplay(limits);
  r.torn(last);
  for (const line of lines) r.line(line);
  return r;
}

/**
 * The records of a compacted log: replayed, they give the same `ResumeLog` as
 * the log they replace (its notes aside). Null when the log never started
 * (nothing to keep).
 */
export function compactedRecords(log: ResumeLog, t: number): StateRecord[] | null {
  if (log.job === null || log.parameters === null || log.seed === null) return null;
  const out: StateRecord[] = [
    { k: "start", t, incarnation: log.incarnation, job: log.job, parameters: log.parameters, seed: log.seed },
    { k: "meta", epoch: log.epoch, nextWorker: log.nextWorker, done: log.done },
  ];
  if (log.paused) out.push({ k: "control", paused: true });
  for (const e of log.events) out.push({ k: "event", ...e });
  for (const [c, v] of log.trainLoss) out.push({ k: "loss", c, v });
  for (const [c, v] of log.testSeries) out.push({ k: "test", c, v });
  out.push(...log.checkpoints);
  for (const [h, l] of log.lineages) out.push({ k: "lineage", h, first: l.first, drops: l.drops });
  return out;
}

/**
 * The state a restarted job starts from: the log's history plus the model of
 * the newest good checkpoint file. Metrics beyond the checkpoint's clock are
 * dropped (the model that produced them was lost with the crash).
 */
export interface ResumeState {
  /** This run's incarnation (the log's + 1). */
  readonly incarnation: number;
  readonly epoch: number;
  readonly nextWorker: number;
  /** Paused by the organizer when the earlier incarnation ended. */
  readonly paused: boolean;
  readonly events: ResumeEvent[];
  readonly trainLoss: [number, number][];
  readonly testSeries: [number, number][];
  /** Volunteers of earlier incarnations, by credential hash (see ResumeLog). */
  readonly lineages: [string, LineageRecord][];
  /** The model every worker of this incarnation starts from, or null (start from the job's initial parameters). */
  readonly checkpoint: {
    readonly clock: number;
    readonly params: Float32Array;
    readonly file: string;
    readonly examples: number;
    readonly coverage: number[][];
    readonly epochsDone: { epoch: number; t: number }[];
  } | null;
}

export function resumeState(log: ResumeLog, model: { clock: number; params: Float32Array; file: string } | null): ResumeState {
  // The checkpoint record of this file: the newest one with its clock.
  const rec = model ? [...log.checkpoints].reverse().find((c) => c.clock === model.clock) ?? null : null;
  const upTo = model?.clock ?? 0;
  return {
    incarnation: log.incarnation + 1,
    epoch: log.epoch,
    nextWorker: log.nextWorker,
    paused: log.paused,
    events: log.events,
    trainLoss: log.trainLoss.filter(([c]) => c <= upTo),
    testSeries: log.testSeries.filter(([c]) => c <= upTo),
    lineages: log.lineages,
    checkpoint: model
      ? {
          clock: model.clock,
          params: model.params,
          file: model.file,
          examples: rec?.examples ?? 0,
          coverage: rec?.coverage ?? [],
          epochsDone: rec?.epochsDone ?? [],
        }
      : null,
  };
}
