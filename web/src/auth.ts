/**
 * The token lives in sessionStorage: it is gone when the tab closes, and other tabs (and other
 * sites' scripts, which the CSP keeps out anyway) never see it. localStorage would keep it on
 * disk for as long as it stays valid.
 */
const KEY = 'hardcron.token';

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

/**
 * The claims a token carries, read (not verified: the server verifies every request) to show who
 * is signed in and until when. Null for something that is not a JWT.
 */
export function tokenClaims(token: string): { role: string | null; exp: number | null } | null {
  const payload = token.split('.')[1];
  if (!payload) return null;
  try {
    const json = atob(payload.replaceAll('-', '+').replaceAll('_', '/').padEnd(Math.ceil(payload.length / 4) * 4, '='));
    const claims = JSON.parse(json) as { role?: unknown; exp?: unknown };
    return {
      role: typeof claims.role === 'string' ? claims.role : null,
      exp: typeof claims.exp === 'number' ? claims.exp : null,
    };
  } catch {
    return null;
  }
}

/** A token as people paste it: with or without "Bearer ", or the whole GraphiQL header line. */
export function cleanPastedToken(text: string): string {
  const header = /"Authorization"\s*:\s*"([^"]*)"/i.exec(text);
  return (header ? (header[1] ?? '') : text).trim().replace(/^Bearer\s+/i, '').trim();
}
