/**
 * Faults a test injects into a volunteer page through init scripts (nothing
 * in the production code switches them on):
 *
 * - `controlSignaling`: a handle on the page's PeerJS signaling sockets
 *   (`window.signaling.drop()` closes the open one, as a network drop would
 *   end it; while `window.signaling.blocked` is true new ones fail to connect,
 *   as when the coordinator is unreachable).
 * - `controlPageTimers`: while `window.pageTimersFrozen` is true, the page's
 *   main-thread `setInterval` callbacks do not run and its `setTimeout`
 *   callbacks wait: what a hidden, throttled tab does to them, at the
 *   extreme. Workers' timers are not touched (init scripts run in pages only).
 */
import type { BrowserContext, Page } from "@playwright/test";

export async function controlSignaling(ctx: BrowserContext): Promise<void> {
  await ctx.addInitScript(() => {
    const sockets: WebSocket[] = [];
    const ctl = {
      blocked: false,
      opened: 0,
      drop(): boolean {
        const open = sockets.filter((s) => s.readyState === WebSocket.OPEN);
        for (const s of open) s.close();
        return open.length > 0;
      },
    };
    const Native = window.WebSocket;
    window.WebSocket = class extends Native {
      constructor(url: string | URL, protocols?: string | string[]) {
        const signaling = String(url).includes("/peerjs");
        // Port 9 (discard) on loopback: nothing listens, the socket fails at once.
        super(signaling && ctl.blocked ? "ws://127.0.0.1:9/peerjs" : url, protocols);
        if (signaling) {
          sockets.push(this);
          this.addEventListener("open", () => ctl.opened++);
        }
      }
    };
    (window as unknown as { signaling: typeof ctl }).signaling = ctl;
  });
}

export async function controlPageTimers(ctx: BrowserContext): Promise<void> {
  await ctx.addInitScript(() => {
    const w = window as unknown as { pageTimersFrozen: boolean };
    w.pageTimersFrozen = false;
    const nativeInterval = window.setInterval.bind(window);
    const nativeTimeout = window.setTimeout.bind(window);
    window.setInterval = ((fn: TimerHandler, ms?: number, ...args: unknown[]) =>
      nativeInterval(() => {
        if (w.pageTimersFrozen) return;
        if (typeof fn === "function") (fn as (...a: unknown[]) => void)(...args);
      }, ms)) as typeof window.setInterval;
    window.setTimeout = ((fn: TimerHandler, ms?: number, ...args: unknown[]) => {
      const run = (): void => {
        if (w.pageTimersFrozen) {
          nativeTimeout(run, 50);
          return;
        }
        if (typeof fn === "function") (fn as (...a: unknown[]) => void)(...args);
      };
      return nativeTimeout(run, ms);
    }) as typeof window.setTimeout;
  });
}

export function setPageTimersFrozen(page: Page, frozen: boolean): Promise<void> {
  return page.evaluate((f) => {
    (window as unknown as { pageTimersFrozen: boolean }).pageTimersFrozen = f;
  }, frozen);
}

/** The parts of a volunteer page's `window.grid` (client/main.ts) that the fault tests read. */
export interface PageGrid {
  workerId: string | null;
  state: string;
  clock: number;
  peers: number;
  lostPeers: { id: string }[];
  log: string[];
}

export function readGrid(page: Page): Promise<PageGrid> {
  return page.evaluate(() => (window as unknown as { grid: PageGrid }).grid);
}
