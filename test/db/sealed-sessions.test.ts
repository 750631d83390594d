import { mkdtemp, rm } from 'node:fs/promises';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import type pg from 'pg';
import { afterAll, beforeAll, describe, expect, test } from 'vitest';
import { runCli } from '../support/cli.ts';
import { freePort, spawnHardcron, type HardcronProcess } from '../support/child.ts';
import { waitFor } from '../support/executor.ts';
import { connect, useTestDatabase } from '../support/database.ts';
import { createOwnerRole } from '../support/jobs.ts';
import { analyseStatements, lookalikeKey, lookalikesOfStatements, plantLookalikes, type Lookalike } from '../support/lookalikes.ts';
import { StatementRecorder } from '../support/pg-wire.ts';
import { data, subscribe, TEST_JWT_SECRET, tokenFor, wsClient } from '../support/server.ts';
import { hostAndPort, startTcpProxy, throughProxy, type TcpProxy } from '../support/tcp-proxy.ts';

const READY = /^hardcron ready at (http:\/\/\S+?)\/? \(Ctrl-C stops\)$/;

/**
 * Statements hardcron sent before its sessions pinned their search_path (the executor's wait
 * for the next due time, the server's user lookup, the admin CLI's SET ROLE). They go into the
 * analysis beside the recorded ones so that the test proves its look-alikes work: on PostgreSQL's
 * default path these run them.
 */
const CONTROLS = [
  `select greatest(0, extract(epoch from pg_catalog.clock_timestamp() - pg_catalog.now()) * 1000)::float8 as wait_ms`,
  `select pg_catalog.current_database() || '$client'`,
  `select pg_catalog.set_config('application_name', pg_catalog.current_database() || '$' || $1, true)`,
];

/**
 * The CVE-2018-1058 attack on hardcron's own sessions (planted operators). An ordinary
 * user with CREATE on the database (every member of an owner role made with
 * `mgr.re_create_role(…, true)`) plants, in `public` and in a schema named after every role a
 * hardcron session runs as or sets, a look-alike of every operator, function and aggregate that
 * hardcron's processes use, with the argument types they are given. The list is made
 * mechanically: every statement every process sent is recorded off the wire by a proxy and
 * parsed by PostgreSQL. Then every command and path runs again: start (migrate, provisioning,
 * server, executor), migrate, user add/remove, jobs, a user's first request, a mutation, a
 * subscription, and the executor's claim, run, idle wake-up and lease renewal. The look-alikes
 * record who ran them; the record stays empty.
 */
describe('nothing planted in a schema a user can create runs in a hardcron session', () => {
  const db = useTestDatabase({ install: false });
  const spawned: HardcronProcess[] = [];
  const recorder = new StatementRecorder();
  let proxy: TcpProxy;
  let url: string;
  let dataDir: string;
  let planted: Lookalike[] = [];
  let mallory: pg.Client;
  const rounds = new Map<string, string[]>();

  /** How many times a look-alike ran, rolled back or not. */
  const hitCount = async (): Promise<number> =>
    Number((await db().admin.query<{ n: string }>('select case when is_called then last_value else 0 end as n from mallory_lab.hits_count')).rows[0]?.n);

  /** Every command and path of hardcron, through the recording proxy; returns the statements sent. */
  async function everyPath(round: string): Promise<string[]> {
    const from = recorder.texts.length;
    const port = await freePort();
    const env = { DATABASE_URL: url, HARDCRON_DATA_DIR: dataDir, JWT_SECRET: TEST_JWT_SECRET };
    const start = spawnHardcron(['start'], { ...env, PORT: String(port) });
    spawned.push(start);
    await start.waitForLine(READY, 90_000);

    for (const args of [['migrate'], ['user', 'add', `alice${round}`, '--scheduler', '--member-of', 'demo_owner'], ['user', 'add', `bob${round}`],
      ['user', 'remove', `bob${round}`], ['jobs']]) {
      const result = await runCli(args, env);
      expect({ args, code: result.code, stderr: result.stderr }).toEqual({ args, code: 0, stderr: '' });
    }

    const server = { url: `http://127.0.0.1:${port}` };
    const token = await tokenFor(`alice${round}`);
    // The user's first request: the server has not seen alice before.
    expect(await data<{ jobs: { totalCount: number } }>(server, '{ jobs { totalCount } }', {}, token)).toEqual({ jobs: { totalCount: expect.any(Number) } });
    const ws = wsClient(server, token);
    const events = subscribe<unknown>(ws, 'subscription { jobRunEvents { __typename } }');
    const { scheduleJob } = await data<{ scheduleJob: { job: { id: string } } }>(server,
      'mutation { scheduleJob(input: { functionSignature: "demo.heartbeat()", schedule: "*/1 * * * * *", name: "beat" }) { job { id } } }', {}, token);
    // Claim and run, seen by the subscriber.
    await waitFor(db(), `select count(*) >= 2 as done from data.job_runs where job_id = $1 and status = 'succeeded'`, [scheduleJob.job.id], 60_000);
    await events.waitForEvents(2, 60_000);
    await data(server, `mutation { pauseJob(input: { jobId: "${scheduleJob.job.id}" }) { job { id } } }`, {}, token);

    // The executor, idle now (waiting for the next due time), is woken for a one-off due at once.
    const { scheduleJob: once } = await data<{ scheduleJob: { job: { id: string } } }>(server,
      'mutation { scheduleJob(input: { functionSignature: "demo.heartbeat()", name: "once" }) { job { id } } }', {}, token);
    await waitFor(db(), `select count(*) = 1 as done from data.job_runs where job_id = $1 and status = 'succeeded'`, [once.job.id], 60_000);

    // The lease is renewed (a third of the lease time after the last renewal).
    // As text: a JavaScript Date would drop the microseconds, and the comparison hold at once.
    const { rows: [lease] } = await db().admin.query<{ at: string }>('select max(lease_expires_at)::text as at from data.executors');
    await waitFor(db(), 'select max(lease_expires_at) > $1::timestamptz as done from data.executors', [lease?.at], 60_000);

    events.stop();
    await ws.dispose();
    start.signal('SIGINT');
    expect(await start.exited).toEqual({ code: 0, signal: null });
    return recorder.texts.slice(from);
  }

  beforeAll(async () => {
    dataDir = await mkdtemp(join(tmpdir(), 'hardcron-sealed-'));
    proxy = await startTcpProxy(hostAndPort(db().adminUrl), recorder.tap);
    url = throughProxy(db().adminUrl, proxy);
  });

  afterAll(async () => {
    await Promise.all(spawned.map((cli) => cli.kill()));
    await mallory?.end();
    await proxy?.close();
    await rm(dataDir, { recursive: true, force: true });
  });

  test('every path runs, and every statement is recorded off the wire', { timeout: 240_000 }, async () => {
    rounds.set('1', await everyPath('1'));
    expect(rounds.get('1')?.length).toBeGreaterThan(100);
  });

  test('an ordinary user with CREATE on the database plants look-alikes of everything those statements call', { timeout: 240_000 }, async () => {
    const { analysis, lookalikes } = await lookalikesOfStatements(db().admin, [...(rounds.get('1') ?? []), ...CONTROLS]);
    // Statements PostgreSQL would not parse as a query are utility statements: transaction
    // control, SET/RESET, LISTEN, CALL (its arguments are parameters) and the DDL of migrations and
    // provisioning, which run with the same pinned path.
    const kinds = new Set(analysis.skipped.map((s) => s.reason));
    expect([...kinds].filter((k) => k.startsWith('not parsed'))).toEqual([]);
    expect(analysis.analysed.length).toBeGreaterThan(20);
    planted = lookalikes;
    console.log(`${analysis.analysed.length} statements parsed, ${analysis.skipped.length} utility statements; ${planted.length} look-alikes: ${planted.map(lookalikeKey).join('; ')}`);
    expect(planted.map(lookalikeKey)).toEqual(expect.arrayContaining(['operator *(numeric, integer)', 'operator ||(name, text)']));

    await createOwnerRole(db(), 'mallory_owner');
    await db().addUser('mallory', { memberOf: ['mallory_owner'] });
    mallory = await db().login('mallory');
    await mallory.query(`
      create schema mallory_lab;
      create table mallory_lab.hits (session_user_name text, current_user_name text, lookalike text);
      create sequence mallory_lab.hits_count;
      grant usage on schema mallory_lab to public;
      grant insert on mallory_lab.hits to public;
      grant usage on sequence mallory_lab.hits_count to public`);
    // public, and a schema named after every role a hardcron session logs in as or sets (the
    // "$user" entry of the default path), those of the next round's users included.
    const { rows } = await db().admin.query<{ name: string }>(
      `select rolname::text as name from pg_catalog.pg_roles where starts_with(rolname, $1) union select session_user::text`,
      [`${db().name}$`],
    );
    const schemas = ['public', ...rows.map((r) => r.name), db().role('alice2'), db().role('bob2')];
    const created = await plantLookalikes(mallory, schemas, planted, 'mallory_lab.hits');
    expect(created).toBe(schemas.length * planted.length);

    // The look-alikes work: on PostgreSQL's default path, the old statements run them.
    const superuser = (await db().admin.query<{ name: string }>('select session_user::text as name')).rows[0]?.name;
    const plain = await connect(db().adminUrl);
    try {
      for (const control of CONTROLS) {
        await plain.query('begin');
        await plain.query(control, control.includes('$1') ? ['mgr'] : []);
        await plain.query('commit');
        const { rows: hits } = await db().admin.query<{ who: string; lookalike: string }>(
          'select session_user_name as who, lookalike from mallory_lab.hits');
        expect({ control, ran: hits.length > 0, as: [...new Set(hits.map((h) => h.who))] }).toEqual({ control, ran: true, as: [superuser] });
        await db().admin.query('truncate mallory_lab.hits');
      }
      expect(await hitCount()).toBeGreaterThanOrEqual(CONTROLS.length);
    } finally {
      await plain.end();
    }
    // And how many of hardcron's own statements they would take over on that path.
    const unpinned = await analyseStatements(db().admin, rounds.get('1') ?? [], '"$user", public');
    const { rows: taken } = await db().admin.query<{ name: string }>(
      `select p.oid::regprocedure::text as name from pg_catalog.pg_proc p where p.oid = any($1::oid[]) and p.proowner = $2::regrole
       union all
       select o.oid::regoperator::text from pg_catalog.pg_operator o where o.oid = any($1::oid[]) and o.oprowner = $2::regrole`,
      [unpinned.calls.map((c) => c.oid), db().role('mallory')],
    );
    console.log(`on PostgreSQL's default path, ${taken.length} calls of hardcron's own statements would run a look-alike: ${[...new Set(taken.map((t) => t.name))].join(', ')}`);
  });

  test('every path again: no look-alike runs, as anyone', { timeout: 240_000 }, async () => {
    expect(planted.length).toBeGreaterThan(0);
    const countBefore = await hitCount();
    let statements: string[] = [];
    let failure: unknown;
    try {
      statements = await everyPath('2');
    } catch (error) {
      failure = error; // a look-alike that ran may have broken a path: the record says which
    }
    expect((await db().admin.query(
      `select session_user_name, current_user_name, lookalike, count(*)::int as times from mallory_lab.hits group by 1, 2, 3 order by 4 desc`,
    )).rows).toEqual([]);
    // Also none whose record was rolled back (by the failure the look-alike caused, say).
    expect(await hitCount()).toBe(countBefore);
    if (failure) throw failure;

    // The look-alikes covered this round's statements too.
    const { lookalikes } = await lookalikesOfStatements(db().admin, statements);
    const plantedKeys = new Set(planted.map(lookalikeKey));
    expect(lookalikes.map(lookalikeKey).filter((key) => !plantedKeys.has(key))).toEqual([]);
  });
});
