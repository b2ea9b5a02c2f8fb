/**
 * `npm run bench -- transport`: the data plane, three sections in one run.
 *
 * 1. Exchange vs bare DataChannel (in Chromium): two pages of
 *    transport-bench.html open one DataChannel; the same payload bytes go
 *    across as mnist-mlp updates through our framing (client/peer/transport.ts
 *    FramedChannel) and as bare 60 KiB sends, alternately, ROUNDS times each.
 *    `exchange_vs_raw_datachannel` = median of (our payload MB/s / bare MB/s)
 *    over the rounds, each pair measured back to back (target >= 0.8).
 * 2. Topology (Node, the real client/peer/overlay.ts): for N = 8 … 128, what
 *    one clock costs each worker in a full mesh and in the overlay: sends of
 *    its own update, updates sent in all (own + forwarded), links, hops.
 * 3. Compression (test/bench/transport-compression.ts, Node): bytes per
 *    worker per clock and accuracy, dense vs each encoding.
 *
 * Builds dist/ first unless GRID_BENCH_NO_BUILD=1 (GRID_DIST names another build).
 * GRID_BENCH_REUSE_COMPRESSION=1 keeps section 3 from the last results file.
 */
import { chromium, type Page } from "@playwright/test";
import { execFileSync } from "node:child_process";
import { readFileSync } from "node:fs";
import { resolve } from "node:path";
import { broadcastCost, buildTopology } from "../../client/peer/overlay.ts";
import { CHROMIUM_ARGS, chromiumExecutable } from "../support/chromium.ts";
import { serveDist } from "../support/static-server.ts";
import { runCompressionSection, type CompressionRow } from "./transport-compression.ts";

const ROOT = resolve(import.meta.dirname, "..", "..");
const ROUNDS = 7;
/** mnist-mlp: 784·256 + 256 + 256·10 + 10 parameters. */
const MLP_PARAMS = 203_530;
const UPDATES = 40;

interface TransportBench {
  offer(): Promise<string>;
  answer(offer: string): Promise<string>;
  accept(answer: string): Promise<void>;
  expectRaw(total: number): void;
  sendRaw(total: number): Promise<number>;
  expectOurs(count: number, floats: number): void;
  sendOurs(count: number, floats: number): Promise<number>;
}
type BenchWindow = { transportBench: TransportBench; benchBad: () => number };

export interface ExchangeRow {
  readonly round: number;
  readonly rawMBps: number;
  readonly oursMBps: number;
  readonly ratio: number;
}

export interface TopologyRow {
  readonly N: number;
  readonly meshOwnSends: number;
  readonly overlayOwnSends: number;
  readonly meshUpload: number;
  readonly overlayUploadMean: number;
  readonly overlayUploadMax: number;
  readonly meshLinks: number;
  readonly overlayLinksMax: number;
  readonly overlayHopsMax: number;
  /** Upload in MB per worker per clock for dense mnist-mlp updates (both topologies: N − 1 updates). */
  readonly mlpMBPerClock: number;
}

export function topologyTable(sizes: readonly number[] = [8, 16, 32, 64, 128]): TopologyRow[] {
  return sizes.map((n) => {
    const ids = Array.from({ length: n }, (_, i) => i + 1);
    const mesh = broadcastCost(buildTopology(ids, n));
    const overlay = broadcastCost(buildTopology(ids, 0));
    if (mesh.deliveryErrors + overlay.deliveryErrors > 0) throw new Error(`N=${n}: an update did not reach every member exactly once`);
    return {
      N: n,
      meshOwnSends: mesh.ownFanoutMax,
      overlayOwnSends: overlay.ownFanoutMax,
      meshUpload: mesh.uploadMax,
      overlayUploadMean: overlay.uploadMean,
      overlayUploadMax: overlay.uploadMax,
      meshLinks: mesh.linksMax,
      overlayLinksMax: overlay.linksMax,
      overlayHopsMax: overlay.depthMax,
      mlpMBPerClock: Math.round(((overlay.uploadMax * (MLP_PARAMS * 4 + 32 * 14)) / 1e6) * 10) / 10,
    };
  });
}

async function exchange(pages: [Page, Page]): Promise<ExchangeRow[]> {
  const [a, b] = pages;
  const offer = await a.evaluate(() => (window as unknown as BenchWindow).transportBench.offer());
  const answer = await b.evaluate((o) => (window as unknown as BenchWindow).transportBench.answer(o), offer);
  await a.evaluate((x) => (window as unknown as BenchWindow).transportBench.accept(x), answer);
  const total = UPDATES * MLP_PARAMS * 4;
  const rows: ExchangeRow[] = [];
  // One warm-up pair (SCTP windows, JIT), not counted.
  for (let round = 0; round <= ROUNDS; round++) {
    await b.evaluate((t) => (window as unknown as BenchWindow).transportBench.expectRaw(t), total);
    const rawMs = await a.evaluate((t) => (window as unknown as BenchWindow).transportBench.sendRaw(t), total);
    await b.evaluate(([c, f]) => (window as unknown as BenchWindow).transportBench.expectOurs(c, f), [UPDATES, MLP_PARAMS] as const);
    const oursMs = await a.evaluate(([c, f]) => (window as unknown as BenchWindow).transportBench.sendOurs(c, f), [UPDATES, MLP_PARAMS] as const);
    const bad = await b.evaluate(() => (window as unknown as BenchWindow).benchBad());
    if (bad > 0) throw new Error(`${bad} frames or updates refused in round ${round}`);
    if (round === 0) continue;
    const rawMBps = total / 1e6 / (rawMs / 1000);
    const oursMBps = total / 1e6 / (oursMs / 1000);
    rows.push({ round, rawMBps, oursMBps, ratio: oursMBps / rawMBps });
  }
  return rows;
}

/**
 * GRID_BENCH_REUSE_COMPRESSION=1: take the compression section from the last
 * bench/results/transport.json instead of running it again (it is a long Node
 * simulation; the browser sections are short). Its method says so, with the date.
 */
function reuseCompression(): { ratios: Record<string, number>; table: CompressionRow[]; method: string } {
  const prev = JSON.parse(readFileSync(resolve(ROOT, "bench", "results", "transport.json"), "utf8")) as {
    date: string;
    ratios: Record<string, number>;
    compression?: CompressionRow[];
    table: unknown;
    method: Record<string, string>;
  };
  const keys = ["bytes_dense_vs_topk", "bytes_dense_vs_int8", "accuracy_loss_topk_points", "accuracy_loss_int8_points"];
  const ratios = Object.fromEntries(keys.filter((k) => k in prev.ratios).map((k) => [k, prev.ratios[k] as number]));
  if (Object.keys(ratios).length !== keys.length) throw new Error("GRID_BENCH_REUSE_COMPRESSION: the last transport.json has no compression section");
  const table = prev.compression ?? (prev.table as CompressionRow[]);
  return { ratios, table, method: `${prev.method["compression"] ?? ""} (reused from the run of ${prev.date})` };
}

function median(xs: number[]): number {
  const s = [...xs].sort((p, q) => p - q);
  const m = s.length >> 1;
  return s.length % 2 === 1 ? (s[m] as number) : ((s[m - 1] as number) + (s[m] as number)) / 2;
}

export async function run(): Promise<{ ratios: Record<string, number>; table: TopologyRow[]; exchange: ExchangeRow[]; compression: CompressionRow[]; method: Record<string, string>; command: string }> {
  const log = (line: string): void => void process.stdout.write(`${line}\n`);
  const topology = topologyTable();
  const dist = process.env["GRID_DIST"] ?? resolve(ROOT, "dist");
  if (process.env["GRID_BENCH_NO_BUILD"] !== "1" && process.env["GRID_DIST"] === undefined) {
    execFileSync(resolve(ROOT, "node_modules", ".bin", "vite"), ["build"], { cwd: ROOT, stdio: "ignore" });
  }
  const server = await serveDist(dist);
  const executablePath = chromiumExecutable();
  const browser = await chromium.launch({ headless: true, args: [...CHROMIUM_ARGS], ...(executablePath ? { executablePath } : {}) });
  let rows: ExchangeRow[];
  try {
    const pages: Page[] = [];
    for (let i = 0; i < 2; i++) {
      const page = await (await browser.newContext()).newPage();
      page.setDefaultTimeout(120_000);
      await page.goto(`${server.url}/transport-bench.html`);
      await page.waitForFunction(() => typeof (window as unknown as Partial<BenchWindow>).transportBench === "object");
      pages.push(page);
    }
    rows = await exchange(pages as [Page, Page]);
  } finally {
    await browser.close();
    await server.close();
  }
  for (const r of rows) log(`exchange round ${r.round}: bare ${r.rawMBps.toFixed(1)} MB/s, ours ${r.oursMBps.toFixed(1)} MB/s, ratio ${r.ratio.toFixed(3)}`);
  const ratios: Record<string, number> = {
    exchange_vs_raw_datachannel: median(rows.map((r) => r.ratio)),
    overlay_own_sends_128: (topology.at(-1) as TopologyRow).overlayOwnSends,
    mesh_own_sends_128: (topology.at(-1) as TopologyRow).meshOwnSends,
  };
  const method: Record<string, string> = {
    exchange: `two Chromium pages, one DataChannel on loopback; ${UPDATES} mnist-mlp updates (${MLP_PARAMS} f32) vs the same bytes as bare 60 KiB sends, ${ROUNDS} alternating rounds after a warm-up; ratio = median over rounds`,
    topology: "Node, client/peer/overlay.ts: every member sends one update per clock; counts of updates sent per worker",
  };
  const c = process.env["GRID_BENCH_REUSE_COMPRESSION"] === "1" ? reuseCompression() : await runCompressionSection(log);
  Object.assign(ratios, c.ratios);
  method["compression"] = c.method;
  const compression = c.table;
  return { ratios, table: topology, exchange: rows, compression, method, command: "npm run bench -- transport" };
}
