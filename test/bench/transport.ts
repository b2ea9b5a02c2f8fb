/**
 * `npm run bench -- transport`: the data plane. For now one section, the
 * compression one (test/bench/transport-compression.ts): bytes per worker per
 * clock and test accuracy for mnist-mlp, dense against each `--compression`.
 * The DataChannel throughput and topology sections join this file.
 */
import { runCompressionSection, type CompressionRow } from "./transport-compression.ts";

export async function run(): Promise<{ ratios: Record<string, number>; table: CompressionRow[]; method: Record<string, string>; command: string }> {
  const c = await runCompressionSection();
  return { ratios: c.ratios, table: c.table, method: { compression: c.method }, command: "npm run bench -- transport" };
}
