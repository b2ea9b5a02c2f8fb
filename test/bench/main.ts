/**
 * `npm run bench -- [SUITE...]`: runs benchmark suites one after another (all
 * when none is named), prints each one's table and writes
 * `bench/results/<suite>.json` = `{ suite, date, host, ratios, table, ...rest }`.
 *
 * Suite contract: `test/bench/<suite>.ts` exports
 * `run(): Promise<{ ratios: Record<string, number>; table: unknown; [k: string]: unknown }>`.
 * Suites are the `.ts` files present in this folder, except `main.ts`,
 * files whose name starts with `_` (helpers) and sections of a suite
 * (`SUITE-PART.ts` beside `SUITE.ts`, which runs them). An unknown suite name exits
 * with status 2 and one line; a suite that throws makes the exit status 1
 * (the other suites still run).
 */
import { mkdirSync, readdirSync, writeFileSync } from "node:fs";
import { cpus, totalmem } from "node:os";
import { basename, join, resolve } from "node:path";
import { pathToFileURL } from "node:url";

const HERE = import.meta.dirname;
const ROOT = resolve(HERE, "..", "..");
const RESULTS = join(ROOT, "bench", "results");

export interface SuiteResult {
  readonly ratios: Record<string, number>;
  readonly table: unknown;
  readonly [k: string]: unknown;
}

type Suite = { run: () => Promise<SuiteResult> };

function isSuite(m: unknown): m is Suite {
  return typeof m === "object" && m !== null && typeof (m as { run?: unknown }).run === "function";
}

export function listSuites(dir = HERE): string[] {
  const names = readdirSync(dir)
    .filter((f) => f.endsWith(".ts") && !f.endsWith(".d.ts") && f !== "main.ts" && !f.startsWith("_"))
    .map((f) => basename(f, ".ts"));
  return names.filter((n) => !names.some((suite) => n.startsWith(`${suite}-`))).sort();
}

function cell(v: unknown): string {
  if (typeof v === "number") return Number.isInteger(v) ? String(v) : String(+v.toPrecision(4));
  if (v === null || v === undefined) return "-";
  return typeof v === "string" ? v : JSON.stringify(v);
}

/** A table of rows (array of flat objects) as aligned text; anything else as JSON. */
export function formatTable(table: unknown): string {
  if (!Array.isArray(table) || table.length === 0 || !table.every((r) => typeof r === "object" && r !== null)) {
    return JSON.stringify(table, null, 2);
  }
  const rows = table as Record<string, unknown>[];
  const cols = [...new Set(rows.flatMap((r) => Object.keys(r)))];
  const cells = rows.map((r) => cols.map((c) => cell(r[c])));
  const widths = cols.map((c, i) => Math.max(c.length, ...cells.map((r) => (r[i] as string).length)));
  const line = (cs: string[]): string => cs.map((s, i) => s.padEnd(widths[i] as number)).join("  ").trimEnd();
  return [line(cols), line(widths.map((w) => "-".repeat(w))), ...cells.map(line)].join("\n");
}

async function main(): Promise<number> {
  const known = listSuites();
  const asked = process.argv.slice(2).filter((a) => a !== "--");
  for (const a of asked) {
    if (!known.includes(a)) {
      process.stderr.write(`bench: unknown suite "${a}" (known: ${known.join(", ") || "none"})\n`);
      return 2;
    }
  }
  const suites = asked.length > 0 ? asked : known;
  mkdirSync(RESULTS, { recursive: true });
  let failed = false;
  for (const name of suites) {
    process.stdout.write(`== ${name}\n`);
    const started = Date.now();
    try {
      const mod: unknown = await import(pathToFileURL(join(HERE, `${name}.ts`)).href);
      if (!isSuite(mod)) throw new Error(`test/bench/${name}.ts does not export run()`);
      const result = await mod.run();
      const { ratios, table, ...rest } = result;
      process.stdout.write(formatTable(table) + "\n");
      process.stdout.write(`ratios: ${JSON.stringify(ratios)}\n`);
      const file = join(RESULTS, `${name}.json`);
      const body = {
        suite: name,
        date: new Date().toISOString(),
        host: { cpus: cpus().length, cpu: cpus()[0]?.model ?? "", memGB: Math.round(totalmem() / 2 ** 30), node: process.version },
        seconds: Math.round((Date.now() - started) / 100) / 10,
        ratios,
        table,
        ...rest,
      };
      writeFileSync(file, JSON.stringify(body, null, 2) + "\n");
      process.stdout.write(`wrote ${file} (${body.seconds} s)\n`);
    } catch (e) {
      failed = true;
      process.stderr.write(`bench: ${name} failed: ${e instanceof Error ? (e.stack ?? e.message) : String(e)}\n`);
    }
  }
  return failed ? 1 : 0;
}

if (process.argv[1] && resolve(process.argv[1]) === resolve(HERE, "main.ts")) {
  // A signal becomes an exit, so suites' "exit" handlers stop what they started.
  for (const sig of ["SIGINT", "SIGTERM"] as const) process.on(sig, () => process.exit(130));
  main().then(
    (code) => process.exit(code),
    (e: unknown) => {
      process.stderr.write(`bench: ${e instanceof Error ? e.message : String(e)}\n`);
      process.exit(1);
    },
  );
}
