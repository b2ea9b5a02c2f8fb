/**
 * `--ice-servers` and `--ice-transport`: the STUN/TURN servers handed to the
 * volunteer pages in their `welcome` (RTCPeerConnection's `iceServers` and
 * `iceTransportPolicy`). Parsed strictly; a bad value is one line of error.
 *
 * `--ice-servers` takes either
 *   - a JSON array as RTCPeerConnection takes it:
 *     `[{"urls":"turn:turn.example.org:3478","username":"u","credential":"p"}]`, or
 *   - a comma-separated list of URLs, credentials in the user part:
 *     `stun:stun.example.org:3478,turn:u:p@turn.example.org:3478?transport=udp`.
 * TURN servers must carry a username and a credential. `--ice-transport relay`
 * makes peers use relayed candidates only (and so needs a TURN server).
 */
import { iceServerSchema, type IceServer } from "./protocol.ts";

export type IceTransportPolicy = "all" | "relay";

export interface IceConfig {
  readonly iceServers: IceServer[];
  readonly iceTransportPolicy: IceTransportPolicy;
}

/** What went wrong, one line; the caller wraps it in its usage error. */
export class IceConfigError extends Error {}

const isTurn = (url: string): boolean => /^turns?:/.test(url);

function fromUrl(item: string): IceServer {
  // turn:USER:PASS@host:port?transport=udp → urls without the user part.
  const m = /^(stuns?|turns?):(?:([^:@/]+):([^@/]+)@)?(.+)$/.exec(item);
  if (!m) throw new IceConfigError(`"${item}" is not a stun:, stuns:, turn: or turns: URL`);
  const [, scheme, user, pass, rest] = m;
  const server = {
    urls: `${scheme}:${rest}`,
    ...(user !== undefined ? { username: decodeURIComponent(user), credential: decodeURIComponent(pass ?? "") } : {}),
  };
  return server;
}

/** Parse the two flags' values (undefined: not given). Throws IceConfigError. */
export function parseIceFlags(servers: string | undefined, transport: string | undefined): IceConfig {
  const policy = transport ?? "all";
  if (policy !== "all" && policy !== "relay") throw new IceConfigError(`--ice-transport must be all or relay, got "${policy}"`);
  let raw: unknown[] = [];
  if (servers !== undefined) {
    const text = servers.trim();
    if (text === "") throw new IceConfigError("--ice-servers must not be empty");
    if (text.startsWith("[")) {
      let parsed: unknown;
      try {
        parsed = JSON.parse(text);
      } catch {
        throw new IceConfigError("--ice-servers: not valid JSON");
      }
      if (!Array.isArray(parsed)) throw new IceConfigError("--ice-servers: the JSON must be an array of servers");
      raw = parsed;
    } else {
      raw = text.split(",").map((s) => s.trim()).filter((s) => s !== "").map(fromUrl);
    }
  }
  if (raw.length > 16) throw new IceConfigError(`--ice-servers: at most 16 servers, got ${raw.length}`);
  const iceServers: IceServer[] = raw.map((item, i) => {
    const r = iceServerSchema.strict().safeParse(item);
    if (!r.success) {
      const issue = r.error.issues[0];
      throw new IceConfigError(`--ice-servers: server ${i + 1}: ${issue?.path.join(".") || "entry"}: ${issue?.message ?? "invalid"}`);
    }
    const urls = Array.isArray(r.data.urls) ? r.data.urls : [r.data.urls];
    if (urls.some(isTurn) && (r.data.username === undefined || r.data.credential === undefined)) {
      throw new IceConfigError(`--ice-servers: server ${i + 1}: a TURN server needs a username and a credential`);
    }
    return r.data;
  });
  if (policy === "relay" && !iceServers.some((s) => (Array.isArray(s.urls) ? s.urls : [s.urls]).some(isTurn))) {
    throw new IceConfigError("--ice-transport relay needs a TURN server in --ice-servers");
  }
  return { iceServers, iceTransportPolicy: policy };
}
