import type { NextFunction, Request, Response } from 'express';
import { ConfigError } from '../errors.ts';

/**
 * Cross-origin access to /graphql for browser frontends served from other origins, off unless
 * origins are listed (CORS_ORIGINS). Each allowed origin is named exactly; there is no wildcard
 * and never `Access-Control-Allow-Credentials`: hardcron has no cookies, a token travels in the
 * Authorization header, which CORS lets through without credentials mode. A `*` would make every
 * page on the web a client of the API, and is the value credentials can never be combined with,
 * so it is refused rather than half supported.
 *
 * Written here rather than taken from the `cors` package: the whole policy is a set lookup and
 * five headers, and owning it keeps what hardcron promises (exact origins only, no credentials,
 * a refused preflight answered 403 with a code) in one place that its tests read.
 *
 * Websockets are not subject to CORS: a page of any origin may open one, but a subscription
 * needs a token in its connection parameters, which such a page does not have.
 */

/** What a GraphQL client needs: POST (and GET for queries), a JSON body, the bearer token. */
export const CORS_ALLOWED_METHODS = 'GET, POST';
export const CORS_ALLOWED_HEADERS = 'Authorization, Content-Type';
/** Readable by the page: the id that "internal error (request id …)" names, for a report. */
export const CORS_EXPOSED_HEADERS = 'X-Request-Id';
/** How long a browser may reuse a preflight's answer, in seconds (browsers cap it, Chromium at 2 h). */
export const CORS_MAX_AGE_SECONDS = 600;

const EXACT_ORIGINS = 'must list exact origins, separated by commas, such as https://jobs.example.com,http://localhost:5173 (scheme, host and port only)';

/**
 * What is wrong with `origins` (the entries of CORS_ORIGINS), as the end of a sentence that starts
 * with the setting's name; undefined when nothing is. Names an entry by its position, not its
 * text, as every configuration message does.
 */
export function corsOriginsProblem(origins: readonly string[]): string | undefined {
  if (origins.length === 0) return `${EXACT_ORIGINS}; it lists none`;
  for (const [index, origin] of origins.entries()) {
    const entry = `entry ${index + 1}`;
    if (origin === '') return `${EXACT_ORIGINS}; ${entry} is empty`;
    if (origin.includes('*')) {
      return `${EXACT_ORIGINS}; ${entry} has a wildcard, which hardcron does not take: name each frontend's origin`;
    }
    let url: URL;
    try {
      url = new URL(origin);
    } catch {
      return `${EXACT_ORIGINS}; ${entry} is not a URL`;
    }
    if (url.protocol !== 'http:' && url.protocol !== 'https:') return `${EXACT_ORIGINS}; ${entry} is not http or https`;
    // An origin as a browser sends it: no path, query, user or trailing slash; lower-case host;
    // no default port (https://a.example:443 is sent as https://a.example).
    if (url.origin !== origin) return `${EXACT_ORIGINS}; ${entry} is not written as a browser sends it (no path or trailing slash, lower case, no default port)`;
  }
  return undefined;
}

/** CORS_ORIGINS as a list, or HC_CONFIG_INVALID naming `name`. Spaces around the commas are allowed. */
export function parseCorsOrigins(name: string, value: string): string[] {
  return checkCorsOrigins(name, value.split(',').map((entry) => entry.trim()));
}

/** `origins` when they are exact origins; otherwise HC_CONFIG_INVALID naming `name`. */
export function checkCorsOrigins(name: string, origins: readonly string[]): string[] {
  const problem = corsOriginsProblem(origins);
  if (problem !== undefined) throw new ConfigError('HC_CONFIG_INVALID', `${name} ${problem}`);
  return [...origins];
}

/** What a refused preflight says (a browser shows it only in its developer tools). */
export const CORS_REFUSED_MESSAGE = 'this origin may not call the API from a browser: the server allows the origins listed in its CORS_ORIGINS';

/**
 * The CORS policy of /graphql for `origins`. A request from an allowed origin gets
 * `Access-Control-Allow-Origin` naming it (on every answer, a 401 included, so the page can read
 * the error's code); its preflight (OPTIONS with Access-Control-Request-Method) is answered here,
 * 204, before the token check. A preflight from any other origin gets 403 and no CORS headers,
 * and so does not pass; other requests from it are served without CORS headers, so the browser
 * withholds the answer from the page. `Vary: Origin` on all of them, since the answer depends on it.
 */
export function corsPolicy(origins: readonly string[]): (req: Request, res: Response, next: NextFunction) => void {
  const allowed = new Set(origins);
  return (req, res, next) => {
    res.vary('Origin');
    const origin = req.headers.origin;
    const preflight = req.method === 'OPTIONS' && req.headers['access-control-request-method'] !== undefined;
    if (origin === undefined || !allowed.has(origin)) {
      if (preflight && origin !== undefined) {
        res.status(403).json({ errors: [{ message: CORS_REFUSED_MESSAGE, extensions: { code: 'HC_CORS_ORIGIN' } }] });
        return;
      }
      next();
      return;
    }
    res.setHeader('Access-Control-Allow-Origin', origin);
    if (preflight) {
      res.setHeader('Access-Control-Allow-Methods', CORS_ALLOWED_METHODS);
      res.setHeader('Access-Control-Allow-Headers', CORS_ALLOWED_HEADERS);
      res.setHeader('Access-Control-Max-Age', String(CORS_MAX_AGE_SECONDS));
      res.status(204).end();
      return;
    }
    res.setHeader('Access-Control-Expose-Headers', CORS_EXPOSED_HEADERS);
    next();
  };
}
