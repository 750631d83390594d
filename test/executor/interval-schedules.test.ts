import { afterAll, beforeAll, describe, expect, test } from 'vitest';
import type pg from 'pg';
import type { Executor } from '../../server/executor/executor.ts';
import { useTestDatabase } from '../support/database.ts';
import { startExecutor, waitFor } from '../support/executor.ts';
import { createOwner, scheduleJob, type RunRow } from '../support/jobs.ts';

/** The columns of data.job_runs these tests read. */
type Run = Pick<RunRow, 'status' | 'scheduled_for' | 'missed_before' | 'trigger'>;

/** The executor runs interval schedules as it runs cron ones, with the same missed-run accounting. */
describe('interval schedules, run by an executor', () => {
  const db = useTestDatabase();
  let alice: pg.Client;
  let executor: Executor;

  beforeAll(async () => {
    await createOwner(db(), 'ivl', `
      create function ivl.noop() returns void security definer set search_path = pg_catalog, pg_temp language sql as $$ select $$`);
    await db().addUser('alice', { scheduler: true, memberOf: ['ivl'] });
    alice = await db().login('alice');
    executor = await startExecutor(db(), { concurrency: 2 });
  });

  afterAll(async () => {
    await executor?.stop();
  });

  const runsOf = async (jobId: string): Promise<Run[]> =>
    (await db().admin.query<Run>('select status, scheduled_for, missed_before, trigger from data.job_runs where job_id = $1 order by id', [jobId])).rows;

  const anchorOf = async (jobId: string): Promise<number> =>
    (await db().admin.query<{ at: Date }>('select schedule_anchor as at from data.jobs where id = $1', [jobId])).rows[0]!.at.getTime();

  test('every 1 second: runs on the anchor\'s whole seconds, each occurrence once', async () => {
    const { id } = await scheduleJob(alice, 'ivl.noop()', [], { schedule: 'every 1 second' });
    const anchor = await anchorOf(id);
    await waitFor(db(), `select count(*) filter (where status = 'succeeded') >= 2 as done from data.job_runs where job_id = $1`, [id]);
    await alice.query('select api.pause_job($1)', [id]);
    // On a busy machine a claim may come more than a second late: then it catches up (and a
    // `missed` row, on the same seconds, accounts for the gap).
    const runs = await runsOf(id);
    const times = runs.filter((run) => run.status !== 'missed').map((run) => run.scheduled_for.getTime());
    expect(times[0]).toBeGreaterThan(anchor);
    expect(runs.flatMap((run) => [run.scheduled_for.getTime(), run.missed_before?.getTime() ?? anchor]).every((t) => (t - anchor) % 1000 === 0)).toBe(true);
    expect(new Set(times).size).toBe(times.length);
    expect(times).toEqual([...times].sort((a, b) => a - b));
    expect(new Set(runs.filter((run) => run.status !== 'missed').map((run) => run.trigger))).toSatisfy(
      (triggers: Set<string | null>) => [...triggers].every((trigger) => trigger === 'schedule' || trigger === 'catch_up'));
  });

  test("behind by a minute, missed 'latest': one `missed` row accounts for the gap, then the newest occurrence runs", async () => {
    const { id } = await scheduleJob(alice, 'ivl.noop()', [], { schedule: 'every 1 second', options: { missed: 'latest' } });
    // As after downtime: the schedule and its due occurrence a minute earlier (whole seconds, so
    // the due occurrence stays on the schedule).
    const { rows } = await db().admin.query<{ due: Date }>(
      `update data.jobs set schedule_anchor = schedule_anchor - interval '60 seconds', next_run_at = next_run_at - interval '60 seconds'
        where id = $1 returning next_run_at as due`, [id]);
    const due = rows[0]!.due.getTime();
    const anchor = await anchorOf(id);
    await waitFor(db(), `select (select status from data.job_runs where job_id = $1 and status <> 'missed' order by id limit 1) <> 'running' as done`, [id]);
    await alice.query('select api.pause_job($1)', [id]);
    const [missed, first, ...rest] = await runsOf(id);
    expect(first).toMatchObject({ status: 'succeeded', trigger: 'catch_up' });
    expect(missed).toMatchObject({ status: 'missed', trigger: null });
    expect(missed!.scheduled_for.getTime()).toBe(due);
    expect(missed!.missed_before?.getTime()).toBe(first!.scheduled_for.getTime());
    // The newest, not one of the older ones: at least the anchor before backdating (the job was
    // scheduled then, and claimed after), which is 59 s after the backdated due occurrence.
    expect(first!.scheduled_for.getTime()).toBeGreaterThanOrEqual(due + 59_000);
    expect((first!.scheduled_for.getTime() - anchor) % 1000).toBe(0);
    // The one gap, one row: nothing else accounts for an occurrence before the run. (Later claims
    // that come more than a second late on a busy machine have gaps of their own, after it.)
    expect(rest.filter((run) => run.status === 'missed' && run.scheduled_for.getTime() < first!.scheduled_for.getTime())).toEqual([]);
  });
});
