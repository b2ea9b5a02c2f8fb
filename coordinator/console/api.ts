/**
 * The console's request/response calls to the coordinator (the live stream is
 * in stream.ts). Failures come back as data,
 * never as exceptions, so the page can show them and carry on.
 */
import { parseStatus, type Status } from "./status.ts";
import { describeControlResponse } from "./view.ts";

export const STATUS_URL = "/api/status";
export const CONTROL_URL = "/api/control";
export const MODEL_URL = "/api/model";

const TIMEOUT_MS = 5000;

export type StatusResult =
  /** `raw`: the JSON as received (kept for the run report). */
  | { kind: "ok"; status: Status; raw: unknown }
  /** The coordinator did not answer, or answered with an HTTP error. */
  | { kind: "unreachable"; error: string }
  /** It answered, but not with a status this console understands. */
  | { kind: "malformed"; error: string };

export async function fetchStatus(): Promise<StatusResult> {
  let response: Response;
  try {
    response = await fetch(STATUS_URL, {
      cache: "no-store",
      headers: { Accept: "application/json" },
      signal: AbortSignal.timeout(TIMEOUT_MS),
    });
  } catch (err) {
    return { kind: "unreachable", error: networkMessage(err) };
  }
  if (!response.ok) return { kind: "unreachable", error: `HTTP ${response.status} ${response.statusText}`.trim() };
  let raw: unknown;
  try {
    raw = await response.json();
  } catch {
    return { kind: "malformed", error: "the response is not JSON" };
  }
  const parsed = parseStatus(raw);
  return parsed.ok ? { kind: "ok", status: parsed.status, raw } : { kind: "malformed", error: parsed.error };
}

export type ControlCommand =
  | { action: "pause" | "resume" | "stop" }
  | { action: "set"; consistency: "ssp" | "bsp" | "asp"; staleness: number }
  | { action: "drop"; worker: string };

export type ControlResult =
  | { kind: "ok"; message: string }
  | { kind: "unauthorized"; message: string }
  | { kind: "error"; message: string };

export async function postControl(command: ControlCommand, token: string): Promise<ControlResult> {
  let response: Response;
  try {
    response = await fetch(CONTROL_URL, {
      method: "POST",
      cache: "no-store",
      headers: { "Content-Type": "application/json", Authorization: `Bearer ${token}` },
      body: JSON.stringify(command),
      signal: AbortSignal.timeout(TIMEOUT_MS),
    });
  } catch (err) {
    return { kind: "error", message: networkMessage(err) };
  }
  const body = await response.text().catch(() => "");
  const message = describeControlResponse(response.status, body);
  if (response.status === 401 || response.status === 403) return { kind: "unauthorized", message };
  return response.ok ? { kind: "ok", message } : { kind: "error", message };
}

function networkMessage(err: unknown): string {
  if (err instanceof DOMException && (err.name === "TimeoutError" || err.name === "AbortError")) {
    return `no answer within ${TIMEOUT_MS / 1000} s`;
  }
  return err instanceof Error ? err.message : String(err);
}
