import { readFileSync } from 'node:fs';
import { afterAll, beforeAll, describe, expect, test } from 'vitest';
import type { Browser, Locator, Page } from 'playwright-core';
import type { Executor } from '../../server/executor/executor.ts';
import type { RunningGraphQLServer } from '../../server/api/server.ts';
import { chromiumPath, launchChromium, noChromiumReason } from '../support/browser.ts';
import { useTestDatabase } from '../support/database.ts';
import { startExecutor } from '../support/executor.ts';
import { createBilling } from '../support/jobs.ts';
import { data, operation, startTestServer, tokenFor } from '../support/server.ts';

const executablePath = chromiumPath();
if (!executablePath) console.warn(`GraphiQL browser test skipped: ${noChromiumReason()}`);

const JOB_NAME = 'close the day from the browser test';
const JOBS_QUERY = '{ jobs { totalCount nodes { id name } } }';
const SUBSCRIPTION = 'subscription RunsOfMyJobs { jobRunEvents { jobId status } }';

/** The subscription of the README's walkthrough, step 3, as written there. */
function readmeStep3Subscription(): string {
  const readme = readFileSync(new URL('../../README.md', import.meta.url), 'utf8');
  const step = /^3\. [^]*?```graphql\n([^]*?)\n\s*```/m.exec(readme.slice(readme.indexOf('## Five minutes with hardcron')));
  if (!step) throw new Error('README.md: no GraphQL snippet in step 3 of "Five minutes with hardcron"');
  return (step[1] as string).trim();
}

/** A GraphQL request as the page sent it. */
interface SentRequest { query: string; authorization: string | undefined }

/**
 * GraphiQL (Ruru, served at /) in a real Chromium, used the way the README tells a person to:
 * paste `{"Authorization": "Bearer <token>"}` into the Headers tab and run a query, then a
 * subscription. Nothing may come from outside the local server (the machine may be offline).
 */
describe.skipIf(!executablePath)(`GraphiQL in Chromium, as the README uses it${executablePath ? '' : ` (skipped: ${noChromiumReason()})`}`, () => {
  const db = useTestDatabase();
  let server: RunningGraphQLServer;
  let executor: Executor;
  let browser: Browser;
  let page: Page;
  let alice: string;
  let jobId: string;
  /** Every URL the page asked for, websockets included. */
  const urls: string[] = [];
  /** The GraphQL POSTs the page sent (introspection left out). */
  const sent: SentRequest[] = [];
  /** The payloads of the graphql-ws connection_init messages the page sent. */
  const connectionInits: unknown[] = [];

  beforeAll(async () => {
    await createBilling(db());
    await db().addUser('alice', { scheduler: true, memberOf: ['billing'] });
    server = await startTestServer(db());
    alice = await tokenFor('alice');
    const { scheduleJob } = await data<{ scheduleJob: { job: { id: string } } }>(server, operation('schedule-job'), {
      functionSignature: 'billing.close_day(date)',
      arguments: ['2026-11-01'],
      schedule: '0 3 * * *',
      name: JOB_NAME,
    }, alice);
    jobId = scheduleJob.job.id;
    executor = await startExecutor(db());

    browser = await launchChromium(executablePath!);
    page = await browser.newPage();
    page.on('request', (request) => {
      urls.push(request.url());
      if (request.method() !== 'POST' || new URL(request.url()).pathname !== '/graphql') return;
      const { query = '' } = (request.postDataJSON() ?? {}) as { query?: string };
      if (!query.includes('IntrospectionQuery')) sent.push({ query, authorization: request.headers().authorization });
    });
    page.on('websocket', (socket) => {
      urls.push(socket.url());
      socket.on('framesent', ({ payload }) => {
        const message = JSON.parse(String(payload)) as { type?: string; payload?: unknown };
        if (message.type === 'connection_init') connectionInits.push(message.payload ?? null);
      });
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

  test('GraphiQL opens at the server\'s root, ready to run a query', async () => {
    await page.goto(`${server.url}/`);
    await queryEditor(page).waitFor();
    await page.locator('.graphiql-execute-button').waitFor();
    await page.getByRole('button', { name: 'Headers', exact: true }).waitFor();
  }, 60_000);

  test('with alice\'s bearer token in the Headers tab, a query shows her job', async () => {
    await replaceText(page, queryEditor(page), JOBS_QUERY);
    await page.getByRole('button', { name: 'Headers', exact: true }).click();
    await replaceText(page, headersEditor(page), `{"Authorization": "Bearer ${alice}"}`);
    await page.locator('.graphiql-execute-button').click();

    await expect.poll(() => responseText(page), { timeout: 20_000 }).toContain(JOB_NAME);
    const shown = await responseText(page);
    expect(shown).toContain('"totalCount": 1');
    expect(JSON.parse(shown)).toEqual({ data: { jobs: { totalCount: 1, nodes: [{ id: jobId, name: JOB_NAME }] } } });
    expect(sent.at(-1)).toEqual({ query: JOBS_QUERY, authorization: `Bearer ${alice}` });
  }, 60_000);

  test('with the headers cleared, the same query runs as $anonymous and shows no jobs', async () => {
    await page.getByRole('button', { name: 'Headers', exact: true }).click();
    await replaceText(page, headersEditor(page), '');
    await page.locator('.graphiql-execute-button').click();

    await expect.poll(() => responseText(page), { timeout: 20_000 }).toContain('"totalCount": 0');
    expect(JSON.parse(await responseText(page))).toEqual({ data: { jobs: { totalCount: 0, nodes: [] } } });
    expect(sent).toHaveLength(2);
    expect(sent.at(-1)).toEqual({ query: JOBS_QUERY, authorization: undefined });
  }, 60_000);

  test('a subscription run with alice\'s header authenticates its websocket and receives her job\'s runs', async () => {
    await page.getByRole('button', { name: 'Headers', exact: true }).click();
    await replaceText(page, headersEditor(page), `{"Authorization": "Bearer ${alice}"}`);
    await replaceText(page, queryEditor(page), SUBSCRIPTION);
    // GraphiQL reads an edited operation a moment later; the tab's title shows it has.
    await expect.poll(() => page.getByRole('tab', { selected: true }).innerText(), { timeout: 20_000 }).toBe('RunsOfMyJobs');
    await page.locator('.graphiql-execute-button').click();

    // Every second, so that a run happens whenever the subscription is listening.
    const { scheduleJob } = await data<{ scheduleJob: { job: { id: string } } }>(server, operation('schedule-job'), {
      functionSignature: 'billing.close_day(date)',
      arguments: ['2026-11-02'],
      schedule: '* * * * * *',
      name: 'tick from the browser test',
    }, alice);
    const tickId = scheduleJob.job.id;

    await expect.poll(async () => parsed(await responseText(page)), { timeout: 30_000 })
      .toEqual({ data: { jobRunEvents: { jobId: tickId, status: 'succeeded' } } });
    expect(connectionInits).toEqual([{ Authorization: `Bearer ${alice}` }]);
    await page.locator('.graphiql-execute-button').click(); // stops the subscription
    await data(server, operation('pause-job'), { id: tickId }, alice);
  }, 60_000);

  test('README step 3: a new tab starts without the header, so the subscription is refused; pasted there too, it receives the runs', async () => {
    const subscription = readmeStep3Subscription();
    expect(subscription).toMatch(/^subscription \{ jobRunEvents \{/);
    await page.getByRole('button', { name: 'New tab' }).click();
    await expect.poll(() => page.getByRole('tab').count()).toBe(2);
    await page.getByRole('button', { name: 'Headers', exact: true }).click();
    expect(await editorText(headersEditor(page))).toBe('');
    await replaceText(page, queryEditor(page), subscription);
    const inits = connectionInits.length;
    await page.locator('.graphiql-execute-button').click();
    // The pane shows what fits on screen (the message wraps): the code is enough.
    await expect.poll(() => responseText(page), { timeout: 20_000 }).toContain('"code": "HC_AUTH_REQUIRED"');
    await expect.poll(() => connectionInits.slice(inits)).toEqual([{}]);

    await replaceText(page, headersEditor(page), `{"Authorization": "Bearer ${alice}"}`);
    const { scheduleJob } = await data<{ scheduleJob: { job: { id: string } } }>(server, operation('schedule-job'), {
      functionSignature: 'billing.close_day(date)',
      arguments: ['2026-11-03'],
      schedule: '* * * * * *',
      name: 'tick for step 3',
    }, alice);
    await page.locator('.graphiql-execute-button').click();
    await expect.poll(async () => parsed(await responseText(page)), { timeout: 30_000 })
      .toMatchObject({ data: { jobRunEvents: { jobId: scheduleJob.job.id, status: 'succeeded' } } });
    await expect.poll(() => connectionInits.slice(inits)).toEqual([{}, { Authorization: `Bearer ${alice}` }]);
    // Switching tabs stops it, as the README says: the page completes the subscription.
    await page.getByRole('tab').first().click();
    await data(server, operation('pause-job'), { id: scheduleJob.job.id }, alice);
  }, 60_000);

  test('the page loaded nothing from outside the local server', () => {
    const local = [`${server.url}/`, `${server.url.replace(/^http/, 'ws')}/`, 'data:', 'blob:'];
    expect(urls.length).toBeGreaterThan(0);
    expect(urls.filter((url) => !local.some((prefix) => url.startsWith(prefix)))).toEqual([]);
  });
});

function queryEditor(page: Page): Locator {
  return page.getByRole('region', { name: 'Operation Editor' }).locator('.monaco-editor');
}

function headersEditor(page: Page): Locator {
  return page.getByRole('region', { name: 'Headers' }).locator('.monaco-editor[data-uri$="-request-headers.json"]');
}

/** The text a Monaco editor shows (its rendered lines, so only what fits on screen). */
async function editorText(editor: Locator): Promise<string> {
  return (await editor.locator('.view-lines').innerText()).replaceAll('\u00a0', ' ').trim();
}

/** The text of GraphiQL's response pane. */
function responseText(page: Page): Promise<string> {
  return editorText(page.getByRole('region', { name: 'Result Window' }));
}

function parsed(text: string): unknown {
  try {
    return JSON.parse(text);
  } catch {
    return text;
  }
}

/**
 * Replaces an editor's text as a person pasting would: click into it, select all, delete, then
 * insert the text in one go (typing key by key would let the editor auto-close brackets).
 */
async function replaceText(page: Page, editor: Locator, text: string): Promise<void> {
  await editor.locator('.view-lines').click();
  await page.keyboard.press('ControlOrMeta+A');
  await page.keyboard.press('Delete');
  if (text) await page.keyboard.insertText(text);
  await expect.poll(() => editorText(editor)).toBe(text);
}
