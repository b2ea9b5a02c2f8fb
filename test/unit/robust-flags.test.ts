/**
 * Robust aggregation as a coordinator setting: strict flags (one line, exit
 * 2), the welcome that carries it to the pages (validated like every control
 * message), the status, and the consistency modes it refuses.
 */
import { describe, expect, it } from "vitest";
import { spawnSync } from "node:child_process";
import { join, resolve } from "node:path";
import { parseCoordinatorArgs, UsageError } from "../../coordinator/cli.ts";
import { JobRun } from "../../coordinator/job.ts";
import { parseServerMessage, type ServerMessage } from "../../coordinator/protocol.ts";
import { tinyJobOptions } from "../support/tiny-run.ts";

const ROOT = resolve(import.meta.dirname, "..", "..");

describe("--aggregation and --clip", () => {
  it("default to mean without clipping; a robust rule clips at the median norm unless told", () => {
    expect(parseCoordinatorArgs([]).aggregation).toEqual({ rule: { kind: "mean" }, clip: { kind: "off" } });
    expect(parseCoordinatorArgs(["--aggregation", "trimmed:0.2"]).aggregation).toEqual({ rule: { kind: "trimmed", beta: 0.2 }, clip: { kind: "auto" } });
    expect(parseCoordinatorArgs(["--aggregation", "median", "--clip", "0.5"]).aggregation).toEqual({ rule: { kind: "median" }, clip: { kind: "fixed", bound: 0.5 } });
    expect(parseCoordinatorArgs(["--aggregation", "median", "--clip", "off"]).aggregation.clip).toEqual({ kind: "off" });
  });

  it("refuse bad values and combinations that cannot work", () => {
    for (const argv of [
      ["--aggregation", "krum"],
      ["--aggregation", "trimmed:0.5"],
      ["--aggregation", "trimmed:"],
      ["--aggregation", "median", "--clip", "-1"],
      ["--aggregation", "median", "--clip", "big"],
      ["--clip", "1"],
      ["--aggregation", "mean", "--clip", "auto"],
      ["--aggregation", "median", "--consistency", "asp"],
      ["--aggregation", "median", "--job", "mf"],
    ]) {
      expect(() => parseCoordinatorArgs(argv), argv.join(" ")).toThrow(UsageError);
    }
    const r = spawnSync(join(ROOT, "node_modules/.bin/tsx"), ["coordinator/main.ts", "--aggregation", "trimmed:0.7"], { cwd: ROOT, encoding: "utf8", timeout: 30_000 });
    expect(r.status).toBe(2);
    expect(r.stderr.trim().split("\n")).toEqual(['grid: --aggregation/--clip: trimmed wants a fraction β with 0 < β < 0.5, got "0.7"']);
  });
});

describe("the job with a robust rule", () => {
  const joinMsg = { type: "join", backend: "cpu", kernel: "k", adapter: "a" } as const;

  it("tells the pages in the welcome, shows it in the status, and refuses asp", () => {
    const run = new JobRun(tinyJobOptions({ aggregation: { rule: { kind: "trimmed", beta: 0.2 }, clip: { kind: "auto" } } }));
    const sent: ServerMessage[] = [];
    run.join(joinMsg, (m) => sent.push(m));
    const welcome = sent.find((m) => m.type === "welcome");
    const parsed = parseServerMessage(JSON.stringify(welcome));
    expect(parsed.ok).toBe(true);
    expect(parsed.ok && parsed.value.type === "welcome" && [parsed.value.job.aggregation, parsed.value.job.clip]).toEqual(["trimmed:0.2", "auto"]);
    expect(run.status()["aggregation"]).toEqual({ rule: "trimmed:0.2", clip: "auto" });
    expect(() => run.setConsistency({ mode: "asp", staleness: 0 })).toThrow(RangeError);
    expect(run.consistency.mode).toBe("ssp");
    run.setConsistency({ mode: "bsp", staleness: 0 });
    expect(run.consistency.mode).toBe("bsp");
  });

  it("leaves the welcome of a mean job as it was, and pages refuse a welcome that clips a mean", () => {
    const run = new JobRun(tinyJobOptions());
    const sent: ServerMessage[] = [];
    run.join(joinMsg, (m) => sent.push(m));
    const welcome = sent.find((m) => m.type === "welcome");
    expect(welcome?.type === "welcome" && "aggregation" in welcome.job).toBe(false);
    const tampered = JSON.parse(JSON.stringify(welcome)) as { job: Record<string, unknown> };
    tampered.job["clip"] = "auto";
    expect(parseServerMessage(JSON.stringify(tampered)).ok).toBe(false);
    tampered.job["aggregation"] = "trimmed:0.9";
    expect(parseServerMessage(JSON.stringify(tampered)).ok).toBe(false);
  });
});
