/**
 * Runtime schema of `GET /api/status` as the console reads it (see
 * INTERFACE.md). Pure: no DOM, safe to import from unit tests.
 *
 * The schema checks structure and types strictly but is lenient where the
 * coordinator may reasonably grow: state and kind fields are plain strings
 * (known values get their own styling, unknown ones are shown as they are),
 * measurements a worker has not reported yet may be null or absent, and
 * unknown extra fields are ignored. A status that fails the schema is shown as
 * an error instead of being half-rendered.
 */
import { z } from "zod";

const finite = z.number().refine(Number.isFinite, "expected a finite number");
/** A measurement that may not exist yet (no report from the worker so far). */
const maybeNumber = finite.nullable().optional();
const maybeString = z.string().nullable().optional();

/** `[clock, value]` pairs, as the charts plot them. */
const pairs = z.array(z.tuple([finite, finite]));

export const DigestSchema = z.union([
  z.object({ sum: finite, l2: finite, proj: z.array(finite) }),
  // A fixed-point replica may be digested by a plain hash instead.
  z.string(),
]);

export const WorkerSchema = z.object({
  id: z.string(),
  state: z.string(),
  clock: finite,
  name: maybeString,
  stepsPerSec: maybeNumber,
  batch: maybeNumber,
  examplesPerSec: maybeNumber,
  lastSeenMs: maybeNumber,
  backend: maybeString,
  kernel: maybeString,
  adapter: maybeString,
  digest: DigestSchema.nullable().optional(),
  /** Bytes this worker received from / sent to its peers (DataChannels). */
  bytesIn: maybeNumber,
  bytesOut: maybeNumber,
  /** Peers it has an open link to. */
  peers: maybeNumber,
  /** Examples it processed so far. */
  examples: maybeNumber,
  /** The volunteer paused it from their page. */
  paused: z.boolean().nullable().optional(),
  /**
   * Cumulative counts of peer updates this worker applied, by staleness
   * (index k: k clocks stale; the last bucket is "that many or more").
   */
  stalenessHist: z.array(finite).nullable().optional(),
});

export const EventSchema = z.object({
  t: finite,
  kind: z.string(),
  worker: maybeString,
  /** Optional human-readable detail (e.g. why a worker was dropped). */
  detail: maybeString,
});

export const StatusSchema = z.object({
  job: z.object({
    name: z.string(),
    parameters: finite,
    state: z.string(),
  }),
  consistency: z.object({
    mode: z.string(),
    staleness: finite,
  }),
  view: z.object({
    epoch: finite,
    active: z.array(z.string()).optional().default([]),
  }),
  clock: z.object({ min: finite.nullable(), max: finite.nullable() }),
  workers: z.array(WorkerSchema),
  metrics: z
    .object({
      trainLoss: pairs.optional().default([]),
      test: z.object({ name: z.string(), series: pairs }).nullable().optional(),
    })
    .optional()
    .default({ trainLoss: [] }),
  events: z.array(EventSchema).optional().default([]),
  /** Examples processed by every worker so far. */
  examples: maybeNumber,
  /** Optional: the URL volunteers should open (default: this page's origin + "/"). */
  volunteerUrl: z.string().optional(),
});

export type Status = z.infer<typeof StatusSchema>;
export type WorkerStatus = z.infer<typeof WorkerSchema>;
export type GridEvent = z.infer<typeof EventSchema>;
export type Digest = z.infer<typeof DigestSchema>;

export type ParseResult = { ok: true; status: Status } | { ok: false; error: string };

/** Validates a decoded JSON value; never throws. */
export function parseStatus(raw: unknown): ParseResult {
  const result = StatusSchema.safeParse(raw);
  if (result.success) return { ok: true, status: result.data };
  return { ok: false, error: describeIssues(result.error.issues) };
}

/** At most three issues, each as `path: message`, on one line. */
function describeIssues(issues: z.ZodError["issues"]): string {
  const shown = issues.slice(0, 3).map((issue) => {
    const path = issue.path.length > 0 ? issue.path.map(String).join(".") : "(root)";
    return `${path}: ${issue.message}`;
  });
  const more = issues.length > 3 ? ` (and ${issues.length - 3} more)` : "";
  return shown.join("; ") + more;
}
