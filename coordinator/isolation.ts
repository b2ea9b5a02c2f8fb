/**
 * Cross-origin isolation of the coordinator's pages (`--cross-origin-isolation
 * on`): every HTTP response carries COOP `same-origin` and COEP
 * `require-corp`, so the volunteer page and its workers are
 * `crossOriginIsolated` and the CPU path can run TF.js's threaded WASM build
 * (client/gpu/wasm-threads.ts).
 *
 * What the pages load under `require-corp`, and why it still works: every
 * script, worker, .wasm binary, stylesheet and data shard comes from the
 * coordinator's own origin (same-origin needs no CORP header); the console's
 * QR code is inline SVG and its charts are drawn by bundled code; the control
 * and PeerJS WebSockets and the
 * WebRTC data channels are not fetches and COEP does not apply to them;
 * IndexedDB is per origin either way. What it would break: a page that
 * embeds a cross-origin resource without CORP (an image or script from a
 * CDN) or opens a popup it expects to script across origins. Off by default
 * (README, Known gaps: on the 2-core test machine threads bought nothing).
 */
import type { RequestHandler } from "express";

/** The two headers that make a document (and its workers) cross-origin isolated. */
export const ISOLATION_HEADERS: Readonly<Record<string, string>> = {
  "Cross-Origin-Opener-Policy": "same-origin",
  "Cross-Origin-Embedder-Policy": "require-corp",
};

/** Headers to add to every response: the isolation headers when on, none when off. */
export function isolationHeaders(on: boolean): Readonly<Record<string, string>> {
  return on ? ISOLATION_HEADERS : {};
}

/** Express middleware that sets `isolationHeaders(on)` on every response (a no-op when off). */
export function isolationMiddleware(on: boolean): RequestHandler {
  const headers = isolationHeaders(on);
  return (_req, res, next) => {
    for (const [k, v] of Object.entries(headers)) res.setHeader(k, v);
    next();
  };
}
