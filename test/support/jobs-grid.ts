/**
 * A coordinator running several jobs for the e2e tests of a grid: the jobs
 * written to a jobs file, `GET /api/jobs`, and what to print when a test fails.
 */
import { mkdtempSync, writeFileSync } from "node:fs";
import { tmpdir } from "node:os";
import { join } from "node:path";
import type { TestInfo } from "@playwright/test";
import { startCoordinatorProcess, type CoordinatorProcess } from "./coordinator.ts";

/** Start a coordinator with `--jobs` (these entries, in a fresh file) and the other flags `args`. */
export function startJobsCoordinator(entries: readonly unknown[], args: readonly string[]): Promise<CoordinatorProcess> {
  const file = join(mkdtempSync(join(tmpdir(), "grid-jobs-e2e-")), "jobs.json");
  writeFileSync(file, JSON.stringify(entries));
  return startCoordinatorProcess(["--jobs", file, ...args]);
}

/** `GET /api/jobs`, typed by the caller. */
export async function fetchJobs<T>(coord: CoordinatorProcess): Promise<T> {
  return (await (await fetch(`${coord.url}/api/jobs`)).json()) as T;
}

/**
 * After a failed test: the coordinator's output (attached whole, its tail
 * printed), the volunteers as the grid lists them, and `pageLines` (the
 * pages' console, when the test keeps it).
 */
export async function reportJobsFailure(testInfo: TestInfo, coord: CoordinatorProcess | undefined, pageLines: readonly string[] = []): Promise<void> {
  if (testInfo.status === testInfo.expectedStatus || !coord) return;
  await testInfo.attach("coordinator output", { body: coord.output(), contentType: "text/plain" });
  console.log(coord.output().split("\n").slice(-60).join("\n"));
  console.log(JSON.stringify((await fetchJobs<{ volunteers?: unknown }>(coord).catch(() => null))?.volunteers ?? null));
  if (pageLines.length > 0) console.log(pageLines.slice(-150).join("\n"));
}
