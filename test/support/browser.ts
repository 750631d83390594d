import { existsSync } from 'node:fs';
import { chromium, type Browser } from 'playwright-core';

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
