import { existsSync, readFileSync } from 'node:fs';
import { fileURLToPath } from 'node:url';
import express, { type NextFunction, type Request, type Response, type Router } from 'express';

/** Where `npm run build:web` (run by `npm install` / `npm ci`) writes the dashboard. */
export const DASHBOARD_DIST = fileURLToPath(new URL('../../web/dist/', import.meta.url));

/** The path the dashboard is served under (Vite builds it with this base). */
export const DASHBOARD_PATH = '/dashboard';

/**
 * The dashboard's page may load its own bundled files and talk to this server's /graphql (HTTP
 * and websockets: CSP 3's 'self' covers ws: and wss: of the same host), and nothing else: no
 * request leaves the server's origin, nothing inline runs, nothing frames it, no form posts
 * anywhere. Styles set from script (element.style) are not inline styles in CSP's sense.
 */
export const DASHBOARD_CSP = [
  "default-src 'none'",
  "script-src 'self'",
  "style-src 'self'",
  "img-src 'self' data:",
  "font-src 'self'",
  "connect-src 'self'",
  "manifest-src 'self'",
  "base-uri 'none'",
  "form-action 'none'",
  "frame-ancestors 'none'",
].join('; ');

function securityHeaders(_req: Request, res: Response, next: NextFunction): void {
  res.setHeader('content-security-policy', DASHBOARD_CSP);
  // The page's address never travels (a token arrives in the fragment, which browsers never
  // send; no-referrer keeps even the path to ourselves).
  res.setHeader('referrer-policy', 'no-referrer');
  res.setHeader('x-content-type-options', 'nosniff');
  res.setHeader('x-frame-options', 'DENY');
  res.setHeader('cross-origin-opener-policy', 'same-origin');
  res.setHeader('cross-origin-resource-policy', 'same-origin');
  res.setHeader('permissions-policy', 'camera=(), microphone=(), geolocation=(), payment=(), usb=()');
  next();
}

/**
 * Serves the built dashboard at /dashboard: hashed assets with long caching, and index.html for
 * every other path below it (the page routes itself with the history API). When the build is
 * missing (an image built without it, or `npm install --ignore-scripts`), /dashboard says so
 * instead of failing the server.
 */
export function dashboardRouter(dist = DASHBOARD_DIST): Router {
  const router = express.Router({ strict: true });
  router.use(securityHeaders);
  router.use(
    '/assets',
    express.static(`${dist}assets`, { index: false, immutable: true, maxAge: '365d', redirect: false }),
    (_req: Request, res: Response) => {
      res.status(404).type('text/plain').send('not found\n');
    },
  );
  let page: string | undefined;
  const indexHtml = (): string | undefined => {
    // Read once it exists; asked again while it does not (a build may finish after start).
    if (page === undefined && existsSync(`${dist}index.html`)) page = readFileSync(`${dist}index.html`, 'utf8');
    return page;
  };
  router.get(/.*/, (req, res) => {
    if (req.path === '/' && req.originalUrl.split('?')[0] === DASHBOARD_PATH) {
      // /dashboard → /dashboard/ (relative asset URLs and the history router want the slash);
      // browsers keep a #fragment across the redirect.
      res.redirect(308, `${DASHBOARD_PATH}/`);
      return;
    }
    const html = indexHtml();
    res.setHeader('cache-control', 'no-store');
    if (html === undefined) {
      res.status(404).type('text/plain').send('The dashboard is not built. Run `npm run build:web` (npm install does it) and reload.\n');
      return;
    }
    res.type('html').send(html);
  });
  return router;
}
