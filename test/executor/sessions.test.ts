import { afterAll, beforeAll, describe, expect, test } from 'vitest';
import type pg from 'pg';
import type { Executor } from '../../server/executor/executor.ts';
import { connect, useTestDatabase } from '../support/database.ts';
import { finishedRuns, runNow, startExecutor, waitFor } from '../support/executor.ts';
import { createOwner, scheduleJob } from '../support/jobs.ts';

describe('what a job does to its session stays with it', () => {
  const db = useTestDatabase();
  let alice: pg.Client;
  let executor: Executor;

  beforeAll(async () => {
    const { admin, role } = db();
    await admin.query(`begin;
      set local role "${role('mgr')}";
      call mgr.re_create_role('dirty', null, true);
      reset role;
      grant temporary on database "${db().name}" to "${role('dirty')}";
      set local role "${role('dirty')}";
      create schema dirty;
      create table dirty.seen (what text, value text);
      -- Leaves every kind of session state behind.
      create function dirty.leave_state() returns void security definer set search_path = pg_catalog, pg_temp
        language plpgsql as $$
        begin
          insert into dirty.seen values ('pid of leave_state', pg_backend_pid()::text);
          begin
            set session authorization default;
            insert into dirty.seen values ('session authorization', session_user::text);
          exception when others then
            insert into dirty.seen values ('session authorization refused', sqlstate);
          end;
          perform set_config('hardcron_test.left', 'behind', false);
          perform set_config('statement_timeout', '0', false);
          perform set_config('search_path', 'dirty', false);
          perform pg_advisory_lock(4242);
          create temp table leftover (x int);
          listen leftover_channel;
          execute 'prepare leftover_statement as select 1';
        end $$;
      -- Records what it finds of that state.
      create function dirty.inspect() returns void security definer set search_path = pg_catalog, pg_temp
        language plpgsql as $$
        begin
          insert into dirty.seen values
            ('pid of inspect', pg_backend_pid()::text),
            ('setting', current_setting('hardcron_test.left', true)),
            ('statement_timeout', current_setting('statement_timeout')),
            ('search_path', current_setting('search_path')),
            ('advisory locks', (select count(*)::text from pg_locks where locktype = 'advisory' and pid = pg_backend_pid())),
            ('temp tables', (select count(*)::text from pg_class where relpersistence = 't')),
            ('listening', (select count(*)::text from pg_listening_channels())),
            ('prepared', (select count(*)::text from pg_prepared_statements)),
            ('role', current_setting('role')),
            ('session user', session_user::text);
        end $$;
      commit`);
    await db().addUser('alice', { scheduler: true, memberOf: ['dirty'] });
    alice = await db().login('alice');
  });

  afterAll(async () => {
    await executor?.stop();
  });

  test('settings, advisory locks, temp tables, LISTEN and prepared statements do not reach the next job; SET SESSION AUTHORIZATION is refused', async () => {
    // Both due before the executor starts, so one connection runs them in one batch, in order.
    const dirtyJob = await runNow(alice, 'dirty.leave_state()');
    const inspectJob = await runNow(alice, 'dirty.inspect()');
    executor = await startExecutor(db(), { concurrency: 1, listen: false });
    expect((await finishedRuns(db(), dirtyJob))[0]?.status).toBe('succeeded');
    expect((await finishedRuns(db(), inspectJob))[0]?.status).toBe('succeeded');

    const { rows } = await db().admin.query<{ what: string; value: string | null }>('select what, value from dirty.seen');
    const seen = Object.fromEntries(rows.map((row) => [row.what, row.value]));
    expect(seen['pid of inspect']).toBe(seen['pid of leave_state']); // the same connection, the next statement
    expect(seen['session authorization']).toBeUndefined();
    expect(seen['session authorization refused']).toBe('42501');
    expect(seen.setting ?? '').toBe(''); // reset (a custom setting, once defined, reads '' afterwards)
    expect(seen).toMatchObject({
      'advisory locks': '0',
      'temp tables': '0',
      listening: '0',
      prepared: '0',
      role: db().role('alice'),
      'session user': db().role('executor'),
    });
    expect(seen.statement_timeout).not.toBe('0');
    expect(seen.search_path).toBe('pg_catalog, pg_temp'); // the function's own pinned path

    // And the advisory lock is really free: another session can take it.
    const other = await connect(db().adminUrl);
    try {
      expect((await other.query('select pg_try_advisory_lock(4242) as got')).rows[0].got).toBe(true);
    } finally {
      await other.end();
    }
  });
});

describe('deferred constraint triggers fire as the job owner', () => {
  const db = useTestDatabase();
  let executor: Executor;

  afterAll(async () => {
    await executor?.stop();
  });

  test('a DEFERRABLE INITIALLY DEFERRED trigger never sees the executor as current_user', async () => {
    const { admin, role } = db();
    await createOwner(db(), 'ledger', `
      create table ledger.entries (amount int);
      create table ledger.trigger_log (by_user text, by_session text);
      create function ledger.log_user() returns trigger language plpgsql set search_path = pg_catalog, pg_temp as $$
        begin insert into ledger.trigger_log values (current_user, session_user); return null; end $$;
      create constraint trigger entries_log after insert on ledger.entries
        deferrable initially deferred for each row execute function ledger.log_user();
      create function ledger.book(amount int) returns void security definer set search_path = pg_catalog, pg_temp
        language sql as $$ insert into ledger.entries values (amount) $$`);
    await db().addUser('alice', { scheduler: true, memberOf: ['ledger'] });
    const alice = await db().login('alice');
    const jobs = [await runNow(alice, 'ledger.book(integer)', [10]), await runNow(alice, 'ledger.book(integer)', [20])];
    executor = await startExecutor(db(), { concurrency: 1 });
    for (const job of jobs) expect((await finishedRuns(db(), job))[0]?.status).toBe('succeeded');

    const { rows } = await admin.query<{ by_user: string }>('select by_user from ledger.trigger_log');
    expect(rows).toHaveLength(2);
    for (const row of rows) {
      expect([role('ledger'), role('alice')]).toContain(row.by_user); // the function's or the job's owner
      expect(row.by_user).not.toBe(role('executor'));
    }
  });
});

describe('the check and the call see the same function definition', () => {
  const db = useTestDatabase();
  let executor: Executor;

  afterAll(async () => {
    await executor?.stop();
  });

  test('toggling SECURITY INVOKER/DEFINER in a loop while a per-second job runs: it only ever runs as its owner', async () => {
    const { admin, role } = db();
    await createOwner(db(), 'racy', `
      create table racy.calls (by_user text, at timestamptz default clock_timestamp());
      grant usage on schema racy to public;
      grant insert on racy.calls to public;
      create function racy.tick() returns void security definer set search_path = pg_catalog, pg_temp
        language sql as $$ insert into racy.calls (by_user) values (current_user) $$`);
    await db().addUser('alice', { scheduler: true, memberOf: ['racy'] });
    const alice = await db().login('alice');
    const { id: job } = await scheduleJob(alice, 'racy.tick()', [], { schedule: '* * * * * *' });
    executor = await startExecutor(db(), { concurrency: 2 });

    const toggler = await connect(db().adminUrl);
    const until = Date.now() + 60_000;
    let toggles = 0;
    try {
      await toggler.query(`set role "${role('racy')}"`);
      while (Date.now() < until) {
        await toggler.query(`alter function racy.tick() security ${toggles % 2 === 0 ? 'invoker' : 'definer'}`);
        toggles += 1;
      }
      await toggler.query('alter function racy.tick() security definer');
    } finally {
      await toggler.end();
    }
    await waitFor(db(), `select count(*) = 0 as done from data.job_runs where job_id = $1 and status = 'running'`, [job]);

    const calls = await admin.query<{ by_user: string; n: number }>('select by_user, count(*)::int as n from racy.calls group by 1');
    expect(calls.rows.map((row) => row.by_user)).toEqual([role('racy')]);
    const runs = await admin.query<{ status: string; n: number }>(
      'select status, count(*)::int as n from data.job_runs where job_id = $1 group by 1',
      [job],
    );
    const byStatus = Object.fromEntries(runs.rows.map((row) => [row.status, row.n]));
    expect(byStatus.succeeded).toBe(calls.rows[0]?.n);
    expect((byStatus.succeeded ?? 0) + (byStatus.rejected ?? 0)).toBeGreaterThanOrEqual(50);
    expect(toggles).toBeGreaterThan(100);
  }, 120_000);
});

describe('objects a job plants in pg_temp are never used by hardcron', () => {
  const db = useTestDatabase();
  let executor: Executor;

  afterAll(async () => {
    await executor?.stop();
  });

  test("temp tables named like hardcron's and temp functions named like the catalog's: both runs of the batch succeed, nothing planted is called", async () => {
    const { admin, role } = db();
    await createOwner(db(), 'planter', `
      create table planter.called (what text);
      grant insert on planter.called to public;
      create function planter.note() returns void security definer set search_path = pg_catalog, pg_temp
        language sql as $$ select $$;
      -- Plants, for the rest of the run and the statements hardcron runs after it in the batch.
      create function planter.plant() returns void security definer set search_path = pg_catalog, pg_temp
        language plpgsql as $$
        declare
          fn text;
        begin
          create temp table job_runs (id bigint, status text);
          create temp table jobs (id bigint);
          create temp table verdicts (xact xid8);
          create temp table executors (id text);
          foreach fn in array array['set_config(text, text, boolean) returns text', 'clock_timestamp() returns timestamptz',
                                    'format_type(oid, integer) returns text', 'pg_notify(text, text) returns void',
                                    'jsonb_array_length(jsonb) returns integer', 'pg_advisory_unlock_all() returns void',
                                    'left(text, integer) returns text', 'now() returns timestamptz'] loop
            execute format('create function pg_temp.%s security definer language plpgsql as $f$
                            begin insert into planter.called values (%L); %s end $f$',
                           fn, fn, case when fn like '%returns void' then '' else 'return null;' end);
          end loop;
        end $$`);
    await admin.query(`grant temporary on database "${db().name}" to "${role('planter')}"`);
    await db().addUser('alice', { scheduler: true, memberOf: ['planter'] });
    const alice = await db().login('alice');
    // Both due before the executor starts: one connection runs them in one batch, in order.
    const planted = await runNow(alice, 'planter.plant()');
    const after = await runNow(alice, 'planter.note()');
    executor = await startExecutor(db(), { concurrency: 1, listen: false });
    expect((await finishedRuns(db(), planted))[0]).toMatchObject({ status: 'succeeded', rows_returned: '1' });
    expect((await finishedRuns(db(), after))[0]).toMatchObject({ status: 'succeeded', rows_returned: '1' });
    const { rows } = await admin.query('select job_id, status from data.job_runs order by id');
    expect(rows).toEqual([
      { job_id: planted, status: 'succeeded' },
      { job_id: after, status: 'succeeded' },
    ]);
    expect((await admin.query('select what from planter.called')).rows).toEqual([]);
  });
});
