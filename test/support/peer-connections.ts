/**
 * A handle on a page's RTCPeerConnections (PeerJS creates them out of reach):
 * an init script that records every one created, as `window.peerConnections`,
 * so a test can close them (a transient drop) or read their stats (relayed?);
 * and a switch, `window.networkCut = true`, that silently drops everything the
 * page sends on its DataChannels (Playwright's offline mode does not reach
 * WebRTC, whose transports run in the browser's network service).
 */
import type { BrowserContext } from "@playwright/test";

export async function recordPeerConnections(ctx: BrowserContext): Promise<void> {
  await ctx.addInitScript(() => {
    const all: RTCPeerConnection[] = [];
    const Native = window.RTCPeerConnection;
    window.RTCPeerConnection = class extends Native {
      constructor(config?: RTCConfiguration) {
        super(config);
        all.push(this);
      }
    };
    (window as unknown as { peerConnections: RTCPeerConnection[] }).peerConnections = all;
    const send = RTCDataChannel.prototype.send;
    RTCDataChannel.prototype.send = function (this: RTCDataChannel, data: never): void {
      if ((window as unknown as { networkCut?: boolean }).networkCut === true) return;
      send.call(this, data);
    };
  });
}
