/**
 * One coordinator process per test: `start` launches it, and after each test
 * it is stopped (its output's tail printed when the test failed).
 */
import { test } from "@playwright/test";
import { startCoordinatorProcess, type CoordinatorProcess } from "./coordinator.ts";

export function coordinatorPerTest(): { start(flags: string[]): Promise<CoordinatorProcess> } {
  let current: CoordinatorProcess | null = null;
  test.afterEach(async ({}, testInfo) => {
    if (testInfo.status !== testInfo.expectedStatus && current) console.log(current.output().split("\n").slice(-40).join("\n"));
    await current?.stop();
    current = null;
  });
  return {
    async start(flags) {
      current = await startCoordinatorProcess(flags);
      return current;
    },
  };
}
