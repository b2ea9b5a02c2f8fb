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
 *
 * The log is read as untrusted input: each line is parsed with a schema; a
 * torn last line (a crash in the middle of a write) and any unreadable line
 * are skipped and reported, never fatal.
 */
import { z } from "zod";

const int = z.number().int().min(0).max(Number.MAX_SAFE_INTEGER);
const finite = z.number().finite();
const text = z.string().max(400);

export const stateRecordSchema = z.discriminatedUnion("k", [
  z.object({ k: z.literal("start"), t: int, incarnation: int, job: z.string().max(64), parameters: int, seed: int }),
  z.object({ k: z.literal("event"), t: int, kind: z.string().max(40), worker: text.optional(), detail: text.optional() }),
  z.object({ k: z.literal("view"), e: int }),
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
  readonly events: ResumeEvent[];
  readonly trainLoss: [number, number][];
  readonly testSeries: [number, number][];
  /** The last few checkpoint records, oldest first. */
  readonly checkpoints: CheckpointRecord[];
  /** Lines that could not be read (what and where), for the coordinator's log. */
  readonly notes: string[];
}

/** Keep the newest `max` entries. */
function tail<T>(arr: T[], max: number): T[] {
  return arr.length > max ? arr.slice(arr.length - max) : arr;
}

/**
 * Replay the log text. Text after the last newline is a line cut short by a
 * crash: it is skipped (and reported in `notes`).
 */
export function replayLog(textIn: string, limits = { events: 500, series: 2000 }): ResumeLog {
  const notes: string[] = [];
  const lines = textIn.split("\n");
  const last = lines.pop() ?? "";
  if (last !== "") notes.push(`skipped a torn last line of ${last.length} bytes (a write cut short by a crash)`);
  let incarnation = 0;
  let job: string | null = null;
  let parameters: number | null = null;
  let seed: number | null = null;
  let epoch = 0;
  let nextWorker = 1;
  let done = false;
  let events: ResumeEvent[] = [];
  let trainLoss: [number, number][] = [];
  let testSeries: [number, number][] = [];
  const checkpoints: CheckpointRecord[] = [];
  let bad = 0;
  let firstBad = 0;
  lines.forEach((line, i) => {
    if (line.trim() === "") return;
    let raw: unknown;
    try {
      raw = JSON.parse(line);
    } catch {
      raw = undefined;
    }
    const r = stateRecordSchema.safeParse(raw);
    if (!r.success) {
      if (bad++ === 0) firstBad = i + 1;
      return;
    }
    const rec = r.data;
    switch (rec.k) {
      case "start":
        incarnation = Math.max(incarnation, rec.incarnation);
        job = rec.job;
        parameters = rec.parameters;
        seed = rec.seed;
        return;
      case "event": {
        events.push({ t: rec.t, kind: rec.kind, ...(rec.worker ? { worker: rec.worker } : {}), ...(rec.detail ? { detail: rec.detail } : {}) });
        if (events.length > 2 * limits.events) events = tail(events, limits.events);
        const m = rec.worker ? /^w([0-9]{1,9})$/.exec(rec.worker) : null;
        if (m) nextWorker = Math.max(nextWorker, Number(m[1]) + 1);
        if (rec.kind === "done") done = true;
        return;
      }
      case "view":
        epoch = Math.max(epoch, rec.e);
        return;
      case "loss":
        trainLoss.push([rec.c, rec.v]);
        if (trainLoss.length > 2 * limits.series) trainLoss = tail(trainLoss, limits.series);
        return;
      case "test":
        testSeries.push([rec.c, rec.v]);
        if (testSeries.length > 2 * limits.series) testSeries = tail(testSeries, limits.series);
        return;
      case "ckpt":
        checkpoints.push(rec);
        if (checkpoints.length > 4) checkpoints.shift();
        return;
    }
  });
  if (bad > 0) notes.push(`skipped ${bad} unreadable line${bad === 1 ? "" : "s"} of the log (first: line ${firstBad})`);
  return {
    incarnation,
    job,
    parameters,
    seed,
    epoch,
    nextWorker,
    done,
    events: tail(events, limits.events),
    trainLoss: tail(trainLoss, limits.series),
    testSeries: tail(testSeries, limits.series),
    checkpoints,
    notes,
  };
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
  readonly events: ResumeEvent[];
  readonly trainLoss: [number, number][];
  readonly testSeries: [number, number][];
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
    events: log.events,
    trainLoss: log.trainLoss.filter(([c]) => c <= upTo),
    testSeries: log.testSeries.filter(([c]) => c <= upTo),
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
