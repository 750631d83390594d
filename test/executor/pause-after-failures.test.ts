import { afterAll, beforeAll, describe, expect, test } from 'vitest';
import type pg from 'pg';
import type { Executor } from '../../server/executor/executor.ts';
import { useTestDatabase } from '../support/database.ts';
import { afterNextClaim, startExecutor, waitFor } from '../support/executor.ts';
import { createOwner, failureOf, scheduleJob } from '../support/jobs.ts';

/** Option max_consecutive_failures: a job pauses itself after that many failed runs in a row, and says why. */
describe('pausing after failures in a row', () => {
  const db = useTestDatabase();
  let alice: pg.Client;
  let executor: Executor;

  beforeAll(async () => {
    await createOwner(db(), 'pf', `
      create table pf.switch (fail boolean not null);
      insert into pf.switch values (true);
      create function pf.flaky() returns void security definer set search_path = pg_catalog, pg_temp
        language plpgsql as $$ begin if (select fail from pf.switch) then raise exception 'flaky failed' using errcode = 'P0042'; end if; end $$;
      create function pf.noop() returns void security definer set search_path = pg_catalog, pg_temp language sql as $$ select $$`);
    await db().addUser('alice', { scheduler: true, memberOf: ['pf'] });
    alice = await db().login('alice');
    executor = await startExecutor(db());
  });

  afterAll(async () => {
    await executor?.stop();
  });

  const job = async (id: string): Promise<{ enabled: boolean; paused_reason: string | null; consecutive_failures: number; next_run_at: Date | null }> =>
    (await alice.query('select enabled, paused_reason, consecutive_failures, next_run_at from api.jobs where id = $1', [id])).rows[0];
  const runs = async (id: string): Promise<string[]> =>
    (await db().admin.query<{ status: string }>('select status from data.job_runs where job_id = $1 order by id', [id])).rows.map((row) => row.status);

  test('a per-second job failing three times in a row pauses itself, says why, runs no more; resuming resets the count', async () => {
    const { id } = await scheduleJob(alice, 'pf.flaky()', [], { schedule: '* * * * * *', options: { max_consecutive_failures: 3 } });
    await waitFor(db(), 'select not enabled as done from data.jobs where id = $1', [id]);
    expect(await job(id)).toMatchObject({ enabled: false, consecutive_failures: 3, next_run_at: null });
    expect((await job(id)).paused_reason).toMatch(/^paused after 3 failures in a row \(max_consecutive_failures\); the last: run \d+, P0042$/);
    // Nothing of it runs after the executor's next claim. (Occurrences due while a run was still
    // going were recorded skipped, and any the executor fell behind on missed: they did not run.)
    await afterNextClaim(db(), alice, 'pf.noop()');
    expect((await runs(id)).filter((status) => status !== 'skipped' && status !== 'missed')).toEqual(['failed', 'failed', 'failed']);

    await db().admin.query('update pf.switch set fail = false');
    await alice.query('select api.resume_job($1)', [id]);
    expect(await job(id)).toMatchObject({ enabled: true, paused_reason: null, consecutive_failures: 0 });
    await waitFor(db(), `select exists (select from data.job_runs where job_id = $1 and status = 'succeeded') as done`, [id]);
    await alice.query('select api.pause_job($1)', [id]);
    const paused = await job(id);
    expect(paused).toMatchObject({ enabled: false, consecutive_failures: 0 });
    expect(paused.paused_reason).toBe(`paused by ${db().role('alice')}`);
  });

  test('a success resets the count: failures that are not in a row never pause the job', async () => {
    // One run at a time, each asked for (run now) and waited for: fail, succeed, fail, fail.
    const { id } = await scheduleJob(alice, 'pf.flaky()', [], { runIn: '1 hour', options: { max_consecutive_failures: 3 } });
    for (const [n, fail] of [true, false, true, true].entries()) {
      await db().admin.query('update pf.switch set fail = $1', [fail]);
      await alice.query('select api.run_job_now($1)', [id]);
      await waitFor(db(), `select count(*) = $2 as done from data.job_runs where job_id = $1 and status <> 'running'`, [id, n + 1]);
    }
    expect(await runs(id)).toEqual(['failed', 'succeeded', 'failed', 'failed']);
    expect(await job(id)).toMatchObject({ enabled: true, consecutive_failures: 2, paused_reason: null });
  });

  test('bad values are refused with HC210 and leave no job behind', async () => {
    const before = (await db().admin.query<{ n: number }>('select count(*)::int as n from data.jobs')).rows[0]?.n;
    for (const value of ['0', '-1', '1.5', '1001', '"3"', 'true']) {
      const failure = await failureOf(alice, `select api.schedule_job('pf.noop()', options => '{"max_consecutive_failures": ${value}}')`);
      expect(failure, value).toMatchObject({ code: 'HC210', message: 'option max_consecutive_failures must be a whole number from 1 to 1000' });
    }
    expect((await db().admin.query<{ n: number }>('select count(*)::int as n from data.jobs')).rows[0]?.n).toBe(before);
  });
});
