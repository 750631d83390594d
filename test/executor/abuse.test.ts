import { afterAll, beforeAll, describe, expect, test } from 'vitest';
import type pg from 'pg';
import type { Executor } from '../../server/executor/executor.ts';
import { connect, useTestDatabase } from '../support/database.ts';
import { finishedRuns, runNow, startExecutor, waitFor } from '../support/executor.ts';
import { createOwner } from '../support/jobs.ts';

/**
 * Jobs that wait forever, turn their timeout off, go after the
 * executor's connections, return more than anyone wants, or flood the connection. Two workers,
 * so "other jobs unaffected" means a job running beside the bad one, not only after it.
 */
describe('jobs that abuse their connection or the executor', () => {
  const db = useTestDatabase();
  let alice: pg.Client;
  let executor: Executor;

  beforeAll(async () => {
    await createOwner(db(), 'abuse', `
      create table abuse.locked (x int);
      create table abuse.effects (note text, at timestamptz default clock_timestamp());
      create function abuse.note(note text) returns void security definer set search_path = pg_catalog, pg_temp
        language sql as $$ insert into abuse.effects (note) values (note) $$;
      create function abuse.wait_for_lock() returns void security definer set search_path = pg_catalog, pg_temp
        language sql as $$ insert into abuse.effects (note) values ('got the lock'); lock table abuse.locked in exclusive mode $$;
      create function abuse.sleep_without_timeout() returns void security definer set search_path = pg_catalog, pg_temp
        language plpgsql as $$
        begin
          perform set_config('statement_timeout', '0', false);
          perform set_config('lock_timeout', '0', false);
          insert into abuse.effects (note) values ('slept untimed');
          perform pg_sleep(600);
        end $$;
      create function abuse.terminate_executor() returns bigint security definer set search_path = pg_catalog, pg_temp
        language sql as $$
          select count(*) from pg_stat_activity
           where datname = current_database() and application_name like 'hardcron executor%' and pid <> pg_backend_pid() and pg_terminate_backend(pid) $$;
      create function abuse.cancel_executor() returns bigint security definer set search_path = pg_catalog, pg_temp
        language sql as $$
          select count(*) from pg_stat_activity
           where datname = current_database() and application_name like 'hardcron executor%' and pid <> pg_backend_pid() and pg_cancel_backend(pid) $$;
      create function abuse.million() returns setof int security definer set search_path = pg_catalog, pg_temp
        language sql as $$ select generate_series(1, 1000000) $$;
      create function abuse.huge() returns text security definer set search_path = pg_catalog, pg_temp
        language sql as $$ select repeat('x', 64 * 1024 * 1024) $$;
      create function abuse.notices(n int) returns void security definer set search_path = pg_catalog, pg_temp
        language plpgsql as $$
        begin
          perform set_config('client_min_messages', 'debug5', false);
          for i in 1 .. n loop raise notice 'notice % of a flood', i; end loop;
        end $$;
      create function abuse.notifications(n int) returns void security definer set search_path = pg_catalog, pg_temp
        language plpgsql as $$
        begin
          -- Distinct payloads: PostgreSQL folds identical ones of a transaction into one.
          for i in 1 .. n loop
            perform pg_notify('hardcron_run_events', json_build_object('run_id', i, 'job_id', i, 'status', 'succeeded')::text);
          end loop;
        end $$`);
    await db().addUser('alice', { scheduler: true, memberOf: ['abuse'] });
    alice = await db().login('alice');
    executor = await startExecutor(db(), { concurrency: 2, maxRunsPerOwner: 2, batchSize: 1 });
  });

  afterAll(async () => {
    await executor?.stop();
  });

  const executorBackends = async (): Promise<number[]> =>
    (
      await db().admin.query<{ pid: number }>(
        `select pid from pg_stat_activity where datname = current_database() and application_name like 'hardcron executor%' order by pid`,
      )
    ).rows.map((row) => row.pid);

  const statusOf = async (jobId: string): Promise<string | undefined> =>
    (await db().admin.query<{ status: string }>('select status from data.job_runs where job_id = $1', [jobId])).rows[0]?.status;

  test('a job waiting forever on a lock times out, while a job beside it runs; the connection is used again', { timeout: 60_000 }, async () => {
    const holder = await connect(db().adminUrl);
    try {
      await holder.query('begin; lock table abuse.locked in access exclusive mode');
      const blocked = await runNow(alice, 'abuse.wait_for_lock()', [], { timeout_seconds: 3 });
      await waitFor(db(), `select count(*) = 1 as done from pg_stat_activity
                            where datname = current_database() and application_name like 'hardcron executor%'
                              and wait_event_type = 'Lock'`);
      const beside = await runNow(alice, 'abuse.note(text)', ['beside the blocked job']);
      expect((await finishedRuns(db(), beside))[0]?.status).toBe('succeeded');
      expect(await statusOf(blocked)).toBe('running'); // still waiting while the other one ran
      const [run] = await finishedRuns(db(), blocked);
      expect(run).toMatchObject({ status: 'timed_out', error_sqlstate: '57014' });
    } finally {
      await holder.end();
    }
    expect((await db().admin.query(`select count(*)::int as n from abuse.effects where note = 'got the lock'`)).rows[0].n).toBe(0);
    // Both workers are usable again: two jobs at once both succeed.
    const after = await Promise.all([runNow(alice, 'abuse.note(text)', ['after 1']), runNow(alice, 'abuse.note(text)', ['after 2'])]);
    for (const id of after) expect((await finishedRuns(db(), id))[0]?.status).toBe('succeeded');
  });

  test("a job's own day-long timeout is held to the executor's ceiling", async () => {
    const ceiling = await startExecutor(db(), { concurrency: 1, maxRunSeconds: 1, executorId: 'ceiling' });
    try {
      await executor.stop(); // only the executor with the ceiling claims meanwhile
      const long = await runNow(alice, 'abuse.sleep_without_timeout()', [], { timeout_seconds: 86_400 });
      const [run] = await finishedRuns(db(), long, 1);
      expect(run).toMatchObject({ status: 'timed_out', error_sqlstate: '57014', executor_id: 'ceiling' });
    } finally {
      await ceiling.stop();
      executor = await startExecutor(db(), { concurrency: 2, maxRunsPerOwner: 2, batchSize: 1 });
    }
  });

  test('a job that turns statement_timeout and lock_timeout off for itself still times out', { timeout: 60_000 }, async () => {
    const untimed = await runNow(alice, 'abuse.sleep_without_timeout()', [], { timeout_seconds: 1 });
    const [run] = await finishedRuns(db(), untimed, 1);
    expect(run).toMatchObject({ status: 'timed_out', error_sqlstate: '57014' });
    expect((await db().admin.query(`select count(*)::int as n from abuse.effects where note = 'slept untimed'`)).rows[0].n).toBe(0);
    const next = await runNow(alice, 'abuse.note(text)', ['after the untimed sleep']);
    expect((await finishedRuns(db(), next))[0]?.status).toBe('succeeded');
  });

  test.each(['terminate', 'cancel'])("a job cannot %s the executor's other connections", async (how) => {
    const before = await executorBackends();
    expect(before.length).toBeGreaterThanOrEqual(3); // two workers and the control connection
    const attack = await runNow(alice, `abuse.${how}_executor()`);
    const [run] = await finishedRuns(db(), attack);
    expect(run).toMatchObject({ status: 'failed', error_sqlstate: '42501' });
    const next = await runNow(alice, 'abuse.note(text)', [`after the ${how} attempt`]);
    expect((await finishedRuns(db(), next))[0]?.status).toBe('succeeded');
    expect(await executorBackends()).toEqual(before); // not one connection was lost or replaced
  });

  test('a million rows, a 64 MB value, a million notices and 100,000 notifications: counted, not kept', { timeout: 120_000 }, async () => {
    expect(typeof global.gc).toBe('function'); // vitest.config.ts: --expose-gc
    global.gc?.();
    const heapBefore = process.memoryUsage().heapUsed;
    let heapPeak = heapBefore;
    const sampler = setInterval(() => {
      heapPeak = Math.max(heapPeak, process.memoryUsage().heapUsed);
    }, 5);
    try {
      const million = await runNow(alice, 'abuse.million()');
      const huge = await runNow(alice, 'abuse.huge()');
      const notices = await runNow(alice, 'abuse.notices(integer)', [1_000_000], { timeout_seconds: 100 });
      const notifications = await runNow(alice, 'abuse.notifications(integer)', [100_000], { timeout_seconds: 100 });
      expect((await finishedRuns(db(), million))[0]).toMatchObject({ status: 'succeeded', rows_returned: '1000000' });
      expect((await finishedRuns(db(), huge))[0]).toMatchObject({ status: 'succeeded', rows_returned: '1' });
      await waitFor(db(), `select count(*) = 2 as done from data.job_runs where job_id in ($1, $2) and status <> 'running'`, [notices, notifications], 100_000);
      expect(await statusOf(notices)).toBe('succeeded');
      expect(await statusOf(notifications)).toBe('succeeded');
      const next = await runNow(alice, 'abuse.note(text)', ['after the floods']);
      expect((await finishedRuns(db(), next))[0]?.status).toBe('succeeded');
    } finally {
      clearInterval(sampler);
    }
    global.gc?.();
    // Only counts reach the executor: nothing of the rows, the value or the notices is kept, and
    // its peak stays far below what keeping them would take (the notices alone are ~60 MB of text).
    expect(process.memoryUsage().heapUsed - heapBefore).toBeLessThan(16 * 1024 * 1024);
    expect(heapPeak - heapBefore).toBeLessThan(96 * 1024 * 1024);
  });
});
