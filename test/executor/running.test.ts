import { afterAll, beforeAll, describe, expect, test } from 'vitest';
import type pg from 'pg';
import type { Executor } from '../../server/executor/executor.ts';
import { createOwner } from '../support/jobs.ts';
import { useTestDatabase } from '../support/database.ts';
import { finishedRuns, runNow, startExecutor, waitFor } from '../support/executor.ts';

/**
 * The owner role $jobs owns schema jobs with the job functions of these tests; alice (scheduler,
 * member of $jobs) schedules them; one executor runs them.
 */
describe('the executor runs jobs as their owners and records one outcome per run', () => {
  const db = useTestDatabase();
  let alice: pg.Client;
  let executor: Executor;

  beforeAll(async () => {
    await createOwner(db(), 'jobs', `
      create table jobs.effects (note text, by_role text default current_user, at timestamptz default clock_timestamp());
      create table jobs.counter (n int);
      insert into jobs.counter select generate_series(1, 3);
      create function jobs.note(note text) returns void security definer set search_path = pg_catalog, pg_temp
        language sql as $$ insert into jobs.effects (note) values (note) $$;
      create function jobs.five_and_three() returns void security definer set search_path = pg_catalog, pg_temp
        language sql as $$
          insert into jobs.effects (note) select 'row ' || i from generate_series(1, 5) i;
          update jobs.counter set n = n + 1;
        $$;
      create function jobs.thousand() returns setof int security definer set search_path = pg_catalog, pg_temp
        language sql as $$ select generate_series(1, 1000) $$;
      create function jobs.fail(note text) returns void security definer set search_path = pg_catalog, pg_temp
        language plpgsql as $$
        begin
          insert into jobs.effects (note) values (note);
          raise exception 'could not %', note using errcode = 'P0042', detail = 'the detail', hint = 'the hint';
        end $$;
      create function jobs.sleep(seconds float8) returns void security definer set search_path = pg_catalog, pg_temp
        language sql as $$ insert into jobs.effects (note) values ('slept'); select pg_sleep(seconds) $$;
      create function jobs.kill_own_backend() returns void security definer set search_path = pg_catalog, pg_temp
        language sql as $$ select pg_terminate_backend(pg_backend_pid()) $$`);
    await db().addUser('alice', { scheduler: true, memberOf: ['jobs'] });
    alice = await db().login('alice');
    executor = await startExecutor(db(), { concurrency: 2, maxRunsPerOwner: 2 });
  });

  afterAll(async () => {
    await executor?.stop();
  });

  test('a job runs as its owner, its effects and run record commit together', async () => {
    const jobId = await runNow(alice, 'jobs.note(text)', ['hello']);
    const [run] = await finishedRuns(db(), jobId);
    expect(run).toMatchObject({ status: 'succeeded', attempt: 1, rows_returned: '1', rows_affected: '1', reject_reason: null });
    const { rows } = await db().admin.query(`select by_role from jobs.effects where note = 'hello'`);
    expect(rows).toEqual([{ by_role: db().role('jobs') }]); // security definer: runs as the function's owner
    const job = (await alice.query('select last_status, last_run_at from api.jobs where id = $1', [jobId])).rows[0];
    expect(job.last_status).toBe('succeeded');
    expect(job.last_run_at).not.toBeNull();
  });

  test('metrics count runs by status, and observe lateness, duration and claim sizes', async () => {
    await finishedRuns(db(), await runNow(alice, 'jobs.note(text)', ['for the metrics']));
    const text = await executor.metrics.registry.metrics();
    expect(text).toMatch(/hardcron_runs_total\{status="succeeded"\} [1-9]/);
    expect(text).toMatch(/hardcron_run_lateness_seconds_count [1-9]/);
    expect(text).toMatch(/hardcron_run_duration_seconds_count [1-9]/);
    expect(text).toMatch(/hardcron_claim_batch_size_count [1-9]/);
  });

  test('rows_affected counts inserts, updates and deletes of the run; rows_returned counts returned rows', async () => {
    const [affected] = await finishedRuns(db(), await runNow(alice, 'jobs.five_and_three()'));
    expect(affected).toMatchObject({ status: 'succeeded', rows_affected: '8', rows_returned: '1' });
    const [thousand] = await finishedRuns(db(), await runNow(alice, 'jobs.thousand()'));
    expect(thousand).toMatchObject({ status: 'succeeded', rows_returned: '1000', rows_affected: '0' });
  });

  test('a failing job rolls back its own effects only, and its record keeps the whole error', async () => {
    const failing = await runNow(alice, 'jobs.fail(text)', ['fail-once']);
    const fine = await runNow(alice, 'jobs.note(text)', ['after the failure']);
    const [run] = await finishedRuns(db(), failing);
    expect(run).toMatchObject({
      status: 'failed',
      error_sqlstate: 'P0042',
      error_message: 'could not fail-once',
      error_detail: 'the detail',
      error_hint: 'the hint',
    });
    expect(run?.error_context).toContain('jobs.fail(text)');
    expect((await finishedRuns(db(), fine))[0]?.status).toBe('succeeded');
    const { rows } = await db().admin.query(`select note from jobs.effects where note in ('fail-once', 'after the failure')`);
    expect(rows).toEqual([{ note: 'after the failure' }]);
  });

  test('a job past its timeout is cancelled by the server: timed_out, nothing kept, the next job runs', async () => {
    const slow = await runNow(alice, 'jobs.sleep(float8)', [600], { timeout_seconds: 0.5 });
    const next = await runNow(alice, 'jobs.note(text)', ['after the timeout']);
    const [run] = await finishedRuns(db(), slow);
    expect(run).toMatchObject({ status: 'timed_out', error_sqlstate: '57014' });
    expect((await finishedRuns(db(), next))[0]?.status).toBe('succeeded');
    expect((await db().admin.query(`select count(*)::int as n from jobs.effects where note = 'slept'`)).rows[0].n).toBe(0);
  });

  test.each([
    ['pausing', 'api.pause_job'],
    ['unscheduling', 'api.unschedule_job'],
  ])('%s a job cancels its running run: cancelled, not retried, nothing kept', async (_, how) => {
    const slow = await runNow(alice, 'jobs.sleep(float8)', [600], { retries: 3 });
    await waitFor(db(), `select count(*) = 1 as done from pg_stat_activity
                          where datname = current_database() and application_name like 'hardcron executor%'
                            and wait_event = 'PgSleep'`);
    await alice.query(`select ${how}($1)`, [slow]);
    const [run] = await finishedRuns(db(), slow);
    expect(run).toMatchObject({ status: 'cancelled', attempt: 1, error_sqlstate: '57014' });
    expect((await db().admin.query(`select count(*)::int as n from jobs.effects where note = 'slept'`)).rows[0].n).toBe(0);
    // Not retried: nothing of the job is due any more.
    expect((await db().admin.query(`select count(*)::int as n from data.jobs where id = $1 and retry_at is not null`, [slow])).rows[0].n).toBe(0);
    const next = await runNow(alice, 'jobs.note(text)', [`after ${how}`]);
    expect((await finishedRuns(db(), next))[0]?.status).toBe('succeeded');
  });

  test('a job cannot kill its own backend: the backend is the executor\'s, not the owner\'s', async () => {
    const killer = await runNow(alice, 'jobs.kill_own_backend()');
    const next = await runNow(alice, 'jobs.note(text)', ['after the kill attempt']);
    const [run] = await finishedRuns(db(), killer);
    expect(run).toMatchObject({ status: 'failed', error_sqlstate: '42501' });
    expect(run?.error_message).toMatch(/permission denied to terminate process|must be a member of the role whose process is being terminated/);
    expect((await finishedRuns(db(), next))[0]?.status).toBe('succeeded');
  });

  test('a backend killed under a running job: the executor reconnects, the run is lost at once and retried, and it goes on', async () => {
    const slow = await runNow(alice, 'jobs.sleep(float8)', [30]);
    const runningBatch = `from pg_stat_activity where datname = current_database() and application_name like 'hardcron executor%' and state = 'active'
                          and query like '%executor.run(%' and pid <> pg_backend_pid()`;
    await waitFor(db(), `select count(*) = 1 as done ${runningBatch}`);
    await db().admin.query(`select pg_terminate_backend(pid) ${runningBatch}`);
    // Its transaction died with the backend, so no lock holds the run: it is declared lost as
    // soon as the executor has a new connection, not after the sweep's grace, and retried.
    const [run] = await finishedRuns(db(), slow);
    expect(run).toMatchObject({ status: 'lost', attempt: 1 });
    await waitFor(db(), `select count(*) = 1 as done from data.job_runs where job_id = $1 and attempt = 2`, [slow]);
    const next = await runNow(alice, 'jobs.note(text)', ['after the crash']);
    expect((await finishedRuns(db(), next))[0]?.status).toBe('succeeded');
    expect((await db().admin.query(`select count(*)::int as n from jobs.effects where note = 'slept'`)).rows[0].n).toBe(0);
  });
});
