import { defineConfig } from "vitest/config";

// Unit tests only: Playwright owns test/e2e.
export default defineConfig({
  test: {
    include: ["test/unit/**/*.test.ts"],
    testTimeout: 30_000,
  },
});
