import { afterAll, beforeAll, describe, expect, test } from 'vitest';
import type pg from 'pg';
import type { Executor } from '../../server/executor/executor.ts';
import { useTestDatabase } from '../support/database.ts';
import { finishedRuns, runNow, startExecutor, waitFor } from '../support/executor.ts';
import { createOwner, failureOf, scheduleJob, type Failure } from '../support/jobs.ts';

/** The advisory key the test holds and the job waits for: the run is running as long as the test wants. */
const KEY = 74_017;

/**
 * alice (scheduler, member of $jobs) runs a job that records a note, then waits for an advisory
 * lock the test holds; bob (a scheduler without $jobs) tries to cancel it; carol (member of
 * $jobs, who sees alice's runs) may not change them. One executor runs the jobs.
 */
describe('api.cancel_run stops a running run for whoever may manage its job', () => {
  const db = useTestDatabase();
  let alice: pg.Client;
  let bob: pg.Client;
  let carol: pg.Client;
  let holder: pg.Client; // holds KEY
  let executor: Executor;

  beforeAll(async () => {
    await createOwner(db(), 'jobs', `
      create table jobs.effects (note text);
      create function jobs.note_then_wait(note text) returns void security definer set search_path = pg_catalog, pg_temp
        language sql as $$ insert into jobs.effects values (note); select pg_advisory_xact_lock(${KEY}) $$;
      create function jobs.note(note text) returns void security definer set search_path = pg_catalog, pg_temp
        language sql as $$ insert into jobs.effects values (note) $$`);
    await db().addUser('alice', { scheduler: true, memberOf: ['jobs'] });
    await db().addUser('bob', { scheduler: true });
    await db().addUser('carol', { memberOf: ['jobs'] });
    alice = await db().login('alice');
    bob = await db().login('bob');
    carol = await db().login('carol');
    holder = await db().login('alice'); // any session may hold an advisory key
    // A short lease: its renewals, every third of it, sweep runs whose executor is gone.
    executor = await startExecutor(db(), { concurrency: 2, maxRunsPerOwner: 2, leaseSeconds: 3 });
  });

  afterAll(async () => {
    await executor?.stop();
  });

  /** Starts a run of jobs.note_then_wait that stays running (waiting for KEY); returns its job and run ids. */
  const runningRun = async (note: string): Promise<{ jobId: string; runId: string }> => {
    await holder.query('select pg_catalog.pg_advisory_lock($1::bigint)', [KEY]);
    const jobId = await runNow(alice, 'jobs.note_then_wait(text)', [note], { retries: 3 });
    await waitFor(db(), `select count(*) = 1 as done from pg_stat_activity
                          where datname = current_database() and application_name like 'hardcron executor%'
                            and wait_event_type = 'Lock' and wait_event = 'advisory'`);
    const { rows } = await db().admin.query<{ id: string }>(`select id from data.job_runs where job_id = $1 and status = 'running'`, [jobId]);
    expect(rows).toHaveLength(1);
    return { jobId, runId: (rows[0] as { id: string }).id };
  };

  const release = async (): Promise<void> => {
    await holder.query('select pg_catalog.pg_advisory_unlock($1::bigint)', [KEY]);
  };

  const neverUsedId = async (): Promise<string> =>
    (await db().admin.query<{ id: string }>('select (coalesce(max(id), 0) + 1000000)::text as id from data.job_runs')).rows[0]?.id ?? '';

  /** The error with the run id in its message replaced, to compare the answers for two ids. */
  const shape = (failure: Failure, id: string): Failure => ({ ...failure, message: failure.message.replace(id, '<id>') });

  test('alice cancels her running run: cancelled, its effects rolled back, not retried', async () => {
    const { jobId, runId } = await runningRun('cancelled-note');
    const { rows: answer } = await alice.query<{ id: string; status: string }>('select id, status from api.cancel_run($1::bigint)', [runId]);
    expect(answer).toEqual([{ id: runId, status: 'running' }]); // the run as it was when asked: its executor stops it
    const [run, ...others] = await finishedRuns(db(), jobId);
    expect(others).toEqual([]);
    expect(run).toMatchObject({ id: runId, status: 'cancelled', attempt: 1, error_sqlstate: '57014' });
    expect((await db().admin.query(`select count(*)::int as n from jobs.effects where note = 'cancelled-note'`)).rows[0].n).toBe(0);
    // Not retried, although the job allows 3 retries; the job itself stays as it was.
    expect((await db().admin.query('select enabled, retry_at from data.jobs where id = $1', [jobId])).rows).toEqual([{ enabled: true, retry_at: null }]);
    await release();
    const next = await runNow(alice, 'jobs.note(text)', ['after the cancel']); // the executor has claimed since
    expect((await finishedRuns(db(), next))[0]?.status).toBe('succeeded');
    expect((await db().admin.query('select count(*)::int as n from data.job_runs where job_id = $1', [jobId])).rows[0].n).toBe(1);
  });

  test('a run asked to stop whose executor is gone is swept as cancelled, not lost, and not retried', async () => {
    const { id: jobId } = await scheduleJob(alice, 'jobs.note(text)', ['never'], { options: { retries: 3 } });
    // A run as a claim by an executor that has since died leaves it: running, nobody's.
    const { rows } = await db().admin.query<{ id: string }>(
      `insert into data.job_runs (job_id, owner, function_owner, scheduled_for, status, executor_id, claimed_at, claim_token)
       values ($1, $2, $3, now(), 'running', 'gone', now(), gen_random_uuid()) returning id`,
      [jobId, db().role('alice'), db().role('jobs')]);
    const runId = (rows[0] as { id: string }).id;
    await alice.query('select api.cancel_run($1::bigint)', [runId]);
    // The live executor's sweep (at each lease renewal) finds it.
    const [run, ...others] = await finishedRuns(db(), jobId);
    expect(others).toEqual([]);
    expect(run).toMatchObject({ id: runId, status: 'cancelled', attempt: 1 });
    expect((await db().admin.query('select retry_at from data.jobs where id = $1', [jobId])).rows).toEqual([{ retry_at: null }]);
  });

  test('a run that is not running answers HC217', async () => {
    const done = await runNow(alice, 'jobs.note(text)', ['finished']);
    const [run] = await finishedRuns(db(), done);
    const failure = await failureOf(alice, 'select * from api.cancel_run($1::bigint)', [run?.id]);
    expect(failure).toMatchObject({ code: 'HC217', message: `run ${run?.id} is not running: it is succeeded` });
    expect((await db().admin.query('select count(*)::int as n from data.cancel_requests where run_id = $1', [run?.id])).rows[0].n).toBe(0);
  });

  test('bob gets for alice\'s running run exactly the answer for a missing id, and the run keeps running; carol may see it, not cancel it', async () => {
    const { jobId, runId } = await runningRun('kept-running');
    const foreign = await failureOf(bob, 'select * from api.cancel_run($1::bigint)', [runId]);
    const missingId = await neverUsedId();
    const missing = await failureOf(bob, 'select * from api.cancel_run($1::bigint)', [missingId]);
    expect(foreign).toMatchObject({ code: 'HC211', message: `run ${runId} not found` });
    expect(shape(foreign, runId)).toEqual(shape(missing, missingId));
    expect(JSON.stringify(foreign)).not.toContain('jobs');

    expect((await carol.query('select id from api.job_runs where id = $1::bigint', [runId])).rows).toEqual([{ id: runId }]);
    expect(await failureOf(carol, 'select * from api.cancel_run($1::bigint)', [runId])).toMatchObject({ code: 'HC212' });

    // Nothing was asked of the run, and it is still waiting for the key.
    expect((await db().admin.query('select count(*)::int as n from data.cancel_requests where run_id = $1', [runId])).rows[0].n).toBe(0);
    await release();
    const [run] = await finishedRuns(db(), jobId);
    expect(run).toMatchObject({ id: runId, status: 'succeeded' });
    expect((await db().admin.query(`select count(*)::int as n from jobs.effects where note = 'kept-running'`)).rows[0].n).toBe(1);
  });
});
