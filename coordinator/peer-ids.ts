/**
 * PeerJS ids and their secrets. The coordinator issues each membership a
 * PeerJS id and a secret token (both in the `welcome`); the signaling server
 * lets a socket register the id only with that token, so while the owner is
 * away from signaling (a network blip, a reconnect) nobody else can take its
 * id and receive the offers meant for it. The token never appears in the
 * public status or in views.
 */
import { randomBytes, timingSafeEqual } from "node:crypto";

export interface PeerIdentity {
  readonly peerId: string;
  readonly peerToken: string;
}

/** A fresh PeerJS id for worker `workerId` of coordinator session `session`, and its secret. */
export function issuePeerIdentity(session: string, workerId: string): PeerIdentity {
  return {
    peerId: `grid-${session}-${workerId}-${randomBytes(4).toString("hex")}`,
    peerToken: randomBytes(16).toString("hex"),
  };
}

/** Does a signaling connection presenting (`peerId`, `token`) belong to `owner`? Compared in constant time. */
export function presentsIdentity(owner: PeerIdentity, peerId: string, token: string): boolean {
  if (owner.peerId !== peerId) return false;
  const a = Buffer.from(owner.peerToken, "utf8");
  const b = Buffer.from(token, "utf8");
  return a.length === b.length && timingSafeEqual(a, b);
}
