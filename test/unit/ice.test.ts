/**
 * `--ice-servers`, `--ice-transport` and `--mesh-max`: what a valid value
 * becomes in the pages' `welcome`, and that every bad value is refused with one
 * line (the coordinator exits 2) instead of reaching a browser.
 */
import { describe, expect, it } from "vitest";
import { spawnSync } from "node:child_process";
import { join, resolve } from "node:path";
import { parseCoordinatorArgs, UsageError } from "../../coordinator/cli.ts";
import { parseServerMessage, welcomeSchema } from "../../coordinator/protocol.ts";

const ROOT = resolve(import.meta.dirname, "..", "..");

describe("--ice-servers and --ice-transport", () => {
  it("takes a URL list with credentials in the user part", () => {
    const cfg = parseCoordinatorArgs(["--ice-servers", "stun:127.0.0.1:3478, turn:grid:s%40cret@127.0.0.1:3478?transport=udp", "--ice-transport", "relay"]);
    expect(cfg.ice).toEqual({
      iceServers: [
        { urls: "stun:127.0.0.1:3478" },
        { urls: "turn:127.0.0.1:3478?transport=udp", username: "grid", credential: "s@cret" },
      ],
      iceTransportPolicy: "relay",
    });
  });

  it("takes a JSON array as RTCPeerConnection takes it", () => {
    const json = '[{"urls":["turn:turn.example.org:3478","turns:turn.example.org:5349?transport=tcp"],"username":"u","credential":"p"}]';
    const cfg = parseCoordinatorArgs(["--ice-servers", json]);
    expect(cfg.ice.iceServers).toEqual([{ urls: ["turn:turn.example.org:3478", "turns:turn.example.org:5349?transport=tcp"], username: "u", credential: "p" }]);
    expect(cfg.ice.iceTransportPolicy).toBe("all");
  });

  it("defaults to no servers, all candidates, and a mesh up to 16", () => {
    const cfg = parseCoordinatorArgs([]);
    expect(cfg.ice).toEqual({ iceServers: [], iceTransportPolicy: "all" });
    expect(cfg.meshMax).toBe(16);
    expect(parseCoordinatorArgs(["--mesh-max", "4"]).meshMax).toBe(4);
  });

  it("refuses bad values with one line", () => {
    const bad: string[][] = [
      ["--ice-servers", ""],
      ["--ice-servers", "http://example.org"],
      ["--ice-servers", "turn:127.0.0.1:3478"], // TURN without credentials
      ["--ice-servers", "[{]"],
      ["--ice-servers", '{"urls":"stun:a"}'],
      ["--ice-servers", '[{"urls":"stun:a","extra":1}]'],
      ["--ice-servers", '[{"urls":"stun:a b"}]'],
      ["--ice-servers", '[{"urls":[]}]'],
      ["--ice-servers", '[{"urls":"turn:a","username":"u"}]'],
      ["--ice-servers", JSON.stringify(Array.from({ length: 17 }, () => ({ urls: "stun:a" })))],
      ["--ice-transport", "udp"],
      ["--ice-transport", "relay"], // relay without a TURN server
      ["--ice-servers", "stun:a", "--ice-transport", "relay"],
      ["--mesh-max", "-1"],
      ["--mesh-max", "x"],
    ];
    for (const argv of bad) {
      let err: unknown = null;
      try {
        parseCoordinatorArgs(argv);
      } catch (e) {
        err = e;
      }
      expect(err, argv.join(" ")).toBeInstanceOf(UsageError);
      expect((err as Error).message.split("\n")).toHaveLength(1);
    }
  });

  it("the coordinator exits 2 on a bad --ice-servers", () => {
    const r = spawnSync(join(ROOT, "node_modules/.bin/tsx"), ["coordinator/main.ts", "--ice-servers", "turn:nocreds.example:3478"], { cwd: ROOT, encoding: "utf8", timeout: 30_000 });
    expect(r.status).toBe(2);
    expect(r.stderr.trim().split("\n")).toHaveLength(1);
    expect(r.stderr).toMatch(/username and a credential/);
  });

  it("the welcome schema carries the servers and the policy, and refuses what a page must not get", () => {
    const base = {
      type: "welcome",
      workerId: "w1",
      peerId: "p",
      peerToken: "t",
      credential: "c",
      job: { name: "mnist-softmax", parameters: 7850, batch: 64, learningRate: 0.1, seed: 1, maxClock: 0, evalEvery: 10 },
      startClock: 0,
      needsSnapshot: false,
    };
    const ok = parseServerMessage(JSON.stringify({ ...base, iceServers: [{ urls: "turn:127.0.0.1:3478", username: "u", credential: "p" }], iceTransportPolicy: "relay", meshMax: 16 }));
    expect(ok.ok).toBe(true);
    expect(welcomeSchema.safeParse({ ...base, iceServers: [{ urls: "javascript:alert(1)" }] }).success).toBe(false);
    expect(welcomeSchema.safeParse({ ...base, iceServers: [], iceTransportPolicy: "none" }).success).toBe(false);
  });
});
