import { defineConfig } from "@playwright/test";
import { CHROMIUM_ARGS, chromiumExecutable } from "./test/support/chromium.ts";

const executablePath = chromiumExecutable();

export default defineConfig({
  testDir: "test/e2e",
  testMatch: "**/*.spec.ts",
  // Two cores: browsers of one test already fill the machine.
  workers: 1,
  fullyParallel: false,
  timeout: 5 * 60_000,
  retries: 0,
  reporter: process.env["CI"] ? [["list"]] : [["list"]],
  use: {
    browserName: "chromium",
    headless: true,
    launchOptions: {
      args: [...CHROMIUM_ARGS],
      ...(executablePath !== undefined ? { executablePath } : {}),
    },
  },
});
