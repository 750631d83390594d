import { randomBytes } from 'node:crypto';
import { copyFileSync, existsSync } from 'node:fs';
import { join } from 'node:path';
import { fileURLToPath } from 'node:url';
import { afterAll, beforeAll, beforeEach, describe, expect, test } from 'vitest';
import type { Browser, BrowserContext, Page } from 'playwright-core';
import { DASHBOARD_DIST } from '../../server/api/dashboard.ts';
import type { RunningGraphQLServer } from '../../server/api/server.ts';
import { provisionLocal } from '../../server/db/provision.ts';
import type { Executor } from '../../server/executor/executor.ts';
import { axeViolations, chromiumPath, foreignUrls, launchChromium, noChromiumReason, recordRequests, screenshotDir } from '../support/browser.ts';
import { useTestDatabase } from '../support/database.ts';
import { setLocalRole, transaction } from '../support/jobs.ts';
import { startExecutor } from '../support/executor.ts';
import { data, startTestServer, TEST_JWT_SECRET, tokenFor } from '../support/server.ts';

const executablePath = chromiumPath();
if (!executablePath) console.warn(`dashboard browser test skipped: ${noChromiumReason()}`);

const HEARTBEAT = 'heartbeat from the dashboard';
const DIVIDE = 'divide by zero from the dashboard';
const EVERY_5_SECONDS = '*/5 * * * * *';
const ZONE = 'Europe/Amsterdam';
const PREVIEW = `query ($schedule: String!, $timeZone: String) {
  previewSchedule(schedule: $schedule, timeZone: $timeZone, count: 5) { nodes { occursAt } }
}`;
const JOB = 'query ($id: BigInt!) { job(id: $id) { enabled } }';
const SCHEDULE = `mutation ($name: String!) {
  scheduleJob(input: { functionSignature: "demo.heartbeat()", schedule: "@yearly", name: $name }) { job { id } }
}`;
/** `UPDATE_DOCS_SCREENSHOT=1` also writes the README's picture, docs/dashboard.png. */
const DOCS_SCREENSHOT = fileURLToPath(new URL('../../docs/dashboard.png', import.meta.url));

/**
 * The web dashboard (web/, served at /dashboard) in a real Chromium, as a person uses it: signed
 * in by `npm start`'s link (token in the fragment), scheduling the demo jobs through the form,
 * watching runs arrive over the subscription, pausing, running now and reading a failure; and a
 * second user, in a browser context of their own, who sees none of it. Every request any page
 * makes stays on the server's origin. Screenshots of each page go to test-output/screenshots/.
 */
describe.skipIf(!executablePath)(`dashboard in Chromium${executablePath ? '' : ` (skipped: ${noChromiumReason()})`}`, () => {
  const db = useTestDatabase();
  let server: RunningGraphQLServer;
  let executor: Executor;
  let browser: Browser;
  let demoContext: BrowserContext;
  let page: Page;
  let demo: string;
  let alice: string;
  let heartbeatId: string;
  /** Every URL each browser context asked for. */
  const urlLists: string[][] = [];
  const shots = screenshotDir();

  /** A screenshot of the page, which must also pass axe-core's WCAG 2 AA checks as it stands. */
  const shoot = async (target: Page, name: string): Promise<void> => {
    await target.screenshot({ path: join(shots, `${name}.png`), fullPage: true });
    expect(await axeViolations(target), name).toEqual([]);
  };

  beforeAll(async () => {
    if (!existsSync(join(DASHBOARD_DIST, 'index.html'))) {
      throw new Error(`the dashboard is not built (${DASHBOARD_DIST}): run npm run build:web (npm ci does)`);
    }
    // The demo of `hardcron start`: user demo, demo.heartbeat() and demo.divide(integer).
    const password = (): string => randomBytes(16).toString('hex');
    await provisionLocal(db().adminUrl, { jwtSecret: TEST_JWT_SECRET, authenticatorPassword: password(), executorPassword: password() });
    // And a function that takes its time, for a run to cancel while it runs.
    await transaction(db(), `${setLocalRole(db(), 'demo_owner')};
      create function demo.nap(seconds double precision) returns void
        security definer set search_path = pg_catalog, pg_temp
        language sql as $$ select pg_sleep(seconds) $$`);
    await db().addUser('alice', { scheduler: true });
    server = await startTestServer(db());
    executor = await startExecutor(db());
    demo = await tokenFor('demo');
    alice = await tokenFor('alice');
    browser = await launchChromium(executablePath!);
    demoContext = await browser.newContext({ viewport: { width: 1280, height: 900 } });
    urlLists.push(recordRequests(demoContext));
    page = await demoContext.newPage();
  });

  // A failing step leaves a picture of what the page showed (failed-<test>.png).
  beforeEach((context) => {
    context.onTestFailed(async () => {
      const slug = context.task.name.replace(/[^a-z0-9]+/gi, '-').slice(0, 60);
      await page?.screenshot({ path: join(shots, `failed-${slug}.png`), fullPage: true }).catch(() => {});
    });
  });

  afterAll(async () => {
    try {
      await browser?.close();
    } finally {
      try {
        await executor?.stop();
      } finally {
        await server?.stop();
      }
    }
  });

  test('/dashboard is served with a CSP that keeps every request on this origin', async () => {
    const response = await fetch(`${server.url}/dashboard/`);
    expect(response.status).toBe(200);
    const csp = response.headers.get('content-security-policy') ?? '';
    expect(csp).toContain("default-src 'none'");
    expect(csp).toContain("script-src 'self'");
    expect(csp).toContain("connect-src 'self'");
    expect(csp).toContain("frame-ancestors 'none'");
    expect(response.headers.get('referrer-policy')).toBe('no-referrer');
    expect(response.headers.get('cache-control')).toBe('no-store');
    expect(await response.text()).toContain('<div id="app">');

    const bare = await fetch(`${server.url}/dashboard`, { redirect: 'manual' });
    expect([bare.status, bare.headers.get('location')]).toEqual([308, '/dashboard/']);
    expect((await fetch(`${server.url}/dashboard/jobs/1`)).status).toBe(200); // the page routes itself
    expect((await fetch(`${server.url}/dashboard/assets/missing.js`)).status).toBe(404);
  });

  test('npm start\'s link signs demo in: the token moves from the fragment to sessionStorage', async () => {
    await page.goto(`${server.url}/dashboard/#token=${demo}`);
    await expect.poll(() => page.getByTestId('signed-in-as').textContent(), { timeout: 30_000 }).toBe('demo');
    expect(page.url()).toBe(`${server.url}/dashboard/`);
    // (Run in the page: globalThis is its window.)
    const stored = await page.evaluate(() => [(globalThis as unknown as { location: { hash: string } }).location.hash, Object.values(sessionStorage), localStorage.length]);
    expect(stored).toEqual(['', [demo], 0]);
    await page.getByRole('heading', { name: 'Jobs' }).waitFor();
    // No URL the browser asked for carries the token (a fragment is never sent).
    expect(urlLists.flat().filter((url) => url.includes(demo))).toEqual([]);
  });

  test('the form previews the schedule as previewSchedule does, shows errors at their field, and schedules demo.heartbeat() every 5 s', async () => {
    await page.getByRole('navigation', { name: 'Main' }).getByRole('link', { name: 'Schedule a job' }).click();
    const functionSelect = page.getByLabel('Function');
    await expect.poll(() => functionSelect.locator('option').allTextContents(), { timeout: 20_000 })
      .toEqual(['demo.divide(integer)', 'demo.heartbeat()', 'demo.nap(double precision)']);
    await functionSelect.selectOption('demo.heartbeat()');
    await page.getByLabel('Name (optional)').fill(HEARTBEAT);

    // A wrong expression: the database's message (HC206) next to the schedule field.
    const schedule = page.getByLabel('Schedule', { exact: true });
    await schedule.fill('61 * * * *');
    const scheduleError = page.locator('#schedule-error');
    await expect.poll(() => scheduleError.textContent(), { timeout: 20_000 }).toMatch(/minute/i);
    expect(await schedule.getAttribute('aria-invalid')).toBe('true');
    expect(await schedule.getAttribute('aria-describedby')).toContain('schedule-error');
    await page.getByLabel('Time zone').fill('Mars/Olympus_Mons');
    await schedule.fill(EVERY_5_SECONDS);
    await expect.poll(() => page.locator('#timeZone-error').textContent(), { timeout: 20_000 }).toContain('unknown time zone');
    await page.getByLabel('Time zone').fill(ZONE);
    await expect.poll(() => page.getByTestId('schedule-words').textContent()).toBe('Every 5 seconds');

    // The next five occurrences, as previewSchedule answers over HTTP. The page asks again once
    // the first has passed, so the two agree within a moment whenever they are compared.
    const shown = (): Promise<string[]> => page.getByTestId('preview').locator('li').evaluateAll((items) => items.map((li) => li.getAttribute('data-occurs-at') ?? ''));
    const asked = async (): Promise<string[]> => {
      const { previewSchedule } = await data<{ previewSchedule: { nodes: Array<{ occursAt: string }> } }>(server, PREVIEW, { schedule: EVERY_5_SECONDS, timeZone: ZONE }, demo);
      return previewSchedule.nodes.map((n) => n.occursAt);
    };
    await expect.poll(async () => {
      const [ui, http] = [await shown(), await asked()];
      return ui.length === 5 && ui.join() === http.join();
    }, { timeout: 30_000 }).toBe(true);
    await expect.poll(() => page.locator('#schedule-error').count()).toBe(0);
    await shoot(page, 'schedule-form');

    await page.getByRole('button', { name: 'Schedule', exact: true }).click();
    await page.waitForURL(/\/dashboard\/jobs\/\d+$/, { timeout: 20_000 });
    heartbeatId = /\/jobs\/(\d+)$/.exec(page.url())![1] as string;
    await page.getByRole('heading', { name: HEARTBEAT }).waitFor();
    await expect.poll(() => page.title()).toBe(`${HEARTBEAT} · hardcron`);
  });

  test('runs arrive and change status live, without a reload', async () => {
    // A mark on the window: a reload would remove it.
    await page.evaluate(() => Object.assign(globalThis, { notReloaded: true }));
    const succeeded = page.locator('tbody.run[data-status="succeeded"]');
    await expect.poll(() => succeeded.count(), { timeout: 60_000 }).toBeGreaterThanOrEqual(2);
    expect(await page.evaluate(() => (globalThis as { notReloaded?: boolean }).notReloaded)).toBe(true);
    // Each run shows its trigger, a duration and a lateness.
    const first = succeeded.first();
    // (catch up: a run claimed behind its schedule, on a busy machine.)
    expect(['schedule', 'catch up']).toContain(await first.locator('td[data-label="Trigger"]').textContent());
    expect(await first.locator('td[data-label="Duration"]').textContent()).toMatch(/\d/);
    expect(await first.locator('td[data-label="Lateness"]').textContent()).toMatch(/\d/);
    await page.locator('figure.chart svg rect.bar').first().waitFor();
    await shoot(page, 'job');
    if (process.env.UPDATE_DOCS_SCREENSHOT === '1') copyFileSync(join(shots, 'job.png'), DOCS_SCREENSHOT);
  });

  test('pause: the job stops; run now on a paused job is refused politely; resume', async () => {
    // By keyboard: the actions are buttons, reached and pressed without a mouse.
    await page.getByRole('button', { name: 'Pause' }).focus();
    await page.keyboard.press('Enter');
    await expect.poll(() => page.getByTestId('enabled').textContent(), { timeout: 20_000 }).toMatch(/^Paused/);
    const { job } = await data<{ job: { enabled: boolean } }>(server, JOB, { id: heartbeatId }, demo);
    expect(job.enabled).toBe(false);

    await page.getByRole('button', { name: 'Run now' }).click();
    const refusal = page.getByRole('group', { name: 'Job actions' }).getByRole('alert');
    await expect.poll(() => refusal.textContent(), { timeout: 20_000 }).toContain('resume it first');
    expect(await refusal.locator('[data-code]').getAttribute('data-code')).toBe('HC216');

    // Resume lets it run again; paused once more, it stays so for the rest of the test.
    await page.getByRole('button', { name: 'Resume' }).click();
    await expect.poll(() => page.getByTestId('enabled').textContent(), { timeout: 20_000 }).toBe('Yes');
    await page.getByRole('button', { name: 'Pause' }).click();
    await expect.poll(() => page.getByTestId('enabled').textContent(), { timeout: 20_000 }).toMatch(/^Paused/);
  });

  test('the jobs table lists the job with its schedule in words, filters and sorts', async () => {
    await page.getByRole('navigation', { name: 'Main' }).getByRole('link', { name: 'Jobs' }).click();
    const row = page.locator('table.jobs tbody tr', { hasText: HEARTBEAT });
    await row.waitFor({ timeout: 20_000 });
    expect(await row.locator('td[data-label="Schedule"]').innerText()).toContain('Every 5 seconds');
    expect(await row.locator('td[data-label="Time zone"]').textContent()).toBe(ZONE);
    expect(await row.locator('td[data-label="Enabled"]').textContent()).toBe('Paused');
    expect(await row.locator('td[data-label="Function"]').textContent()).toBe('demo.heartbeat()');

    // Filtered by its last status (succeeded, unless pausing cancelled a run) and by another one.
    const last = (await row.locator('td[data-label="Last status"] [data-status]').getAttribute('data-status'))!;
    await page.getByLabel('Last status').selectOption(last === 'failed' ? 'succeeded' : 'failed');
    await expect.poll(() => page.locator('table.jobs caption').textContent(), { timeout: 20_000 }).toBe('0 jobs matching the filter');
    await page.getByLabel('Last status').selectOption(last);
    await expect.poll(() => page.locator('table.jobs caption').textContent(), { timeout: 20_000 }).toBe('1 job matching the filter');
    await page.getByLabel('Last status').selectOption('');
    await page.getByRole('button', { name: /^Name/ }).click();
    await expect.poll(() => page.locator('th[aria-sort="ascending"]').textContent(), { timeout: 20_000 }).toContain('Name');
    await shoot(page, 'jobs');

    await page.getByLabel('Name (whole name)').fill(HEARTBEAT);
    await page.getByRole('button', { name: 'Filter' }).click();
    await expect.poll(() => page.locator('table.jobs caption').textContent(), { timeout: 20_000 }).toBe('1 job matching the filter');
    await page.getByLabel('Name (whole name)').fill('');
    await page.getByRole('button', { name: 'Filter' }).click();

    // Twenty more (yearly) jobs: two pages of twenty.
    for (let i = 1; i <= 20; i++) {
      await data(server, SCHEDULE, { name: `filler ${String(i).padStart(2, '0')}` }, demo);
    }
    // They run never (yet), so no run event brings them: sorting asks again (by name, descending).
    await page.getByRole('button', { name: /^Name/ }).click();
    await expect.poll(() => page.locator('th[aria-sort="descending"]').textContent(), { timeout: 20_000 }).toContain('Name');
    const pager = page.getByRole('navigation', { name: 'Pages of jobs' });
    await expect.poll(() => pager.textContent(), { timeout: 20_000 }).toContain('Page 1 of 2');
    expect(await page.locator('table.jobs tbody tr').count()).toBe(20);
    expect(await page.locator('table.jobs tbody tr td[data-label="Name"]').first().textContent()).toBe(HEARTBEAT);
    await pager.getByRole('button', { name: 'Next' }).click();
    await expect.poll(() => pager.textContent(), { timeout: 20_000 }).toContain('Page 2 of 2');
    await expect.poll(() => page.locator('table.jobs tbody tr').count(), { timeout: 20_000 }).toBe(1);
    expect(await page.locator('table.jobs tbody tr td[data-label="Name"]').textContent()).toBe('filler 01');
  });

  test('demo.divide(integer) with 0, run now from its page: the run shows SQLSTATE 22012 and the message', async () => {
    await page.getByRole('navigation', { name: 'Main' }).getByRole('link', { name: 'Schedule a job' }).click();
    await page.getByLabel('Function').selectOption('demo.divide(integer)');
    await page.getByLabel('n (integer)').fill('0');
    await page.getByLabel('Name (optional)').fill(DIVIDE);
    // Yearly, so that only "Run now" makes it run during the test.
    await page.getByLabel('Schedule', { exact: true }).fill('@yearly');
    await page.getByLabel('Time zone').fill('UTC');
    // An option out of range: the database's HC210, shown at that option.
    await page.getByText('Policy options').click();
    const timeout = page.getByLabel('Timeout (seconds)');
    await timeout.fill('0');
    await page.getByRole('button', { name: 'Schedule', exact: true }).click();
    await expect.poll(() => page.locator('#option-timeout_seconds-error').textContent(), { timeout: 20_000 }).toMatch(/timeout_seconds.*HC210/);
    expect(await timeout.getAttribute('aria-invalid')).toBe('true');
    await timeout.fill('');
    await page.getByRole('button', { name: 'Schedule', exact: true }).click();
    await page.waitForURL(/\/dashboard\/jobs\/\d+$/, { timeout: 20_000 });
    await page.getByRole('heading', { name: DIVIDE }).waitFor();

    await page.getByRole('button', { name: 'Run now' }).click();
    const failed = page.locator('tbody.run[data-status="failed"]').first();
    await failed.waitFor({ timeout: 60_000 });
    expect(await failed.locator('[data-field="sqlstate"]').textContent()).toBe('22012');
    expect(await failed.locator('[data-field="message"]').textContent()).toBe('division by zero');
    expect(await failed.locator('td[data-label="Trigger"]').textContent()).toBe('run now');
    await shoot(page, 'failed-run');
    await page.setViewportSize({ width: 390, height: 844 }); // a phone
    await shoot(page, 'failed-run-phone');
    await page.setViewportSize({ width: 1280, height: 900 });
  });

  test('unschedule asks first, then the job is gone from the table', async () => {
    await page.getByRole('button', { name: 'Unschedule…' }).click();
    const confirm = page.getByRole('alertdialog');
    expect(await confirm.textContent()).toContain(DIVIDE);
    await confirm.getByRole('button', { name: 'Keep it' }).click();
    await confirm.waitFor({ state: 'detached' });
    await page.getByRole('button', { name: 'Unschedule…' }).click();
    await page.getByRole('alertdialog').getByRole('button', { name: 'Yes, unschedule' }).click();
    await page.waitForURL(`${server.url}/dashboard/`, { timeout: 20_000 });
    await page.locator('table.jobs tbody tr', { hasText: HEARTBEAT }).waitFor({ timeout: 20_000 });
    expect(await page.locator('table.jobs tbody tr', { hasText: DIVIDE }).count()).toBe(0);
  });

  test('a running run is cancelled from its row', async () => {
    await page.getByRole('navigation', { name: 'Main' }).getByRole('link', { name: 'Schedule a job' }).click();
    await page.getByLabel('Function').selectOption('demo.nap(double precision)');
    await page.getByLabel('seconds (double precision)').fill('600');
    await page.getByLabel('Name (optional)').fill('a long nap');
    await page.getByLabel('Once, now').check();
    await page.getByRole('button', { name: 'Schedule', exact: true }).click();
    await page.waitForURL(/\/dashboard\/jobs\/\d+$/, { timeout: 20_000 });
    const running = page.locator('tbody.run[data-status="running"]');
    await running.waitFor({ timeout: 60_000 });
    const runId = await running.getAttribute('data-run-id');
    await running.getByRole('button', { name: `Cancel run ${runId}` }).click();
    await page.locator(`tbody.run[data-run-id="${runId}"][data-status="cancelled"]`).waitFor({ timeout: 60_000 });
  });

  test('another user, signed in by pasting a token in a second browser context, sees none of it', async () => {
    const context = await browser.newContext({ viewport: { width: 390, height: 844 } }); // a phone
    urlLists.push(recordRequests(context));
    try {
      const other = await context.newPage();
      await other.goto(`${server.url}/dashboard/`);
      const token = other.getByLabel('Token');
      await token.fill('not a token');
      await other.getByRole('button', { name: 'Sign in' }).click();
      await expect.poll(() => other.locator('#token-error').textContent(), { timeout: 20_000 }).toContain('HC_AUTH_INVALID');
      await shoot(other, 'sign-in-phone');

      await token.fill(`{"Authorization": "Bearer ${alice}"}`); // the GraphiQL header line works too
      await other.getByRole('button', { name: 'Sign in' }).click();
      await expect.poll(() => other.getByTestId('signed-in-as').textContent(), { timeout: 20_000 }).toBe('alice');
      await expect.poll(() => other.locator('table.jobs caption').textContent(), { timeout: 20_000 }).toBe('0 jobs');
      await shoot(other, 'jobs-phone');

      await other.goto(`${server.url}/dashboard/jobs/${heartbeatId}`);
      await other.getByRole('heading', { name: 'Job not found' }).waitFor({ timeout: 20_000 });
      expect(await other.getByText(HEARTBEAT).count()).toBe(0);
      await other.goto(`${server.url}/dashboard/new`);
      await other.getByText('There is no function you may schedule').waitFor({ timeout: 20_000 });
    } finally {
      await context.close();
    }
  });

  test('sign out forgets the token', async () => {
    await page.getByRole('button', { name: 'Sign out' }).click();
    await page.getByLabel('Token').waitFor();
    expect(await page.evaluate(() => sessionStorage.length)).toBe(0);
    await page.reload();
    await page.getByLabel('Token').waitFor();
    await page.getByText('hardcron').first().waitFor();
  });

  test('no page asked for anything outside the server\'s origin', () => {
    const all = urlLists.flat();
    expect(all.length).toBeGreaterThan(10);
    expect(all.some((url) => url.startsWith('ws://'))).toBe(true); // the subscription's websocket
    expect(foreignUrls(all, server.url)).toEqual([]);
  });
});
