/**
 * NAT traversal for real: Debian's coturn (`turnserver`) on loopback with a
 * test user, the coordinator started with `--ice-servers` naming it and
 * `--ice-transport relay`, so pages may use relayed candidates only. Three
 * volunteers train mnist-softmax to the target through the relay: their
 * peer connections are configured relay-only, every selected candidate pair
 * is relayed, and coturn logged the allocations.
 */
import { test, expect, type Page } from "@playwright/test";
import { spawn, spawnSync, type ChildProcess } from "node:child_process";
import { mkdtempSync, readFileSync } from "node:fs";
import { createServer } from "node:net";
import { tmpdir } from "node:os";
import { join } from "node:path";
import { startCoordinatorProcess, waitFor, type CoordinatorProcess, type Status } from "../support/coordinator.ts";
import { recordPeerConnections } from "../support/peer-connections.ts";
import { digestsAgree } from "../../client/replica.ts";

const TURN_USER = "grid";
const TURN_PASSWORD = "relay-test-secret";

/** A free TCP port on loopback (coturn takes the same number for UDP). */
function freePort(): Promise<number> {
  return new Promise((resolve, reject) => {
    const s = createServer();
    s.once("error", reject);
    s.listen(0, "127.0.0.1", () => {
      const a = s.address();
      s.close(() => (typeof a === "object" && a ? resolve(a.port) : reject(new Error("no port"))));
    });
  });
}

let turn: ChildProcess | null = null;
let turnLog = "";
let coord: CoordinatorProcess;

test.beforeAll(async () => {
  expect(spawnSync("turnserver", ["--help"]).error, "coturn's turnserver is not installed (apt-get install coturn)").toBeUndefined();
  const dir = mkdtempSync(join(tmpdir(), "grid-turn-"));
  const port = await freePort();
  const minPort = 40_000 + Math.floor(Math.random() * 200) * 100;
  turnLog = join(dir, "turn.log");
  turn = spawn(
    "turnserver",
    [
      "-n", // no configuration file
      "-v", // logs listeners and allocations
      "--listening-ip", "127.0.0.1",
      "--relay-ip", "127.0.0.1",
      "--listening-port", String(port),
      "--min-port", String(minPort),
      "--max-port", String(minPort + 99),
      "--allow-loopback-peers",
      "--lt-cred-mech",
      "--user", `${TURN_USER}:${TURN_PASSWORD}`,
      "--realm", "grid.test",
      "--fingerprint",
      "--no-tls",
      "--no-dtls",
      "--no-cli",
      "--no-stdout-log",
      "--simple-log",
      "--log-file", turnLog,
      "--pidfile", join(dir, "turn.pid"),
      "--userdb", join(dir, "turn.sqlite"),
    ],
    { stdio: "ignore" },
  );
  await waitFor("coturn to listen", async () => {
    try {
      return /UDP listener opened on/.test(readFileSync(turnLog, "utf8")) ? true : null;
    } catch {
      return null;
    }
  }, 15_000, 100);
  coord = await startCoordinatorProcess([
    "--min-workers", "3",
    "--target-accuracy", "0.9",
    "--eval-interval", "500",
    "--ice-servers", `turn:${TURN_USER}:${TURN_PASSWORD}@127.0.0.1:${port}?transport=udp`,
    "--ice-transport", "relay",
  ]);
});

test.afterEach(async ({}, testInfo) => {
  if (testInfo.status !== testInfo.expectedStatus) {
    console.log(coord?.output().split("\n").slice(-30).join("\n"));
    try {
      console.log(readFileSync(turnLog, "utf8").split("\n").slice(-30).join("\n"));
    } catch {
      // no log
    }
  }
});

test.afterAll(async () => {
  await coord?.stop();
  turn?.kill("SIGTERM");
});

test("three volunteers train through a TURN relay only", async ({ browser }) => {
  const pages: Page[] = [];
  for (let i = 0; i < 3; i++) {
    const ctx = await browser.newContext();
    await recordPeerConnections(ctx);
    const page = await ctx.newPage();
    await page.goto(`${coord.url}/?name=relayed-${i}&backend=cpu`);
    pages.push(page);
  }
  const done: Status = await waitFor("the job to finish", async () => {
    const s = await coord.status();
    return s.job.state === "done" ? s : null;
  }, 3 * 60_000, 1000);
  const best = Math.max(...done.metrics.test.series.map(([, v]) => v));
  expect(best).toBeGreaterThanOrEqual(0.9);
  const active = done.workers.filter((w) => w.state === "active");
  expect(active).toHaveLength(3);
  for (const w of active) expect(w.bytesIn).toBeGreaterThan(7850 * 4 * 10);
  const digests = active.map((w) => w.digest);
  for (const d of digests) expect(d).not.toBeNull();
  for (const d of digests.slice(1)) expect(digestsAgree(digests[0]!, d!)).toBe(true);

  // Every page's peer connections were relay-only, and the pairs they used were relayed.
  for (const page of pages) {
    const seen = await page.evaluate(async () => {
      const out: { policy: string; local: string[]; remote: string[] }[] = [];
      for (const pc of (window as unknown as { peerConnections: RTCPeerConnection[] }).peerConnections) {
        const stats = await pc.getStats();
        const byId = new Map<string, Record<string, unknown>>();
        stats.forEach((r: Record<string, unknown>) => byId.set(String(r["id"]), r));
        const local: string[] = [];
        const remote: string[] = [];
        stats.forEach((r: Record<string, unknown>) => {
          if (r["type"] !== "candidate-pair" || Number(r["bytesReceived"] ?? 0) === 0) return;
          local.push(String(byId.get(String(r["localCandidateId"]))?.["candidateType"]));
          remote.push(String(byId.get(String(r["remoteCandidateId"]))?.["candidateType"]));
        });
        out.push({ policy: pc.getConfiguration().iceTransportPolicy ?? "", local, remote });
      }
      return out;
    });
    // PeerJS also makes a throwaway connection at load to probe for support: only links that carried bytes count.
    const links = seen.filter((pc) => pc.local.length > 0);
    expect(links.length).toBeGreaterThanOrEqual(2);
    for (const pc of links) expect(pc.policy).toBe("relay");
    expect(new Set(links.flatMap((pc) => [...pc.local, ...pc.remote]))).toEqual(new Set(["relay"]));
  }
  // coturn saw the allocations (a refused or unused relay would not log them).
  expect(readFileSync(turnLog, "utf8")).toMatch(/user <grid>: incoming packet ALLOCATE processed, success/);
});
