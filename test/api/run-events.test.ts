import { readdirSync, readFileSync } from 'node:fs';
import { join } from 'node:path';
import { fileURLToPath } from 'node:url';
import type pg from 'pg';
import { buildSchema, Kind, parse, print, validate } from 'postgraphile/graphql';
import { afterAll, beforeAll, describe, expect, test } from 'vitest';
import { PUMP_INTERVAL_MS } from '../../server/api/run-events.ts';
import type { RunningGraphQLServer } from '../../server/api/server.ts';
import type { Executor } from '../../server/executor/executor.ts';
import { eventually } from '../support/child.ts';
import { connect, useTestDatabase } from '../support/database.ts';
import { finishedRuns, newestEventId, runNow, startExecutor, waitFor } from '../support/executor.ts';
import { createOwner, failureOf } from '../support/jobs.ts';
import { operation, startTestServer, subscribe, tokenFor, wsClient, type Subscription } from '../support/server.ts';

interface RunEvent {
  jobRunEvents: { id: string; runId: string; jobId: string; status: string; at: string };
}

const ROOT = fileURLToPath(new URL('../../', import.meta.url));

/** Every file under `dir` (relative to the repository) ending in `suffix`. */
function filesUnder(dir: string, suffix: string): string[] {
  return readdirSync(join(ROOT, dir), { recursive: true, encoding: 'utf8' })
    .filter((name) => name.endsWith(suffix))
    .map((name) => join(ROOT, dir, name));
}

/** The channels hardcron notifies or listens on, as its SQL and server code name them. */
function hardcronChannels(): string[] {
  const channels = new Set<string>();
  for (const file of filesUnder('sql', '.sql')) {
    const text = readFileSync(file, 'utf8');
    for (const match of text.matchAll(/pg_notify\(\s*'([^']+)'|\b(?:listen|notify)\s+(hardcron_[a-z_]+)/gi)) channels.add((match[1] ?? match[2]) as string);
  }
  for (const file of filesUnder('server', '.ts')) {
    const text = readFileSync(file, 'utf8');
    for (const match of text.matchAll(/CHANNEL\s*=\s*'([^']+)'|pg_notify\(\s*'([^']+)'|\b(?:listen|notify)\s+(hardcron_[a-z_]+)/gi)) channels.add((match[1] ?? match[2] ?? match[3]) as string);
  }
  return [...channels].sort();
}

const events = (subscription: Subscription<RunEvent>): RunEvent['jobRunEvents'][] => subscription.events.map((e) => e.jobRunEvents);

/**
 * Run events (sql/routines/code/run_events.sql, server/api/run-events.ts): what LISTEN tells a user who may see nothing,
 * what a subscriber receives of fast runs and of an event that commits late, resuming after an
 * id, and what a flood of forged notifications costs the server, counted by the database.
 */
describe('run events', () => {
  const db = useTestDatabase();
  let server: RunningGraphQLServer;
  let executor: Executor;
  let alice: pg.Client;
  let aliceToken: string;

  beforeAll(async () => {
    await createOwner(db(), 'work', `
      create function work.instant() returns void security definer set search_path = pg_catalog, pg_temp
        language sql as $$ select $$;
      create function work.nap() returns void security definer set search_path = pg_catalog, pg_temp
        language sql as $$ select pg_sleep(600) $$;
      create function work.fail() returns void security definer set search_path = pg_catalog, pg_temp
        language sql as $$ select 1 / 0 $$;`);
    await db().addUser('alice', { scheduler: true, memberOf: ['work'] });
    // mallory may log in and use api like any user, and sees no job at all.
    await db().addUser('mallory');
    alice = await db().login('alice');
    aliceToken = await tokenFor('alice');
    server = await startTestServer(db());
    // Two workers and small batches: claims commit while batches are open, so event ids are
    // taken in one order and committed in another.
    executor = await startExecutor(db(), { concurrency: 2, batchSize: 3 });
  });
  afterAll(async () => {
    await executor?.stop();
    await server?.stop();
  });

  test('a user who sees no jobs LISTENs on every channel hardcron notifies, while jobs run, and learns nothing', async () => {
    const channels = hardcronChannels();
    // A new channel must be looked at here (and carry nothing either).
    expect(channels).toEqual(['hardcron_jobs_changed', 'hardcron_run_events', 'hardcron_runs_cancelled']);
    const mallory = await db().login('mallory');
    const heard: Array<{ channel: string; payload: string }> = [];
    mallory.on('notification', (message) => heard.push({ channel: message.channel, payload: message.payload ?? '' }));
    for (const channel of channels) await mallory.query(`listen ${mallory.escapeIdentifier(channel)}`);

    const jobs = [await runNow(alice, 'work.instant()'), await runNow(alice, 'work.fail()'), await runNow(alice, 'work.instant()')];
    for (const job of jobs) await finishedRuns(db(), job);
    // A run cancelled by its job's pause: the third channel.
    const napping = await runNow(alice, 'work.nap()');
    await waitFor(db(), `select count(*) = 1 as done from data.job_runs where job_id = $1 and status = 'running'`, [napping]);
    await alice.query('select api.pause_job($1)', [napping]);
    await finishedRuns(db(), napping);
    // Notifications arrive in commit order: once mallory has these, she has everything before.
    for (const channel of channels) await db().admin.query('select pg_catalog.pg_notify($1, $2)', [channel, 'sentinel']);
    await eventually('the sentinels', async () => (channels.every((c) => heard.some((h) => h.channel === c && h.payload === 'sentinel')) ? true : undefined));

    const real = heard.filter((h) => h.payload !== 'sentinel');
    expect(new Set(real.map((h) => h.channel))).toEqual(new Set(channels)); // she did hear every channel
    expect(new Set(real.map((h) => h.payload))).toEqual(new Set([''])); // and nothing in them
    for (const view of ['api.job_run_events', 'api.job_runs', 'api.jobs']) {
      expect([view, (await mallory.query(`select count(*)::int as n from ${view}`)).rows[0].n]).toEqual([view, 0]);
    }
    // The server's own questions about the log are not hers to ask.
    for (const sql of ['select * from server.run_events_since(0, null, 10)', 'select * from server.run_events_bounds()']) {
      expect([sql, (await failureOf(mallory, sql)).code]).toEqual([sql, '42501']);
    }
    // The log is not empty: alice reads her runs' events through the same view.
    const { rows } = await alice.query<{ job_id: string; status: string }>(
      'select job_id::text, status from api.job_run_events where job_id = any($1::bigint[]) order by job_id, id',
      [jobs],
    );
    expect(rows).toEqual([
      { job_id: jobs[0], status: 'running' },
      { job_id: jobs[0], status: 'succeeded' },
      { job_id: jobs[1], status: 'running' },
      { job_id: jobs[1], status: 'failed' },
      { job_id: jobs[2], status: 'running' },
      { job_id: jobs[2], status: 'succeeded' },
    ]);
  });

  test('every run of an instant job reaches its subscriber as running, then succeeded: each once, in order', { timeout: 120_000 }, async () => {
    const client = wsClient(server, aliceToken);
    try {
      const after = await newestEventId(db());
      const subscription = subscribe<RunEvent>(client, operation('job-run-events'), { after });
      const jobs: string[] = [];
      for (let i = 0; i < 40; i++) jobs.push(await runNow(alice, 'work.instant()'));
      await waitFor(db(), `select count(*) = 40 as done from data.job_runs where job_id = any($1::bigint[]) and status = 'succeeded'`, [jobs]);
      await subscription.waitForEvents(80, 60_000);
      // One more run: nothing of the forty may arrive after it (no repeat, no straggler).
      const last = await runNow(alice, 'work.instant()');
      await subscription.waitForEvents(82, 60_000);
      expect(events(subscription).slice(80).map((e) => [e.jobId, e.status])).toEqual([
        [last, 'running'],
        [last, 'succeeded'],
      ]);
      expect(subscription.events).toHaveLength(82);
      expect(subscription.errors).toEqual([]);

      const received = events(subscription);
      expect(new Set(received.map((e) => e.id)).size).toBe(82);
      const byRun = new Map<string, string[]>();
      for (const event of received) byRun.set(event.runId, [...(byRun.get(event.runId) ?? []), event.status]);
      const { rows: runs } = await db().admin.query<{ id: string }>('select id::text from data.job_runs where job_id = any($1::bigint[])', [[...jobs, last]]);
      expect([...byRun.keys()].sort()).toEqual(runs.map((run) => run.id).sort());
      for (const [run, statuses] of byRun) expect([run, statuses]).toEqual([run, ['running', 'succeeded']]);
      // What was delivered is the log past `after`, event for event.
      const { rows: logged } = await db().admin.query<{ id: string; status: string }>(
        'select id::text, status from data.job_run_events where id > $1::bigint order by id',
        [after],
      );
      expect(received.map((e) => [e.id, e.status]).sort()).toEqual(logged.map((e) => [e.id, e.status]).sort());
      subscription.stop();
    } finally {
      await client.dispose();
    }
  });

  test('an event that commits after events with larger ids is still delivered, once', { timeout: 60_000 }, async () => {
    const client = wsClient(server, aliceToken);
    const holder = await connect(db().adminUrl);
    try {
      const after = await newestEventId(db());
      const subscription = subscribe<RunEvent>(client, operation('job-run-events'), { after });
      const first = await runNow(alice, 'work.instant()');
      await subscription.waitForEvents(2); // the server reads the log for this subscription now

      // A transaction takes an event id and stays open, as a batch of runs does until its last
      // run: here the claim of an occurrence that is skipped, written the way the claim writes it.
      await holder.query('begin');
      const { rows } = await holder.query<{ run_id: string; job_id: string }>(
        `insert into data.job_runs (job_id, owner, function_owner, scheduled_for, status, attempt, finished_at)
         select j.id, j.owner, j.function_owner, now(), 'skipped', 1, now() from data.jobs j where j.id = $1::bigint
         returning id::text as run_id, job_id::text`,
        [first],
      );
      const run = rows[0];
      if (!run) throw new Error('no run');
      await holder.query(`select code.notify_run($1::bigint, $2::bigint, 'skipped')`, [run.run_id, run.job_id]);
      const eventId = (await holder.query<{ id: string }>(`select currval(pg_get_serial_sequence('data.job_run_events', 'id'))::text as id`)).rows[0]?.id;
      const held = { run_id: run.run_id, event_id: eventId ?? '' };
      // Later events commit while it is open, and are delivered.
      const second = await runNow(alice, 'work.instant()');
      await subscription.waitForEvents(4);
      const delivered = events(subscription).slice(2);
      expect(delivered.map((e) => [e.jobId, e.status])).toEqual([
        [second, 'running'],
        [second, 'succeeded'],
      ]);
      expect(delivered.every((e) => BigInt(e.id) > BigInt(held.event_id))).toBe(true);
      await holder.query('commit');
      await subscription.waitForEvents(5);
      expect(events(subscription)[4]).toMatchObject({ id: held.event_id, runId: held.run_id, jobId: first, status: 'skipped' });

      const third = await runNow(alice, 'work.instant()');
      await subscription.waitForEvents(7);
      expect(events(subscription).slice(5).map((e) => [e.jobId, e.status])).toEqual([
        [third, 'running'],
        [third, 'succeeded'],
      ]);
      expect(subscription.events).toHaveLength(7);
      expect(subscription.errors).toEqual([]);
      subscription.stop();
    } finally {
      await holder.end();
      await client.dispose();
    }
  });

  test('a subscription resumed after an event id receives the logged events past it, then new ones; jobId filters both', async () => {
    const job = await runNow(alice, 'work.instant()');
    const other = await runNow(alice, 'work.instant()');
    await finishedRuns(db(), job);
    await finishedRuns(db(), other);
    const { rows } = await db().admin.query<{ id: string; status: string }>(
      'select id::text, status from data.job_run_events where job_id = $1::bigint order by id',
      [job],
    );
    expect(rows.map((row) => row.status)).toEqual(['running', 'succeeded']);
    const [running, succeeded] = rows;

    const client = wsClient(server, aliceToken);
    try {
      // It saw the run start, then lost its connection: it resumes after that event.
      const resumed = subscribe<RunEvent>(client, operation('job-run-events'), { after: running?.id, jobId: job });
      await resumed.waitForEvents(1);
      expect(events(resumed).map((e) => [e.id, e.status])).toEqual([[succeeded?.id, 'succeeded']]);
      await alice.query('select api.run_job_now($1)', [other]);
      await alice.query('select api.run_job_now($1)', [job]);
      await finishedRuns(db(), job, 2);
      await resumed.waitForEvents(3);
      expect(events(resumed).map((e) => [e.jobId, e.status])).toEqual([
        [job, 'succeeded'],
        [job, 'running'],
        [job, 'succeeded'],
      ]);
      resumed.stop();
    } finally {
      await client.dispose();
    }
  });

  test('when the server\'s listening connection is lost, it listens again and misses nothing', async () => {
    const readerBackends = `select pid from pg_catalog.pg_stat_activity
                             where usename = $1 and (query like 'listen hardcron_run_events%' or query like '%server.run_events_since%')`;
    const client = wsClient(server, aliceToken);
    try {
      const after = await newestEventId(db());
      const subscription = subscribe<RunEvent>(client, operation('job-run-events'), { after });
      const first = await runNow(alice, 'work.instant()');
      await subscription.waitForEvents(2);
      const { rows } = await db().admin.query<{ pid: number }>(readerBackends, [db().role('authenticator')]);
      expect(rows).toHaveLength(1); // one reader for the whole server
      await db().admin.query('select pg_catalog.pg_terminate_backend($1)', [rows[0]?.pid]);
      // Runs while the server may not be listening: it reads the log when it listens again.
      const second = await runNow(alice, 'work.instant()');
      await subscription.waitForEvents(4);
      expect(events(subscription).map((e) => [e.jobId, e.status])).toEqual([
        [first, 'running'],
        [first, 'succeeded'],
        [second, 'running'],
        [second, 'succeeded'],
      ]);
      await waitFor(db(), `select count(*) = 1 as done from (${readerBackends}) r where r.pid <> $2`, [db().role('authenticator'), rows[0]?.pid]);
      expect(subscription.errors).toEqual([]);
      subscription.stop();
    } finally {
      await client.dispose();
    }
  });

  test('another owner\'s events and missing ones take the same path through api.job_run_events', async () => {
    // eve sees nothing; her function calls are counted (the setting applies to sessions begun after it).
    await db().addUser('eve');
    await db().admin.query(`alter role ${db().admin.escapeIdentifier(db().role('eve'))} set track_functions = 'all'`);
    const eve = await db().login('eve');
    const job = await runNow(alice, 'work.instant()');
    const [run] = await finishedRuns(db(), job);
    const { rows } = await db().admin.query<{ id: string; never: string }>(
      'select max(id)::text as id, (max(id) + 1000000)::text as never from data.job_run_events where job_id = $1::bigint',
      [job],
    );
    const event = rows[0];
    /** hardcron's function calls (schema.name: count) made by eve's `sql` with `id`. */
    const callsOf = async (sql: string, id: string | undefined): Promise<Record<string, number>> => {
      const read = async (): Promise<Record<string, number>> => {
        await eve.query('select pg_catalog.pg_stat_force_next_flush()');
        await db().admin.query('select pg_catalog.pg_stat_clear_snapshot()');
        const counted = await db().admin.query<{ fn: string; calls: string }>(
          `select schemaname || '.' || funcname as fn, calls from pg_catalog.pg_stat_user_functions`,
        );
        return Object.fromEntries(counted.rows.map((row) => [row.fn, Number(row.calls)]));
      };
      const before = await read();
      expect((await eve.query(sql, [id])).rows).toEqual([]);
      const after = await read();
      return Object.fromEntries(Object.entries(after).filter(([fn, n]) => n !== (before[fn] ?? 0)).map(([fn, n]) => [fn, n - (before[fn] ?? 0)]));
    };
    for (const [column, foreign] of [['job_id', job], ['run_id', run?.id], ['id', event?.id]] as const) {
      const sql = `select * from api.job_run_events where ${column} = $1::bigint`;
      expect((await alice.query(sql, [foreign])).rows.length).toBeGreaterThan(0); // alice does see them
      const calls = await callsOf(sql, foreign);
      expect(Object.keys(calls).length).toBeGreaterThan(0);
      expect([column, await callsOf(sql, event?.never)]).toEqual([column, calls]);
    }
  });

  test('a flood of forged NOTIFYs costs one question per interval and no reads by subscribers', { timeout: 180_000 }, async () => {
    const authenticator = db().admin.escapeIdentifier(db().role('authenticator'));
    // Function calls of the server's sessions (and only theirs) are counted from here on.
    await db().admin.query(`alter role ${authenticator} set track_functions = 'all'`);
    const since = (await db().admin.query<{ at: Date }>('select pg_catalog.clock_timestamp() as at')).rows[0]?.at;
    const started = Date.now();
    let elapsedMs = 0;
    const subscribers = 5;
    try {
      const own = await startTestServer(db());
      const clients = Array.from({ length: subscribers }, () => wsClient(own, aliceToken));
      try {
        const after = await newestEventId(db());
        const subscriptions = clients.map((client) => subscribe<RunEvent>(client, operation('job-run-events'), { after }));
        const warmUp = await runNow(alice, 'work.instant()');
        for (const subscription of subscriptions) await subscription.waitForEvents(2);
        const [run] = await finishedRuns(db(), warmUp);

        // The attacker: a user who sees nothing, on a plain connection. 10,000 distinct payloads
        // in one transaction (PostgreSQL folds only identical ones), each naming a real run, then
        // 100 transactions of one notification each.
        const mallory = await db().login('mallory');
        await mallory.query(
          `select pg_catalog.pg_notify('hardcron_run_events', pg_catalog.json_build_object('run_id', $1::bigint, 'n', i)::text)
             from pg_catalog.generate_series(1, 10000) i`,
          [run?.id],
        );
        for (let i = 0; i < 100; i++) await mallory.query(`select pg_catalog.pg_notify('hardcron_run_events', '')`);

        // A real run after the flood: once every subscriber has it, the server has taken the
        // whole flood in (notifications arrive in commit order).
        const sentinel = await runNow(alice, 'work.instant()');
        for (const subscription of subscriptions) {
          await subscription.waitForEvents(4, 60_000);
          expect(events(subscription).map((e) => [e.jobId, e.status])).toEqual([
            [warmUp, 'running'],
            [warmUp, 'succeeded'],
            [sentinel, 'running'],
            [sentinel, 'succeeded'],
          ]);
          subscription.stop();
        }
      } finally {
        for (const client of clients) await client.dispose();
        await own.stop();
        elapsedMs = Date.now() - started;
      }
      // A backend flushes its statistics as it exits. (The sessions that count are those that
      // began after the ALTER ROLE: the server started for this test.)
      await waitFor(db(), 'select count(*) = 0 as done from pg_catalog.pg_stat_activity where usename = $1 and backend_start > $2', [
        db().role('authenticator'),
        since,
      ]);
    } finally {
      await db().admin.query(`alter role ${authenticator} reset track_functions`);
    }
    const { rows } = await db().admin.query<{ name: string; calls: number }>(
      `select schemaname || '.' || funcname as name, sum(calls)::int as calls from pg_catalog.pg_stat_user_functions
        where schemaname in ('server', 'code') group by 1`,
    );
    const calls = (name: string): number => rows.find((row) => row.name === name)?.calls ?? 0;
    // The pump's question: at most one per interval while notifications keep coming.
    expect(calls('server.run_events_since')).toBeGreaterThan(0);
    expect(calls('server.run_events_since')).toBeLessThanOrEqual(Math.ceil(elapsedMs / PUMP_INTERVAL_MS) + 2);
    // Reads through api as a subscriber: the views compute the caller's roles once per statement.
    // Two real runs need a handful per subscriber; one per forged notification would be 50,000.
    const visibility = calls('code.caller_roles') + calls('code.caller_has_role');
    expect(visibility).toBeGreaterThan(0);
    expect(visibility).toBeLessThanOrEqual(20 * subscribers);
  });
});

describe('the run event subscription as the documentation shows it', () => {
  test('the README\'s subscriptions, the one `hardcron start` prints and graphql/job-run-events.graphql are valid', () => {
    const schema = buildSchema(readFileSync(join(ROOT, 'graphql/schema.graphql'), 'utf8'));
    const readme = readFileSync(join(ROOT, 'README.md'), 'utf8');
    const fromReadme = [...readme.matchAll(/```graphql\n([\s\S]*?)```/g)]
      .flatMap((block) => parse(block[1] as string).definitions)
      .filter((definition) => definition.kind === Kind.OPERATION_DEFINITION && definition.operation === 'subscription');
    expect(fromReadme.length).toBeGreaterThanOrEqual(2);
    const printedByStart = /say\('\s*(subscription [^']*)'\)/.exec(readFileSync(join(ROOT, 'server/cli/start.ts'), 'utf8'))?.[1];
    const documents = [
      ...fromReadme.map((definition) => ({ kind: Kind.DOCUMENT, definitions: [definition] }) as const),
      parse(printedByStart ?? 'not found'),
      parse(operation('job-run-events')),
    ];
    for (const document of documents) expect([print(document), validate(schema, document)]).toEqual([print(document), []]);
  });
});
