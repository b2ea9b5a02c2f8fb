/**
 * A simulated volunteer's control socket for Node tests: dials /ws of the
 * coordinator at `url`, joins as a CPU worker, and hands every text message,
 * parsed with the real schema, to `onMessage` (a message that fails the schema
 * is recorded in `errors`).
 */
import WebSocket from "ws";
import { parseServerMessage, type ServerMessage } from "../../coordinator/protocol.ts";

export function dialAndJoin(url: string, kernel: string, errors: string[], onMessage: (m: ServerMessage) => void): WebSocket {
  const ws = new WebSocket(url.replace("http", "ws") + "/ws");
  ws.on("error", () => {});
  ws.on("open", () => ws.send(JSON.stringify({ type: "join", backend: "cpu", kernel, adapter: kernel })));
  ws.on("message", (d, binary) => {
    if (binary) return;
    const p = parseServerMessage(d.toString());
    if (!p.ok) errors.push(p.message);
    else onMessage(p.value);
  });
  return ws;
}
