import { beforeAll, describe, expect, test } from 'vitest';
import type pg from 'pg';
import { useTestDatabase } from '../support/database.ts';
import { countRows, createBilling, failureOf, type JobRow } from '../support/jobs.ts';
import { finishedRuns, startExecutor } from '../support/executor.ts';

describe('scheduling a job through the api, as provisioned users over real logins', () => {
  const db = useTestDatabase();
  let alice: pg.Client;
  let bob: pg.Client;
  let carol: pg.Client;

  beforeAll(async () => {
    await createBilling(db());
    await db().addUser('alice', { scheduler: true, memberOf: ['billing'] });
    await db().addUser('bob', { scheduler: true });
    await db().addUser('carol', { memberOf: ['billing'] }); // sees billing's jobs, schedules nothing
    alice = await db().login('alice');
    bob = await db().login('bob');
    carol = await db().login('carol');
  });

  const schedule = async (client: pg.Client, params: Record<string, unknown>): Promise<JobRow> => {
    const names = Object.keys(params);
    const sql = `select * from api.schedule_job(${names.map((name, i) => `${name} => $${i + 1}`).join(', ')})`;
    const { rows } = await client.query<JobRow>(sql, Object.values(params));
    return rows[0] as JobRow;
  };

  test('alice schedules billing.close_day(date) on a cron; alice and billing members see it, bob does not', async () => {
    const before = new Date();
    const job = await schedule(alice, {
      function_signature: 'billing.close_day(date)',
      arguments: JSON.stringify(['2026-01-01']),
      schedule: '30 2 * * *',
      name: 'close the day',
      time_zone: 'Europe/Amsterdam',
    });

    expect(job).toMatchObject({
      name: 'close the day',
      owner: db().role('alice'),
      function_signature: 'billing.close_day(date)',
      arguments: ['2026-01-01'],
      schedule: '30 2 * * *',
      run_at: null,
      time_zone: 'Europe/Amsterdam',
      options: { overlap: 'skip', missed: 'latest', timeout_seconds: 300, retries: 0 },
      enabled: true,
      last_run_at: null,
      last_status: null,
    });

    // next_run_at is right as soon as schedule_job returns: the next 02:30 in Amsterdam.
    const expected = await db().admin.query<{ next: Date }>(
      `select min(t) as next from generate_series(date_trunc('day', now() at time zone 'Europe/Amsterdam') - interval '1 day',
                                                     now() at time zone 'Europe/Amsterdam' + interval '2 days', interval '1 day') d,
              lateral (select (d + interval '2 hours 30 minutes') at time zone 'Europe/Amsterdam' as t) x
        where t > $1`,
      [before],
    );
    expect(job.next_run_at).toEqual(expected.rows[0]?.next);

    const visibleTo = async (client: pg.Client): Promise<string[]> =>
      (await client.query<{ id: string }>('select id from api.jobs order by id')).rows.map((row) => row.id);
    expect(await visibleTo(alice)).toEqual([job.id]);
    expect(await visibleTo(carol)).toEqual([job.id]);
    expect(await visibleTo(bob)).toEqual([]);
  });

  test('a one-off job at a time: next_run_at is run_at; aliases and unqualified types in the signature resolve', async () => {
    const runAt = new Date(Date.now() + 3_600_000);
    const job = await schedule(alice, {
      function_signature: 'billing.close_day(DATE)',
      arguments: JSON.stringify(['2026-02-01']),
      run_at: runAt,
    });
    expect(job).toMatchObject({ function_signature: 'billing.close_day(date)', schedule: null, run_at: runAt, next_run_at: runAt });

    const byName = await schedule(alice, { function_signature: 'billing.close_day', arguments: '["2026-02-02"]', schedule: '@daily' });
    expect(byName.function_signature).toBe('billing.close_day(date)');
  });

  test('a one-off job with neither schedule nor run_at is due at once, runs once, and stays listed with its run', async () => {
    const job = await schedule(alice, { function_signature: 'billing.close_day(date)', arguments: '["2026-02-03"]', name: 'once, now' });
    const { rows: [scheduledAt] } = await alice.query<{ now: Date }>('select now()');
    expect(job).toMatchObject({ schedule: null, enabled: true });
    // Due when it was scheduled: run_at and next_run_at are the scheduling transaction's time.
    expect(job.run_at).toEqual(job.next_run_at);
    expect((job.run_at as Date).getTime()).toBeLessThanOrEqual((scheduledAt?.now as Date).getTime());

    const executor = await startExecutor(db());
    try {
      const [run] = await finishedRuns(db(), job.id);
      expect(run).toMatchObject({ status: 'succeeded', attempt: 1, scheduled_for: job.run_at });
    } finally {
      await executor.stop();
    }
    // Nothing more to run, and still listed (with its run) for its owner.
    expect((await alice.query('select next_run_at, last_status from api.jobs where id = $1', [job.id])).rows).toEqual([{ next_run_at: null, last_status: 'succeeded' }]);
    expect((await alice.query(`select count(*)::int as n from api.job_runs where job_id = $1`, [job.id])).rows).toEqual([{ n: 1 }]);
    expect((await db().admin.query(`select count(*)::int as n from billing.closed where day = '2026-02-03'`)).rows).toEqual([{ n: 1 }]);
  });

  test('pause clears next_run_at, resume restores it, run now adds an occurrence due now, update re-plans', async () => {
    const job = await schedule(alice, { function_signature: 'billing.close_day(date)', arguments: '["2026-03-01"]', schedule: '0 4 * * *' });

    const paused = (await alice.query<JobRow>('select * from api.pause_job($1)', [job.id])).rows[0];
    expect(paused).toMatchObject({ enabled: false, next_run_at: null });

    const resumed = (await alice.query<JobRow>('select * from api.resume_job($1)', [job.id])).rows[0];
    expect(resumed).toMatchObject({ enabled: true, next_run_at: job.next_run_at });

    const now = (await alice.query<{ now: Date }>('select now()')).rows[0]?.now as Date;
    const ranNow = (await alice.query<JobRow>('select * from api.run_job_now($1)', [job.id])).rows[0] as JobRow;
    expect(ranNow.next_run_at?.getTime()).toBeLessThanOrEqual(now.getTime() + 1000);
    expect(ranNow.next_run_at?.getTime()).toBeLessThan((job.next_run_at as Date).getTime());

    const updated = (
      await alice.query<JobRow>(`select * from api.update_job($1, schedule => '*/10 * * * *', options => '{"retries": 2}')`, [job.id])
    ).rows[0] as JobRow;
    expect(updated).toMatchObject({ schedule: '*/10 * * * *', arguments: ['2026-03-01'] });
    expect(updated.options).toMatchObject({ retries: 2, overlap: 'skip' });
    expect(updated.updated_at.getTime()).toBeGreaterThanOrEqual(job.updated_at.getTime());

    const switched = (await alice.query<JobRow>(`select * from api.update_job($1, run_at => now() + interval '1 day')`, [job.id]))
      .rows[0] as JobRow;
    expect(switched).toMatchObject({ schedule: null });
    expect(switched.run_at).not.toBeNull();
  });

  test('a paused job does not run, not even on request: pausing drops a pending run-now request, run now is refused (HC216)', async () => {
    const job = await schedule(alice, { function_signature: 'billing.close_day(date)', arguments: '["2026-03-02"]', schedule: '0 4 * * *' });
    await alice.query('select api.run_job_now($1)', [job.id]);
    expect((await db().admin.query('select extra_run_at is not null as requested from data.jobs where id = $1', [job.id])).rows).toEqual([{ requested: true }]);
    const paused = (await alice.query<JobRow>('select * from api.pause_job($1)', [job.id])).rows[0];
    expect(paused).toMatchObject({ enabled: false, next_run_at: null });
    expect((await db().admin.query('select extra_run_at from data.jobs where id = $1', [job.id])).rows).toEqual([{ extra_run_at: null }]);

    const before = (await db().admin.query('select * from data.jobs where id = $1', [job.id])).rows;
    expect(await failureOf(alice, 'select api.run_job_now($1)', [job.id])).toMatchObject({
      code: 'HC216',
      message: `job ${job.id} is paused`,
      hint: `resume it first: api.resume_job(${job.id})`,
    });
    expect((await db().admin.query('select * from data.jobs where id = $1', [job.id])).rows).toEqual(before);

    await alice.query('select api.resume_job($1)', [job.id]);
    const ranNow = (await alice.query<JobRow>('select * from api.run_job_now($1)', [job.id])).rows[0] as JobRow;
    expect(ranNow.enabled).toBe(true);
    expect((await db().admin.query('select extra_run_at is not null as requested from data.jobs where id = $1', [job.id])).rows).toEqual([{ requested: true }]);
  });

  test('unscheduling removes the job and keeps its run history', async () => {
    const job = await schedule(alice, { function_signature: 'billing.close_day(date)', arguments: '["2026-04-01"]', schedule: '0 5 * * *' });
    await db().admin.query(
      `insert into data.job_runs (job_id, owner, function_owner, scheduled_for, started_at, finished_at, status, rows_returned, rows_affected)
       values ($1, $2, $3, now(), now(), now(), 'succeeded', 1, 1)`,
      [job.id, db().role('alice'), db().role('billing')],
    );
    expect((await alice.query('select api.unschedule_job($1) as done', [job.id])).rows).toEqual([{ done: true }]);
    expect((await alice.query('select id from api.jobs where id = $1', [job.id])).rows).toEqual([]);
    expect((await alice.query('select status from api.job_runs where job_id = $1', [job.id])).rows).toEqual([{ status: 'succeeded' }]);
    const { code, message } = await failureOf(alice, 'select api.unschedule_job($1)', [job.id]);
    expect({ code, message }).toEqual({ code: 'HC211', message: `job ${job.id} not found` });
  });

  test('a billing member who did not schedule the job may see it but not change it', async () => {
    const job = await schedule(alice, { function_signature: 'billing.close_day(date)', arguments: '["2026-05-01"]', schedule: '0 6 * * *' });
    const refused = await failureOf(carol, 'select * from api.pause_job($1)', [job.id]);
    expect(refused.code).toBe('HC212');
    expect((await alice.query<JobRow>('select enabled from api.jobs where id = $1', [job.id])).rows).toEqual([{ enabled: true }]);
  });

  test('a user without $job_scheduler cannot schedule, and nothing is stored', async () => {
    const before = await countRows(db(), 'select from data.jobs');
    const refused = await failureOf(carol, `select * from api.schedule_job('billing.close_day(date)', '["2026-01-01"]', '0 1 * * *')`);
    expect(refused.code).toBe('HC204');
    expect(refused.message).toMatch(/rule 1.*job_scheduler/);
    expect(await countRows(db(), 'select from data.jobs')).toBe(before);
  });

  test('$client members reach the job tables only through the api', async () => {
    expect((await failureOf(alice, 'select * from data.jobs')).code).toBe('42501');
    expect((await failureOf(alice, `select code.schedule_job('billing.close_day(date)', '[]', '* * * * *', null, null, 'UTC', '{}')`)).code).toBe(
      '42501',
    );
    expect((await failureOf(alice, `select code.check_eligibility('x', 'y', '[]')`)).code).toBe('42501');
  });
});
