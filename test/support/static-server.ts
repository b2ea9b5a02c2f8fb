/**
 * A static file server for the built `dist/` folder, for Playwright tests.
 *
 * Contract: listens on 127.0.0.1 on a free port; GET and HEAD only (405
 * otherwise); serves files below `root` with a content type by extension,
 * `index.html` for a directory; 404 for anything missing, for paths that
 * would leave `root` (`..`, encoded or not, or absolute tricks) and for
 * malformed URLs. Nothing is cached between requests. `headers` are added to
 * every response (the cross-origin isolation headers, say); a GET whose path
 * matches `stall` is never answered (until `close()`), as a server that hangs.
 */
import { createServer } from "node:http";
import { readFile, stat } from "node:fs/promises";
import { extname, join, resolve, sep } from "node:path";
import type { AddressInfo } from "node:net";

const CONTENT_TYPES: Readonly<Record<string, string>> = {
  ".html": "text/html; charset=utf-8",
  ".js": "text/javascript; charset=utf-8",
  ".mjs": "text/javascript; charset=utf-8",
  ".css": "text/css; charset=utf-8",
  ".json": "application/json; charset=utf-8",
  ".map": "application/json; charset=utf-8",
  ".wasm": "application/wasm",
  ".wgsl": "text/plain; charset=utf-8",
  ".txt": "text/plain; charset=utf-8",
  ".svg": "image/svg+xml",
  ".png": "image/png",
  ".ico": "image/x-icon",
};

export interface StaticServer {
  /** Base URL without a trailing slash, e.g. `http://127.0.0.1:41234`. */
  readonly url: string;
  close(): Promise<void>;
}

/** The file under `root` that `urlPath` names, or undefined when it would escape `root`. */
function resolveInside(root: string, urlPath: string): string | undefined {
  let decoded: string;
  try {
    decoded = decodeURIComponent(urlPath);
  } catch {
    return undefined;
  }
  if (decoded.includes("\0") || decoded.includes("\\")) return undefined;
  const candidate = resolve(join(root, decoded));
  if (candidate !== root && !candidate.startsWith(root + sep)) return undefined;
  return candidate;
}

export interface ServeOptions {
  readonly headers?: Readonly<Record<string, string>>;
  readonly stall?: RegExp;
}

/** Serves `root` (default `dist`, relative to the working directory) until `close()`. */
export async function serveDist(root = "dist", options: ServeOptions = {}): Promise<StaticServer> {
  const base = resolve(root);
  const server = createServer((req, res) => {
    for (const [k, v] of Object.entries(options.headers ?? {})) res.setHeader(k, v);
    const send = (status: number, body: string): void => {
      res.writeHead(status, { "content-type": "text/plain; charset=utf-8" });
      res.end(req.method === "HEAD" ? undefined : body);
    };
    if (req.method !== "GET" && req.method !== "HEAD") {
      res.setHeader("allow", "GET, HEAD");
      send(405, "method not allowed");
      return;
    }
    const path = (req.url ?? "/").split(/[?#]/, 1)[0] ?? "/";
    if (options.stall?.test(path) === true) return;
    let file = resolveInside(base, path);
    if (file === undefined) {
      send(404, "not found");
      return;
    }
    void (async () => {
      try {
        let info = await stat(file);
        if (info.isDirectory()) {
          file = join(file, "index.html");
          info = await stat(file);
        }
        if (!info.isFile()) {
          send(404, "not found");
          return;
        }
        const type = CONTENT_TYPES[extname(file).toLowerCase()] ?? "application/octet-stream";
        const body = await readFile(file);
        res.writeHead(200, { "content-type": type, "content-length": body.length, "cache-control": "no-store" });
        res.end(req.method === "HEAD" ? undefined : body);
      } catch {
        send(404, "not found");
      }
    })();
  });
  await new Promise<void>((resolveListen, rejectListen) => {
    server.once("error", rejectListen);
    server.listen(0, "127.0.0.1", () => {
      server.off("error", rejectListen);
      resolveListen();
    });
  });
  const { port } = server.address() as AddressInfo;
  return {
    url: `http://127.0.0.1:${port}`,
    close: () =>
      new Promise<void>((resolveClose, rejectClose) => {
        server.close((err) => (err ? rejectClose(err) : resolveClose()));
        server.closeAllConnections();
      }),
  };
}
