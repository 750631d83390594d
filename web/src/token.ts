// Tokens as text: no browser API here (test/web/helpers.test.ts runs this in Node).

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
