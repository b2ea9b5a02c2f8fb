/**
 * The console token: asked once, kept in sessionStorage (this tab only), and
 * taken from `?token=` on first load, which is then removed from the address
 * bar so it does not linger in history or get shared with a screenshot.
 */
import { takeTokenFromUrl } from "./view.ts";

const KEY = "grid.console.token";

/** Fallback when storage is unavailable (some privacy modes throw on access). */
let memory: string | null = null;

/** Moves a `?token=` from the URL into storage. Call once at start-up. */
export function adoptTokenFromUrl(): void {
  const { token, url } = takeTokenFromUrl(location.href);
  if (url !== location.href) history.replaceState(history.state, "", url);
  if (token !== null) setToken(token);
}

export function getToken(): string | null {
  try {
    return sessionStorage.getItem(KEY) ?? memory;
  } catch {
    return memory;
  }
}

export function setToken(token: string): void {
  memory = token;
  try {
    sessionStorage.setItem(KEY, token);
  } catch {
    // Memory only: the token lasts until the page is reloaded.
  }
}

export function clearToken(): void {
  memory = null;
  try {
    sessionStorage.removeItem(KEY);
  } catch {
    // Nothing stored.
  }
}
