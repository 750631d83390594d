/**
 * The token lives in sessionStorage: it is gone when the tab closes, and other tabs (and other
 * sites' scripts, which the CSP keeps out anyway) never see it. localStorage would keep it on
 * disk for as long as it stays valid.
 */
const KEY = 'hardcron.token';

export { cleanPastedToken, tokenClaims } from './token.ts';

/**
 * `npm start` prints a link ending in `#token=…`. Browsers never send a fragment to a server, so
 * the token stays out of access logs and proxies; the page moves it to sessionStorage at once and
 * removes it from the address bar and the history entry.
 */
export function takeTokenFromFragment(): void {
  const match = /(?:^#|&)token=([^&]*)/.exec(window.location.hash);
  if (!match) return;
  const token = decodeURIComponent(match[1] ?? '').trim();
  if (token) window.sessionStorage.setItem(KEY, token);
  window.history.replaceState(window.history.state, '', window.location.pathname + window.location.search);
}

export function storedToken(): string | null {
  return window.sessionStorage.getItem(KEY);
}

export function storeToken(token: string): void {
  window.sessionStorage.setItem(KEY, token);
}

export function forgetToken(): void {
  window.sessionStorage.removeItem(KEY);
}
