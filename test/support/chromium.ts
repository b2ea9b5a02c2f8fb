import { existsSync } from "node:fs";

/**
 * Flags for headless Chromium with WebGPU on SwiftShader (a CPU Vulkan), with
 * the background services that would try to reach the internet turned off.
 */
export const CHROMIUM_ARGS: readonly string[] = [
  "--enable-unsafe-webgpu",
  "--use-webgpu-adapter=swiftshader",
  "--no-sandbox",
  "--disable-background-networking",
  "--disable-component-update",
  "--disable-sync",
  "--no-first-run",
  "--disable-quic",
  // Keep timers and rAF of background pages running at full rate: several
  // volunteers share one Chromium in tests and the harness.
  "--disable-background-timer-throttling",
  "--disable-renderer-backgrounding",
  "--disable-backgrounding-occluded-windows",
];

/**
 * The Chromium to drive: `CHROMIUM_PATH`, else Debian's `/usr/bin/chromium`,
 * else `undefined` (Playwright's own download, for machines with internet).
 */
export function chromiumExecutable(): string | undefined {
  const fromEnv = process.env["CHROMIUM_PATH"];
  if (fromEnv !== undefined && fromEnv !== "") {
    if (!existsSync(fromEnv)) throw new Error(`CHROMIUM_PATH=${fromEnv} does not exist`);
    return fromEnv;
  }
  if (existsSync("/usr/bin/chromium")) return "/usr/bin/chromium";
  return undefined;
}
