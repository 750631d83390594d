import { mkdtemp, readFile, rm, stat } from 'node:fs/promises';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { decodeJwt } from 'jose';
import { afterAll, beforeAll, describe, expect, test } from 'vitest';
import { connectionRefused, eventually, freePort, spawnHardcron, type HardcronProcess } from '../support/child.ts';
import { useTestDatabase } from '../support/database.ts';
import { data, graphql, tokenFor } from '../support/server.ts';

const READY = /^hardcron ready at (http:\/\/\S+?)\/? \(Ctrl-C stops\)$/;
const READY_TIMEOUT_MS = 90_000;

interface Started {
  process: HardcronProcess;
  url: string;
  token: string;
  mutation: string;
}

/** What `hardcron start` printed: the URL of its ready line, the demo token and the mutation to try. */
function parseWelcome(cli: HardcronProcess, url: string): Started {
  const header = /^\s*(\{"Authorization": "Bearer [^"]+"\})\s*$/m.exec(cli.stdout);
  if (!header) throw new Error(`no Authorization line in:\n${cli.stdout}`);
  const authorization = (JSON.parse(header[1] as string) as { Authorization: string }).Authorization;
  const mutation = /^\s*(mutation \{ scheduleJob\(.*\} \} \})\s*$/m.exec(cli.stdout);
  if (!mutation) throw new Error(`no mutation in:\n${cli.stdout}`);
  return { process: cli, url, token: authorization.replace(/^Bearer /, ''), mutation: mutation[1] as string };
}

/**
 * `hardcron start` against the test database (DATABASE_URL: no embedded PostgreSQL), with a data
 * directory of its own: it installs hardcron, provisions the demo, and runs the GraphQL server
 * and an executor child process until SIGINT.
 */
describe('hardcron start with DATABASE_URL', () => {
  const db = useTestDatabase({ install: false });
  const spawned: HardcronProcess[] = [];
  let dataDir: string;
  let first: Started;
  let port: number;

  const start = async (env: Record<string, string> = {}): Promise<Started> => {
    port = await freePort();
    const cli = spawnHardcron(['start'], { DATABASE_URL: db().adminUrl, PORT: String(port), HARDCRON_DATA_DIR: dataDir, ...env });
    spawned.push(cli);
    const [, url] = await cli.waitForLine(READY, READY_TIMEOUT_MS);
    return parseWelcome(cli, url as string);
  };

  const secrets = async (): Promise<Record<string, string>> =>
    JSON.parse(await readFile(join(dataDir, 'secrets.json'), 'utf8')) as Record<string, string>;

  const countHeartbeats = async (): Promise<number> =>
    (await db().admin.query<{ n: number }>('select count(*)::int as n from demo.heartbeats')).rows[0]?.n ?? -1;

  beforeAll(async () => {
    dataDir = await mkdtemp(join(tmpdir(), 'hardcron-start-'));
  });

  afterAll(async () => {
    // The whole process group: the start process and its executor child, even after a failure.
    await Promise.all(spawned.map((cli) => cli.kill()));
    await rm(dataDir, { recursive: true, force: true });
  });

  test('reaches ready and prints the URL of its port, a token and a mutation', { timeout: READY_TIMEOUT_MS + 10_000 }, async () => {
    first = await start();
    expect(first.url).toBe(`http://127.0.0.1:${port}`);
    expect(first.process.stdout).toContain(`GraphiQL:  http://127.0.0.1:${port}/`);
    // The dashboard link signs demo in with the same token, in the fragment (never sent).
    expect(first.process.stdout).toContain(`Dashboard: http://127.0.0.1:${port}/dashboard/#token=${first.token}\n`);
    expect(first.process.stdout).toContain(`PostgreSQL: postgres://`);
    expect(first.mutation).toContain('functionSignature: "demo.heartbeat()"');
    expect(first.process.stdout).toContain('Token for the user "demo", valid 12 hours.');
    const { iat, exp } = decodeJwt(first.token);
    expect(exp! - iat!).toBe(12 * 3600);
  });

  test('the token works against the printed URL, and the demo job it schedules runs', { timeout: 90_000 }, async () => {
    const server = { url: first.url };
    const { jobs } = await data<{ jobs: { totalCount: number } }>(server, '{ jobs { totalCount } }', {}, first.token);
    expect(jobs.totalCount).toBe(0);

    // The printed mutation, every second instead of every five.
    const everySecond = first.mutation.replace('schedule: "*/5 * * * * *"', 'schedule: "*/1 * * * * *"');
    expect(everySecond).not.toBe(first.mutation);
    const { scheduleJob } = await data<{ scheduleJob: { job: { id: string; nextRunAt: string | null } } }>(server, everySecond, {}, first.token);
    const jobId = scheduleJob.job.id;
    expect(scheduleJob.job.nextRunAt).not.toBeNull();

    await eventually('a succeeded run of the demo job', async () => {
      const { job } = await data<{ job: { runs: { nodes: Array<{ status: string }> } } }>(
        server,
        'query ($id: BigInt!) { job(id: $id) { runs(first: 20, orderBy: ID_DESC) { nodes { status } } } }',
        { id: jobId },
        first.token,
      );
      return job.runs.nodes.some((run) => run.status === 'succeeded') ? true : undefined;
    }, 60_000, 250);

    // The job is the demo user's; demo.heartbeat() is security definer, so its row is written as
    // the function's owner, demo_owner.
    const { rows: jobRows } = await db().admin.query('select owner, function_owner from data.jobs where id = $1', [jobId]);
    expect(jobRows).toEqual([{ owner: db().role('demo'), function_owner: db().role('demo_owner') }]);
    const { rows: heartbeats } = await db().admin.query<{ by_role: string; n: number }>(
      'select by_role, count(*)::int as n from demo.heartbeats group by by_role',
    );
    expect(heartbeats).toEqual([{ by_role: db().role('demo_owner'), n: expect.any(Number) }]);
    expect(heartbeats[0]?.n).toBeGreaterThan(0);
  });

  test('the secrets are kept in <data dir>/secrets.json with mode 0600', async () => {
    expect((await stat(join(dataDir, 'secrets.json'))).mode & 0o777).toBe(0o600);
    const kept = await secrets();
    expect(Object.keys(kept).sort()).toEqual(['authenticatorPassword', 'executorPassword', 'jwtSecret']);
    for (const value of Object.values(kept)) expect(value.length).toBeGreaterThanOrEqual(32);
  });

  test('an executor child process holds its lease as start:<pid>', async () => {
    const executors = first.process.liveGroup().filter((member) => member.ppid === first.process.pid && / executor$/.test(member.command));
    expect(executors).toHaveLength(1);
    const { rows } = await db().admin.query('select id from data.executors where id = $1', [`start:${first.process.pid}`]);
    expect(rows).toHaveLength(1);
    const { rows: sessions } = await db().admin.query<{ usename: string }>(
      'select distinct usename from pg_stat_activity where datname = current_database() and application_name = $1',
      [`hardcron executor start:${first.process.pid}`],
    );
    expect(sessions).toEqual([{ usename: db().role('executor') }]);
    // No secret on a command line (anyone on the machine can read those).
    const commands = first.process.liveGroup().map((member) => member.command);
    expect(commands.length).toBeGreaterThanOrEqual(2);
    for (const secret of Object.values(await secrets())) {
      for (const command of commands) expect(command).not.toContain(secret);
    }
  });

  test('SIGINT stops it all: exit code 0, the lease released, the port closed, no process left', { timeout: 60_000 }, async () => {
    first.process.signal('SIGINT');
    expect(await first.process.exited).toEqual({ code: 0, signal: null });
    expect(first.process.liveGroup()).toEqual([]); // the executor child is gone too
    const { rows } = await db().admin.query('select id from data.executors where id = $1', [`start:${first.process.pid}`]);
    expect(rows).toEqual([]);
    expect(await connectionRefused(port)).toBe(true);
  });

  test('no secret appears in what it printed', async () => {
    const output = first.process.output;
    for (const value of Object.values(await secrets())) expect(output).not.toContain(value);
    const adminPassword = decodeURIComponent(new URL(db().adminUrl).password);
    if (adminPassword) expect(output).not.toContain(adminPassword);
    // stdout is for people, stderr for JSON logs.
    for (const line of first.process.stderr.split('\n').filter(Boolean)) expect(() => JSON.parse(line)).not.toThrow();
  });

  test('a second start on the same database and data directory reaches ready again (with JWT_MAX_TTL=90m: a shorter demo token, longer ones refused)', { timeout: READY_TIMEOUT_MS + 60_000 }, async () => {
    const before = await secrets();
    const heartbeats = await countHeartbeats();
    const second = await start({ JWT_MAX_TTL: '90m' });
    expect(await secrets()).toEqual(before); // the same secrets: not generated again
    // The demo token fits JWT_MAX_TTL, which the server applies: a 2 h token is refused.
    expect(second.process.stdout).toContain('Token for the user "demo", valid 90m.');
    const { iat, exp } = decodeJwt(second.token);
    expect(exp! - iat!).toBe(90 * 60);
    const twoHours = await tokenFor('demo', { exp: Math.floor(Date.now() / 1000) + 2 * 3600 }, before.jwtSecret);
    const refused = await graphql({ url: second.url }, '{ jobs { totalCount } }', {}, twoHours);
    expect([refused.status, refused.body.errors?.[0]?.extensions?.code]).toEqual([401, 'HC_AUTH_TOKEN_TOO_LONG']);
    // The demo is provisioned once: its data (and the job scheduled above) are still there.
    const { jobs } = await data<{ jobs: { totalCount: number } }>({ url: second.url }, '{ jobs { totalCount } }', {}, second.token);
    expect(jobs.totalCount).toBe(1);
    expect(await countHeartbeats()).toBeGreaterThanOrEqual(heartbeats);
    const { rows: leases } = await db().admin.query('select id from data.executors where id = $1', [`start:${second.process.pid}`]);
    expect(leases).toHaveLength(1);

    second.process.signal('SIGINT');
    expect(await second.process.exited).toEqual({ code: 0, signal: null });
    expect(second.process.liveGroup()).toEqual([]);
    const { rows } = await db().admin.query('select id from data.executors');
    expect(rows).toEqual([]);
    for (const value of Object.values(before)) expect(second.process.output).not.toContain(value);
  });

  describe('with LOG_LEVEL=info, stopped by Ctrl-C in a terminal', () => {
    let third: Started;

    beforeAll(async () => {
      third = await start({ LOG_LEVEL: 'info' });
    }, READY_TIMEOUT_MS + 10_000);

    // The executor child logs JSON to stdout; start routes its stdout to stderr, so that start's
    // own stdout holds only the lines meant for people.
    test('reaches ready; stdout has the human lines only, every JSON log line (the executor\'s too) is on stderr', { timeout: 40_000 }, async () => {
      // The executor child logs "executor started" once it runs.
      await eventually('the executor\'s start-up log line', async () => (third.process.output.includes('"msg":"executor started"') ? true : undefined));
      const jsonOnStdout = third.process.stdout.split('\n').filter((line) => line.startsWith('{'));
      expect(jsonOnStdout).toEqual([]);
      const logs = third.process.stderr.split('\n').filter(Boolean).map((line) => JSON.parse(line) as { name: string; msg: string });
      expect(logs).toContainEqual(expect.objectContaining({ name: 'hardcron', msg: 'GraphQL server listening' }));
      expect(logs).toContainEqual(expect.objectContaining({ name: 'hardcron-executor', msg: 'executor started' }));
    });

    // Ctrl-C in a terminal signals the whole foreground process group: the executor has a group
    // of its own, so it is stopped once, by start, and releases its lease.
    test('Ctrl-C (SIGINT to the whole process group) stops it all with exit code 0 and releases the lease', { timeout: 60_000 }, async () => {
      const lease = `start:${third.process.pid}`;
      expect((await db().admin.query('select id from data.executors where id = $1', [lease])).rows).toHaveLength(1);
      third.process.signalGroup('SIGINT');
      expect(await third.process.exited).toEqual({ code: 0, signal: null });
      expect(third.process.liveGroup()).toEqual([]);
      expect((await db().admin.query('select id from data.executors where id = $1', [lease])).rows).toEqual([]);
      expect(third.process.output).not.toContain('second signal');
    });
  });
});
