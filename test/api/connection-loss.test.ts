import type pg from 'pg';
import { pino } from 'pino';
import { afterAll, afterEach, beforeAll, beforeEach, describe, expect, test } from 'vitest';
import { startGraphQLServer, type RunningGraphQLServer } from '../../server/api/server.ts';
import type { Executor } from '../../server/executor/executor.ts';
import { eventually, freePort, spawnHardcron, type HardcronProcess } from '../support/child.ts';
import { connect, useTestDatabase } from '../support/database.ts';
import { finishedRuns, newestEventId, runNow, startExecutor } from '../support/executor.ts';
import { createOwner } from '../support/jobs.ts';
import {
  authenticatorUrl,
  data,
  graphql,
  operation,
  subscribe,
  TEST_JWT_SECRET,
  tokenFor,
  wsClient,
  type GraphQLResponse,
  type Subscription,
} from '../support/server.ts';
import { hostAndPort, startTcpProxy, throughProxy, type TcpProxy } from '../support/tcp-proxy.ts';
import { status, untilStatus as untilStatusOf } from '../support/http.ts';

const DEADLINE_MS = 60_000;

interface RunEvent {
  jobRunEvents: { id: string; runId: string; jobId: string; status: string };
}
interface LogLine {
  level: number;
  msg: string;
  [key: string]: unknown;
}

const WARN = 40;
const LOST = 'database connection lost: requests get HC_DATABASE_UNAVAILABLE and /readyz answers 503 until a connection succeeds; reconnecting as needed';
const BACK = 'database connection works again';
const READ_ONLY = 'database is read-only (a standby, or in recovery): writes get HC_DATABASE_READ_ONLY and /readyz answers 503 until it accepts writes';

const untilStatus = (url: string, wanted: number): Promise<unknown> => untilStatusOf(url, wanted, DEADLINE_MS, 100);

/** The code of the first error of a GraphQL answer. */
function errorCode(response: GraphQLResponse): unknown {
  return response.body.errors?.[0]?.extensions?.code;
}

const events = (subscription: Subscription<RunEvent>): Array<[string, string]> =>
  subscription.events.map((e) => [e.jobRunEvents.jobId, e.jobRunEvents.status]);

/**
 * The database goes away under the GraphQL server (a TCP proxy between them drops every
 * connection and refuses new ones, then listens again), at each moment a connection can be in:
 * inside a request's transaction (waiting for a lock, or idle between statements), idle in the
 * pool, as the run event reader's LISTEN connection, under a subscription. The server never dies
 * of it (an 'error' event nobody handles would end the process: here it is an uncaught exception
 * that fails the test, and the last test runs the real `hardcron server` and checks that it is
 * still running), answers HC_DATABASE_UNAVAILABLE meanwhile, logs the outage once, and serves
 * again once the database is back, without being told. Then a read-only database behind the
 * address: HC_DATABASE_READ_ONLY for writes and /readyz, and writable again afterwards.
 */
describe('the GraphQL server when its database connections break', { timeout: 3 * DEADLINE_MS }, () => {
  const db = useTestDatabase();
  const uncaught: unknown[] = [];
  const onUncaught = (error: unknown): void => {
    uncaught.push(error);
  };
  const logs: LogLine[] = [];
  let url: string;
  let proxy: TcpProxy;
  let server: RunningGraphQLServer;
  let executor: Executor;
  let alice: pg.Client;
  let aliceToken: string;

  beforeAll(async () => {
    process.on('uncaughtException', onUncaught);
    await createOwner(db(), 'work', `
      create function work.instant() returns void security definer set search_path = pg_catalog, pg_temp
        language sql as $$ select $$;`);
    await db().addUser('alice', { scheduler: true, memberOf: ['work'] });
    await db().addUser('bob');
    alice = await db().login('alice');
    aliceToken = await tokenFor('alice');
    url = await authenticatorUrl(db());
    proxy = await startTcpProxy(hostAndPort(url));
    server = await startGraphQLServer({
      connectionString: throughProxy(url, proxy),
      auth: { secret: TEST_JWT_SECRET },
      logger: pino({ level: 'debug' }, { write: (line: string) => void logs.push(JSON.parse(line) as LogLine) }),
      port: 0,
      // Long enough that a request waiting for a lock is still waiting when the link breaks.
      lockTimeoutMs: 10 * DEADLINE_MS,
      statementTimeoutMs: 10 * DEADLINE_MS,
    });
    // The executor reaches the database directly: runs go on while the server's link is down.
    executor = await startExecutor(db());
  });
  beforeEach(async () => {
    await proxy.up();
    await untilStatus(`${server.url}/readyz`, 200);
    logs.length = 0;
  });
  afterEach(() => {
    expect(uncaught.splice(0), 'uncaught exceptions (an unhandled error event of a connection?)').toEqual([]);
  });
  afterAll(async () => {
    process.off('uncaughtException', onUncaught);
    await executor?.stop();
    await server?.stop();
    await proxy?.close();
  });

  /** The server's log lines at warn or above, by message. */
  const warnings = (): string[] => logs.filter((line) => line.level >= WARN).map((line) => line.msg);

  test('a request waiting inside its transaction when the link breaks gets HC_DATABASE_UNAVAILABLE; the next ones succeed once it is back', async () => {
    const job = await runNow(alice, 'work.instant()');
    const holder = await connect(db().adminUrl);
    try {
      // The mutation's UPDATE waits for this row lock, inside the request's transaction.
      await holder.query('begin');
      await holder.query('select 1 from data.jobs where id = $1 for update', [job]);
      const pausing = graphql(server, operation('pause-job'), { id: job }, aliceToken);
      await eventually('the mutation to wait for the lock', async () => {
        const { rows } = await db().admin.query<{ waiting: boolean }>(
          `select count(*) = 1 as waiting from pg_catalog.pg_stat_activity
            where datname = current_database() and usename = $1 and wait_event_type = 'Lock'`,
          [db().role('authenticator')],
        );
        return rows[0]?.waiting ? true : undefined;
      });
      await proxy.down();
      const answer = await pausing;
      expect(errorCode(answer)).toBe('HC_DATABASE_UNAVAILABLE');
      expect(answer.body.errors?.[0]?.message).toMatch(/cannot be reached right now/);
      await holder.query('rollback');

      // While it is away: the same code, and /readyz says so; the process answers /healthz.
      expect(errorCode(await graphql(server, operation('my-jobs'), {}, aliceToken))).toBe('HC_DATABASE_UNAVAILABLE');
      // bob's token is new to the server, which cannot ask the database whether he is a user.
      const unchecked = await graphql(server, operation('my-jobs'), {}, await tokenFor('bob'));
      expect([unchecked.status, errorCode(unchecked)]).toEqual([503, 'HC_DATABASE_UNAVAILABLE']);
      expect(await untilStatus(`${server.url}/readyz`, 503)).toEqual({ status: 'unready', code: 'HC_DATABASE_UNAVAILABLE' });
      expect(await status(`${server.url}/healthz`)).toEqual({ status: 200, body: { status: 'ok' } });
    } finally {
      await holder.end();
    }
    await proxy.up();
    await untilStatus(`${server.url}/readyz`, 200);
    const { pauseJob } = await data<{ pauseJob: { job: { enabled: boolean } } }>(server, operation('pause-job'), { id: job }, aliceToken);
    expect(pauseJob.job.enabled).toBe(false);
    // One warning for the whole outage, whatever failed during it; one line when it ended.
    expect(warnings()).toEqual([LOST]);
    expect(logs.filter((line) => line.msg === BACK)).toHaveLength(1);
  });

  test('a connection checked out of the server\'s pool, idle inside a transaction, breaks without an unhandled error; requests succeed once the database is back', async () => {
    // The pool PostGraphile takes its request connections from, checked out the way a request does.
    const pool = (server.pgl.getResolvedPreset().pgServices?.[0]?.adaptorSettings as { pool?: pg.Pool } | undefined)?.pool;
    if (!pool) throw new Error('no pool in the pg service');
    const client = await pool.connect();
    await client.query('begin');
    await client.query('select 1');
    await proxy.down();
    const failure = await eventually('the broken connection to fail its next query', async () => {
      try {
        await client.query('select 1');
        return undefined;
      } catch (error) {
        return error as Error;
      }
    });
    expect(failure.message).toMatch(/not queryable|terminated|ECONNRESET|EPIPE/);
    client.release();
    await proxy.up();
    const { jobs } = await data<{ jobs: { totalCount: number } }>(server, '{ jobs { totalCount } }', {}, aliceToken);
    expect(jobs.totalCount).toBeGreaterThanOrEqual(0);
    expect(warnings()).toEqual([LOST]);
  });

  test('idle pooled connections and the LISTEN connection break; the subscription stays open and receives every event, once, in order', async () => {
    const client = wsClient(server, aliceToken);
    try {
      const subscription = subscribe<RunEvent>(client, operation('job-run-events'), { after: await newestEventId(db()) });
      const first = await runNow(alice, 'work.instant()');
      await subscription.waitForEvents(2);
      // Several idle connections in the pool, besides the reader's.
      await Promise.all(Array.from({ length: 4 }, () => data(server, '{ jobs { totalCount } }', {}, aliceToken)));

      await proxy.down();
      await untilStatus(`${server.url}/readyz`, 503);
      // Runs while nobody listens: the reader reads the log from where it stood when it listens again.
      const second = await runNow(alice, 'work.instant()');
      await finishedRuns(db(), second);
      // A subscription begun now is refused with the code, and the one already open is not ended.
      const late = subscribe<RunEvent>(client, operation('job-run-events'), {});
      await late.ended;
      expect(late.errors).toEqual([expect.objectContaining({ extensions: { code: 'HC_DATABASE_UNAVAILABLE' } })]);

      await proxy.up();
      await subscription.waitForEvents(4, DEADLINE_MS);
      const third = await runNow(alice, 'work.instant()');
      await subscription.waitForEvents(6, DEADLINE_MS);
      expect(events(subscription)).toEqual([
        [first, 'running'],
        [first, 'succeeded'],
        [second, 'running'],
        [second, 'succeeded'],
        [third, 'running'],
        [third, 'succeeded'],
      ]);
      const ids = subscription.events.map((e) => BigInt(e.jobRunEvents.id));
      expect(ids).toEqual([...ids].sort((a, b) => (a < b ? -1 : a > b ? 1 : 0)));
      expect(subscription.errors).toEqual([]);
      subscription.stop();
      expect(warnings()).toEqual([LOST]);
      expect(logs.filter((line) => line.msg === 'run events: listening again')).toHaveLength(1);
    } finally {
      await client.dispose();
    }
  });

  test('a subscriber\'s read that the broken link interrupts is read again once the database is back: the event arrives once, the subscription stays open', async () => {
    const job = await runNow(alice, 'work.instant()');
    await finishedRuns(db(), job);
    const client = wsClient(server, aliceToken);
    const writer = await connect(db().adminUrl);
    const locker = await connect(db().adminUrl);
    try {
      const subscription = subscribe<RunEvent>(client, operation('job-run-events'), { after: await newestEventId(db()), jobId: job });
      // Subscribed once the pump has a head for it: a first event through the whole path.
      await alice.query('select api.run_job_now($1)', [job]);
      await subscription.waitForEvents(2);

      // An event is written and announced, but the subscriber's read of it (api.job_run_events
      // looks at data.job_runs) waits for a lock taken in between; the pump's question, which
      // reads data.job_run_events only, does not.
      await writer.query('begin');
      const { rows } = await writer.query<{ run_id: string }>(
        `insert into data.job_runs (job_id, owner, function_owner, scheduled_for, status, attempt, finished_at)
         select j.id, j.owner, j.function_owner, now(), 'skipped', 1, now() from data.jobs j where j.id = $1::bigint
         returning id::text as run_id`,
        [job],
      );
      await writer.query(`select code.notify_run($1::bigint, $2::bigint, 'skipped')`, [rows[0]?.run_id, job]);
      const lockerPid = (await locker.query<{ pid: number }>('select pg_catalog.pg_backend_pid() as pid')).rows[0]?.pid;
      const locking = locker.query('begin; lock table data.job_runs in access exclusive mode');
      const waitingFor = async (condition: string, value: unknown): Promise<true | undefined> => {
        const { rows: found } = await db().admin.query<{ waiting: boolean }>(
          `select count(*) > 0 as waiting from pg_catalog.pg_stat_activity
            where datname = current_database() and wait_event_type = 'Lock' and ${condition}`,
          [value],
        );
        return found[0]?.waiting ? true : undefined;
      };
      await eventually('the lock to be queued behind the writer', () => waitingFor('pid = $1', lockerPid));
      await writer.query('commit');
      await locking;
      await eventually('the subscriber\'s read to wait for the lock', () =>
        waitingFor(`usename = $1 and query like '%api.job_run_events%'`, db().role('authenticator')));

      await proxy.down();
      await untilStatus(`${server.url}/readyz`, 503);
      await locker.query('rollback');
      expect(subscription.errors).toEqual([]);
      await proxy.up();
      await subscription.waitForEvents(3, DEADLINE_MS);
      expect(events(subscription)).toEqual([
        [job, 'running'],
        [job, 'succeeded'],
        [job, 'skipped'],
      ]);
      await alice.query('select api.run_job_now($1)', [job]);
      await subscription.waitForEvents(5, DEADLINE_MS);
      expect(events(subscription).slice(3)).toEqual([
        [job, 'running'],
        [job, 'succeeded'],
      ]);
      expect(subscription.errors).toEqual([]);
      subscription.stop();
    } finally {
      await locker.end();
      await writer.end();
      await client.dispose();
    }
  });

  test('a read-only database behind the address: /readyz and writes say HC_DATABASE_READ_ONLY, reads work; writable again, it is ready again', async () => {
    const job = await runNow(alice, 'work.instant()');
    const database = db().admin.escapeIdentifier(db().name);
    // A stand-in for a standby: new sessions are read-only, so a write fails with SQLSTATE 25006
    // as it does on a hot standby (where pg_is_in_recovery(), which /readyz also asks, is true).
    // Sessions begun before keep their setting: the link is broken to make the server reconnect.
    await db().admin.query(`alter database ${database} set default_transaction_read_only = on`);
    try {
      await proxy.down();
      await proxy.up();
      // Until the pool has connected again: 503 without a code while it has not.
      await eventually('/readyz to say read-only', async () => {
        const answer = await status(`${server.url}/readyz`);
        return answer.status === 503 && (answer.body as { code?: unknown }).code === 'HC_DATABASE_READ_ONLY' ? true : undefined;
      }, DEADLINE_MS);
      expect(await status(`${server.url}/readyz`)).toEqual({ status: 503, body: { status: 'unready', code: 'HC_DATABASE_READ_ONLY' } });
      const refused = await graphql(server, operation('pause-job'), { id: job }, aliceToken);
      expect(errorCode(refused)).toBe('HC_DATABASE_READ_ONLY');
      expect(refused.body.errors?.[0]?.message).toMatch(/read-only right now/);
      const { jobs } = await data<{ jobs: { nodes: Array<{ id: string; enabled: boolean }> } }>(server, operation('my-jobs'), {}, aliceToken);
      expect(jobs.nodes.find((node) => node.id === job)?.enabled).toBe(true);
      expect(warnings().filter((msg) => msg === READ_ONLY)).toHaveLength(1);
    } finally {
      await db().admin.query(`alter database ${database} reset default_transaction_read_only`);
    }
    await proxy.down();
    await proxy.up();
    expect(await untilStatus(`${server.url}/readyz`, 200)).toEqual({ status: 'ready' });
    const { pauseJob } = await data<{ pauseJob: { job: { enabled: boolean } } }>(server, operation('pause-job'), { id: job }, aliceToken);
    expect(pauseJob.job.enabled).toBe(false);
    expect(logs.filter((line) => line.msg === 'database accepts writes again')).toHaveLength(1);
  });
});

/** The real `hardcron server` process, with a request inside a transaction, idle connections and a subscription when the link breaks. */
describe('hardcron server when its database connections break', { timeout: 3 * DEADLINE_MS }, () => {
  const db = useTestDatabase();
  const spawned: HardcronProcess[] = [];
  const proxies: TcpProxy[] = [];
  let executor: Executor | undefined;

  afterAll(async () => {
    await executor?.stop();
    await Promise.all(spawned.map((child) => child.kill()));
    await Promise.all(proxies.map((proxy) => proxy.close()));
  });

  test('keeps running through two outages and serves again after each, with one warning per outage', async () => {
    await createOwner(db(), 'work', `
      create function work.instant() returns void security definer set search_path = pg_catalog, pg_temp
        language sql as $$ select $$;`);
    await db().addUser('alice', { scheduler: true, memberOf: ['work'] });
    const alice = await db().login('alice');
    const token = await tokenFor('alice');
    const url = await authenticatorUrl(db());
    const proxy = await startTcpProxy(hostAndPort(url));
    proxies.push(proxy);
    const port = await freePort();
    const child = spawnHardcron(['server'], {
      SERVER_DATABASE_URL: throughProxy(url, proxy),
      JWT_SECRET: TEST_JWT_SECRET,
      PORT: String(port),
      HARDCRON_SERVER_LOCK_TIMEOUT_MS: String(10 * DEADLINE_MS),
    });
    spawned.push(child);
    await child.waitForLog('GraphQL server listening');
    const server = { url: `http://127.0.0.1:${port}` };
    executor = await startExecutor(db());
    const client = wsClient(server, token);
    const holder = await connect(db().adminUrl);
    try {
      const subscription = subscribe<RunEvent>(client, operation('job-run-events'), { after: await newestEventId(db()) });
      const job = await runNow(alice, 'work.instant()');
      await subscription.waitForEvents(2);
      await Promise.all(Array.from({ length: 4 }, () => data(server, '{ jobs { totalCount } }', {}, token)));

      for (const outage of [1, 2]) {
        await holder.query('begin');
        await holder.query('select 1 from data.jobs where id = $1 for update', [job]);
        const pausing = graphql(server, operation('pause-job'), { id: job }, token);
        await eventually('the mutation to wait for the lock', async () => {
          const { rows } = await db().admin.query<{ waiting: boolean }>(
            `select count(*) = 1 as waiting from pg_catalog.pg_stat_activity
              where datname = current_database() and usename = $1 and wait_event_type = 'Lock'`,
            [db().role('authenticator')],
          );
          return rows[0]?.waiting ? true : undefined;
        });
        await proxy.down();
        expect(errorCode(await pausing)).toBe('HC_DATABASE_UNAVAILABLE');
        await holder.query('rollback');
        await untilStatus(`${server.url}/readyz`, 503);
        expect(child.running).toBe(true);
        await proxy.up();
        await untilStatus(`${server.url}/readyz`, 200);
        await data(server, '{ jobs { totalCount } }', {}, token);
        await alice.query('select api.run_job_now($1)', [job]);
        await subscription.waitForEvents(2 + 2 * outage, DEADLINE_MS);
        expect(child.running).toBe(true);
      }
      expect(events(subscription)).toEqual(Array.from({ length: 3 }, () => [[job, 'running'], [job, 'succeeded']]).flat());
      expect(subscription.errors).toEqual([]);
      const warned = child.stdout
        .split('\n')
        .filter((line) => line.startsWith('{'))
        .map((line) => JSON.parse(line) as LogLine)
        .filter((line) => line.level >= WARN)
        .map((line) => line.msg);
      expect(warned).toEqual([LOST, LOST]);
      subscription.stop();
    } finally {
      await holder.end();
      await client.dispose();
    }
  });
});
