import { execFile } from 'node:child_process';
import { mkdtemp, readFile, rm } from 'node:fs/promises';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { fileURLToPath } from 'node:url';
import { afterAll, beforeAll, describe, expect, test } from 'vitest';
import { eventually, freePort, spawnHardcron, type HardcronProcess } from '../support/child.ts';
import { useTestDatabase } from '../support/database.ts';
import { data, graphql, subscribe, wsClient } from '../support/server.ts';

const ROOT = fileURLToPath(new URL('../../', import.meta.url));
const SECTION = '## Five minutes with hardcron';
/** The URL the README's shell snippets name: `npm start`'s default address. */
const README_URL = 'http://127.0.0.1:5678';
const READY = /^hardcron ready at (http:\/\/\S+?)\/? \(Ctrl-C stops\)$/;
const READY_TIMEOUT_MS = 90_000;

interface Snippet {
  /** The walkthrough step the snippet belongs to (null: after the numbered steps). */
  readonly step: number | null;
  readonly lang: string;
  readonly code: string;
  /** The step's text up to the snippet: where the README says what to put in. */
  readonly before: string;
}

/** The fenced snippets of the README's walkthrough, read from README.md itself. */
function walkthroughSnippets(readme: string): Snippet[] {
  const start = readme.indexOf(SECTION);
  if (start < 0) throw new Error(`README.md has no "${SECTION}" section`);
  const end = readme.indexOf('\n## ', start + SECTION.length);
  const lines = readme.slice(start, end < 0 ? undefined : end).split('\n');
  const snippets: Snippet[] = [];
  let step: number | null = null;
  let stepText: string[] = [];
  for (let i = 0; i < lines.length; i++) {
    const line = lines[i] as string;
    const item = /^(\d+)\. /.exec(line);
    if (item) {
      step = Number(item[1]);
      stepText = [];
    } else if (/^\S/.test(line) && !line.startsWith('```')) {
      step = null; // a paragraph after the list
    }
    const fence = /^(\s*)```(\w+)\s*$/.exec(line);
    if (!fence) {
      stepText.push(line);
      continue;
    }
    const indent = (fence[1] as string).length;
    const code: string[] = [];
    for (i++; i < lines.length && !/^\s*```\s*$/.test(lines[i] as string); i++) code.push((lines[i] as string).slice(indent));
    snippets.push({ step, lang: fence[2] as string, code: code.join('\n'), before: stepText.join('\n') });
    stepText = [];
  }
  return snippets;
}

/** Runs `script` with bash as the README's reader would, in the project directory. */
function bash(script: string, env: Record<string, string | undefined>): Promise<{ code: number; stdout: string; stderr: string }> {
  return new Promise((resolve) => {
    execFile('bash', ['-c', script], { cwd: ROOT, env: { PATH: process.env.PATH, HOME: process.env.HOME, ...env }, timeout: 60_000 }, (error, stdout, stderr) => {
      resolve({ code: error ? (typeof error.code === 'number' ? error.code : 1) : 0, stdout, stderr });
    });
  });
}

interface RunFields {
  status: string;
  errorSqlstate: string | null;
  errorMessage: string | null;
  errorContext: string | null;
}

/**
 * The walkthrough "Five minutes with hardcron", snippet by snippet as README.md has it, against
 * a real `hardcron start` (test database through DATABASE_URL: it installs hardcron, provisions
 * the demo, runs the GraphQL server and an executor) with the token it prints. The only changes
 * to a snippet are the ones the README asks its reader to make (a job id it says to copy) and,
 * for the shell, the server's address (the test server listens on a free port, not 5678).
 */
describe('README.md: "Five minutes with hardcron" works as written', () => {
  const db = useTestDatabase({ install: false });
  let cli: HardcronProcess;
  let dataDir: string;
  let url: string;
  let token: string;
  let snippets: Snippet[];

  beforeAll(async () => {
    snippets = walkthroughSnippets(await readFile(join(ROOT, 'README.md'), 'utf8'));
    dataDir = await mkdtemp(join(tmpdir(), 'hardcron-readme-'));
    cli = spawnHardcron(['start'], { DATABASE_URL: db().adminUrl, PORT: String(await freePort()), HARDCRON_DATA_DIR: dataDir });
    [, url] = (await cli.waitForLine(READY, READY_TIMEOUT_MS)) as [string, string];
    // Step 1: the printed header line is what the reader pastes.
    const header = /^\s*(\{"Authorization": "Bearer [^"]+"\})\s*$/m.exec(cli.stdout);
    if (!header) throw new Error(`no Authorization line in:\n${cli.stdout}`);
    token = (JSON.parse(header[1] as string) as { Authorization: string }).Authorization.replace(/^Bearer /, '');
  }, READY_TIMEOUT_MS + 10_000);

  afterAll(async () => {
    await cli?.kill();
    if (dataDir) await rm(dataDir, { recursive: true, force: true });
  });

  test('the section has the snippets this test walks through', () => {
    expect(snippets.map((s) => [s.step, s.lang])).toEqual([
      [2, 'graphql'], [3, 'graphql'], [4, 'graphql'], [5, 'graphql'], [5, 'graphql'], [6, 'graphql'], [null, 'sh'],
    ]);
    // GraphiQL's headers belong to each tab (test/api/graphiql.test.ts shows a new tab's subscription
    // refused without them): step 3 opens a second tab, so it must say to paste the header there too.
    const step3 = snippets.find((s) => s.step === 3)?.before.replace(/\s+/g, ' ') ?? '';
    expect(step3).toMatch(/second tab/);
    expect(step3).toMatch(/paste the same `\{"Authorization": "Bearer …"\}` line into this tab's \*\*Headers\*\*/);
  });

  test('every snippet, in order: the one-off runs at once and fails with 22012; the heartbeat runs and pauses; curl lists both', { timeout: 120_000 }, async () => {
    const server = { url };
    /** The job id each step's mutation returned, for the steps that tell the reader to use it. */
    const returnedIds = new Map<number, string>();
    const ws = wsClient(server, token);
    try {
      for (const snippet of snippets) {
        if (snippet.lang === 'sh') {
          // The shell snippet as written (TOKEN is defined in it), against this test's server.
          expect(snippet.code).toContain(README_URL);
          const result = await bash(snippet.code.replaceAll(README_URL, url), { HARDCRON_DATA_DIR: dataDir });
          expect(result, result.stderr).toMatchObject({ code: 0 });
          const answer = JSON.parse(result.stdout) as { data: { jobs: { nodes: Array<{ name: string; lastStatus: string | null }> } } };
          expect(answer.data.jobs.nodes.map((job) => job.name).sort()).toEqual(['divide by zero', 'heartbeat']);
          expect(answer.data.jobs.nodes.find((job) => job.name === 'divide by zero')?.lastStatus).toBe('failed');
          continue;
        }
        expect(snippet.lang).toBe('graphql');
        let query = snippet.code;
        // Where the README says to put a step's id in place of a placeholder, do just that.
        const copy = /the `id` that step (\d+) returned in place of `(\d+)`/.exec(snippet.before);
        if (copy) {
          const id = returnedIds.get(Number(copy[1]));
          expect(id, `step ${copy[1]} returned no id`).toBeDefined();
          expect(query).toContain(`"${copy[2]}"`);
          query = query.replace(`"${copy[2]}"`, JSON.stringify(id));
        }

        if (query.trimStart().startsWith('subscription')) {
          // Step 3, over the websocket endpoint: the heartbeat's runs arrive, running then
          // succeeded. The first event may be the end of a run that started before the
          // subscription did; a run that starts after it sends both.
          const heartbeat = returnedIds.get(2);
          const subscription = subscribe<{ jobRunEvents: { status: string; jobId: string } }>(ws, query);
          try {
            await eventually('a heartbeat run seen from running to succeeded', async () => {
              const ofHeartbeat = subscription.events.filter((e) => e.jobRunEvents.jobId === heartbeat).map((e) => e.jobRunEvents.status);
              const running = ofHeartbeat.indexOf('running');
              return running >= 0 && ofHeartbeat.indexOf('succeeded', running) > running ? true : undefined;
            });
            expect(subscription.errors).toEqual([]);
          } finally {
            subscription.stop();
          }
          continue;
        }

        const answer = await data<Record<string, unknown>>(server, query, {}, token);
        const scheduled = (answer.scheduleJob as { job: { id: string; runAt?: string | null } } | undefined)?.job;
        if (scheduled && snippet.step !== null) returnedIds.set(snippet.step, scheduled.id);

        if (query.includes('demo.divide(integer)')) {
          // Neither schedule nor runAt: one run, due at once.
          expect(scheduled?.runAt).toEqual(expect.any(String));
          expect(Date.parse(scheduled?.runAt as string)).toBeLessThanOrEqual(Date.now());
        }
        if (query.includes('condition: { name: "divide by zero" }')) {
          // As the README says: run the query again until the run has ended.
          const job = await eventually('the one-off run has ended', async () => {
            const { jobs } = await data<{ jobs: { nodes: Array<{ id: string; nextRunAt: string | null; runs: { nodes: RunFields[] } }> } }>(server, query, {}, token);
            const found = jobs.nodes[0];
            return found && found.runs.nodes.length > 0 && found.runs.nodes.every((run) => run.status !== 'running') ? found : undefined;
          });
          expect(job.id).toBe(returnedIds.get(5));
          expect(job.nextRunAt).toBeNull();
          expect(job.runs.nodes).toEqual([
            { status: 'failed', errorSqlstate: '22012', errorMessage: 'division by zero', errorContext: expect.any(String) },
          ]);
        }
        if (query.includes('pauseJob')) {
          expect(answer.pauseJob).toEqual({ job: { id: returnedIds.get(2), enabled: false, nextRunAt: null } });
        }
        if (query.includes('{ jobs { nodes {')) {
          const { nodes } = answer.jobs as { nodes: Array<{ id: string; name: string }> };
          expect(nodes.map((job) => job.name)).toContain('heartbeat');
        }
      }
    } finally {
      await ws.dispose();
    }
    // Every step that says to note or copy an id had one to give.
    expect([...returnedIds.keys()].sort()).toEqual([2, 5]);
  });

  test('step 1: without the header a mutation says that a token is missing (HC_AUTH_REQUIRED)', async () => {
    const mutation = snippets.find((s) => s.step === 2)?.code as string;
    const refused = await graphql({ url }, mutation);
    expect(refused.body.errors?.map((error) => error.extensions?.code)).toEqual(['HC_AUTH_REQUIRED']);
    expect(refused.body.errors?.[0]?.message).toMatch(/^this needs a token/);
  });
});
