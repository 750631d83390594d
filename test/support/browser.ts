import { existsSync, mkdirSync, readFileSync } from 'node:fs';
import { createRequire } from 'node:module';
import { fileURLToPath } from 'node:url';
import { chromium, type Browser, type BrowserContext, type Page } from 'playwright-core';

/** Where Debian and Ubuntu put Chromium. */
const SYSTEM_CHROMIUMS = ['/usr/bin/chromium', '/usr/bin/chromium-browser'];

/**
 * The Chromium the browser tests drive: $CHROMIUM_PATH when it is set (and then only that one),
 * otherwise the system's. Undefined when there is none, and the browser tests skip themselves.
 */
export function chromiumPath(): string | undefined {
  const chosen = process.env.CHROMIUM_PATH;
  return (chosen ? [chosen] : SYSTEM_CHROMIUMS).find((path) => existsSync(path));
}

/** Why the browser tests are skipped, naming where Chromium was looked for. */
export function noChromiumReason(): string {
  const chosen = process.env.CHROMIUM_PATH;
  return chosen
    ? `no Chromium at CHROMIUM_PATH=${chosen}`
    : `no Chromium at ${SYSTEM_CHROMIUMS.join(' or ')} (install Debian's chromium or set CHROMIUM_PATH)`;
}

/** A headless Chromium that stays off the network unless a page asks for something. */
export function launchChromium(executablePath: string): Promise<Browser> {
  return chromium.launch({
    executablePath,
    args: ['--headless', '--no-sandbox', '--disable-gpu', '--disable-background-networking'],
  });
}

/**
 * Where browser tests save screenshots: test-output/screenshots/ in the project directory
 * (git-ignored; CI keeps it, see README "Development"), or $TEST_SCREENSHOT_DIR.
 */
export function screenshotDir(): string {
  const dir = process.env.TEST_SCREENSHOT_DIR ?? fileURLToPath(new URL('../../test-output/screenshots/', import.meta.url));
  mkdirSync(dir, { recursive: true });
  return dir;
}

/**
 * Every URL a browser context asks for (documents, scripts, fetches, websockets, from every
 * page and worker in it), for asserting that nothing leaves the server's origin.
 */
export function recordRequests(context: BrowserContext): string[] {
  const urls: string[] = [];
  context.on('request', (request) => urls.push(request.url()));
  context.on('page', (page) => page.on('websocket', (socket) => urls.push(socket.url())));
  return urls;
}

/** The URLs among `urls` that are not the server's own (http and ws on its origin). */
export function foreignUrls(urls: readonly string[], serverUrl: string): string[] {
  const origin = new URL(serverUrl);
  return urls.filter((url) => {
    const parsed = new URL(url);
    const scheme = parsed.protocol === 'ws:' ? 'http:' : parsed.protocol === 'wss:' ? 'https:' : parsed.protocol;
    return !(scheme === origin.protocol && parsed.host === origin.host);
  });
}

/** An accessibility rule a page breaks, as axe-core reports it. */
export interface AxeViolation {
  readonly id: string;
  readonly impact: string | null;
  readonly help: string;
  readonly targets: string[];
}

let axeSource: string | undefined;

/**
 * What axe-core finds against WCAG 2 A and AA (labels, names, roles, contrast…) on the page as it
 * stands. axe is evaluated through the DevTools protocol, which a page's CSP does not govern, so
 * pages are checked under their real CSP, and nothing is fetched.
 */
export async function axeViolations(page: Page): Promise<AxeViolation[]> {
  axeSource ??= readFileSync(createRequire(import.meta.url).resolve('axe-core/axe.min.js'), 'utf8');
  if (!(await page.evaluate(() => 'axe' in globalThis))) await page.evaluate(axeSource);
  return page.evaluate(async () => {
    const { axe, document } = globalThis as unknown as {
      document: object;
      axe: { run(context: object, options: object): Promise<{ passes: unknown[]; violations: Array<{ id: string; impact?: string | null; help: string; nodes: Array<{ target: unknown[] }> }> }> };
    };
    const { passes, violations } = await axe.run(document, { runOnly: { type: 'tag', values: ['wcag2a', 'wcag2aa', 'wcag21a', 'wcag21aa'] } });
    if (passes.length === 0 && violations.length === 0) throw new Error('axe-core checked nothing');
    return violations.map((v) => ({ id: v.id, impact: v.impact ?? null, help: v.help, targets: v.nodes.map((n) => n.target.join(' ')) }));
  });
}
