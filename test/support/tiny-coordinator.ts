/**
 * The coordinator's real start-up path (flags, durable state, server) on a
 * tiny synthetic dataset instead of MNIST, so that Node tests can start,
 * kill and restart it quickly. Prints the same "volunteer URL:" line as
 * `npm start`. Usage: `tsx test/support/tiny-coordinator.ts FLAGS`.
 */
import { parseCoordinatorArgs, UsageError } from "../../coordinator/cli.ts";
import { makeShards, type Dataset, type ImageSet } from "../../coordinator/data.ts";
import { startCoordinator } from "../../coordinator/main.ts";

/** `count` images whose label is written into one bright pixel. */
export function tinySet(count: number): ImageSet {
  const pixels = new Uint8Array(count * 784);
  const labels = new Uint8Array(count);
  for (let n = 0; n < count; n++) {
    labels[n] = n % 10;
    pixels[n * 784 + (n % 10)] = 255;
  }
  return { count, pixelsPerImage: 784, pixels, labels };
}

export function tinyDataset(): Dataset {
  const train = tinySet(200);
  return { train, test: tinySet(50), shards: makeShards(train, 50) };
}

async function main(): Promise<void> {
  const cfg = parseCoordinatorArgs(process.argv.slice(2));
  const log = (l: string): void => void process.stdout.write(`${l}\n`);
  const { server } = await startCoordinator(cfg, log, tinyDataset());
  process.stdout.write(`volunteer URL: ${server.url}/ \n`);
}

if (process.argv[1]?.endsWith("tiny-coordinator.ts")) {
  main().catch((e: unknown) => {
    process.stderr.write(`grid: ${e instanceof Error ? e.message : String(e)}\n`);
    process.exit(e instanceof UsageError ? 2 : 1);
  });
}
