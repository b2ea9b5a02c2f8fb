/**
 * The console's jobs panel (several jobs on one grid, coordinator/jobs.ts):
 * each job's share of the volunteers' throughput (target from the weights,
 * actual from measured rates), workers, progress, and a timeline of moves.
 * Polls `GET /api/jobs` every 2 s; hidden while the grid runs a single job.
 */
import { z } from "zod";

const finite = z.number().finite();
const jobsListSchema = z.object({
  jobs: z
    .array(
      z.object({
        id: z.string().max(64),
        weight: finite,
        minWorkers: finite,
        maxWorkers: finite,
        cancelled: z.boolean(),
        share: z.object({ target: finite, actual: finite }),
        volunteers: finite,
        job: z.object({ name: z.string().max(64), state: z.string().max(32) }),
        examples: finite.optional(),
        target: z.object({ accuracy: finite }).partial().optional(),
        metrics: z.object({ test: z.object({ series: z.array(z.tuple([finite, finite])).max(100_000) }) }).optional(),
      }),
    )
    .max(256),
  fairnessError: finite,
  rebalanceMs: finite,
  moves: z
    .array(z.object({ t: finite, volunteer: z.string().max(32), from: z.string().max(64).nullable(), to: z.string().max(64), reason: z.string().max(400) }))
    .max(1000),
});
export type JobsList = z.infer<typeof jobsListSchema>;

export function parseJobsList(raw: unknown): JobsList | null {
  const r = jobsListSchema.safeParse(raw);
  return r.success ? r.data : null;
}

const pct = (x: number): string => `${Math.round(x * 100)}%`;

/** One table row per job: id, kind, weight, state, share target / actual, workers, progress. */
export function jobRows(list: JobsList): string[][] {
  return list.jobs.map((j) => {
    const series = j.metrics?.test.series ?? [];
    const best = series.length > 0 ? Math.max(...series.map(([, v]) => v)) : null;
    const goal = j.target?.accuracy;
    const progress = `${best === null ? "–" : best.toFixed(3)}${goal !== undefined ? ` of ${goal}` : ""}, ${(j.examples ?? 0).toLocaleString("en-US")} examples`;
    return [j.id, j.job.name, String(j.weight), j.cancelled ? "cancelled" : j.job.state, pct(j.share.target), pct(j.share.actual), String(j.volunteers), progress];
  });
}

/** The newest moves first: time, volunteer, from → to, why. */
export function moveLines(list: JobsList, max = 30): string[] {
  return list.moves
    .slice(-max)
    .reverse()
    .map((m) => `${new Date(m.t).toLocaleTimeString()} ${m.volunteer}: ${m.from ?? "no job"} → ${m.to} (${m.reason})`);
}

export function startJobsPanel(doc: Document, everyMs = 2000): void {
  const panel = doc.getElementById("jobs-panel");
  const body = doc.querySelector<HTMLElement>("#jobs tbody");
  const moves = doc.getElementById("moves");
  const summary = doc.getElementById("jobs-summary");
  if (!panel || !body || !moves || !summary) return;
  const render = (list: JobsList): void => {
    panel.hidden = list.jobs.length < 2 && list.moves.length === 0;
    if (panel.hidden) return;
    body.replaceChildren(
      ...jobRows(list).map((cells) => {
        const tr = doc.createElement("tr");
        for (const c of cells) {
          const td = doc.createElement("td");
          td.textContent = c;
          tr.append(td);
        }
        return tr;
      }),
    );
    summary.textContent = `${list.jobs.length} jobs; fairness error ${pct(list.fairnessError)} (largest gap between a job's share of throughput and its weight's share); rebalanced at least every ${Math.round(list.rebalanceMs / 1000)} s.`;
    const lines = moveLines(list);
    moves.replaceChildren(
      ...(lines.length > 0 ? lines : ["No moves yet."]).map((l) => {
        const li = doc.createElement("li");
        li.textContent = l;
        return li;
      }),
    );
  };
  const poll = async (): Promise<void> => {
    try {
      const r = await fetch("/api/jobs", { cache: "no-store", signal: AbortSignal.timeout(5000) });
      const list = r.ok ? parseJobsList(await r.json()) : null;
      if (list) render(list);
    } catch {
      // The status stream shows when the coordinator is unreachable.
    }
  };
  void poll();
  setInterval(() => void poll(), everyMs);
}
