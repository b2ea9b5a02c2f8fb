/**
 * Heavy fault-injection runs (`npm run test:faults`): browser runs too long
 * for every CI run (several full jobs each). Same browser settings as the
 * end-to-end suite; specs in test/faults/.
 */
import { defineConfig } from "@playwright/test";
import base from "./playwright.config.ts";

export default defineConfig({
  ...base,
  testDir: "test/faults",
  timeout: 15 * 60_000,
});
