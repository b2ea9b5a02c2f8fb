/**
 * The coordinator's real start-up path (flags, durable state, server) on a
 * tiny synthetic dataset instead of MNIST, so that Node tests can start,
 * kill and restart it quickly. Prints the same "volunteer URL:" line as
 * `npm start`. Usage: `tsx test/support/tiny-coordinator.ts FLAGS`.
 */
import { parseCoordinatorArgs, UsageError } from "../../coordinator/cli.ts";
import { tinyDataset } from "./tiny-run.ts";
import { startCoordinator } from "../../coordinator/main.ts";

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
