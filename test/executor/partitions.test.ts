import { afterAll, beforeAll, describe, expect, test } from 'vitest';
import type pg from 'pg';
import type { Executor } from '../../server/executor/executor.ts';
import { createOwner, scheduleJob } from '../support/jobs.ts';
import { useTestDatabase } from '../support/database.ts';
import { executorUrl, startExecutor, waitFor } from '../support/executor.ts';

/**
 * Exactly once and atomicity while the history's partitions change under the executors: new
 * partitions are created and opened (claims move to them), and old ones are settled, compacted,
 * truncated and dropped by retention, all while two executors claim and run. The effects table
 * has a primary key per job: a second execution of a one-off fails loudly (and would be recorded
 * `failed`); every run of a per-second job leaves one row.
 */
describe('partitions created, opened, emptied and dropped while executors run', () => {
  const db = useTestDatabase();
  let alice: pg.Client;
  const executors: Executor[] = [];
  const ONE_OFFS = 600;
  const TICKERS = 8;

  beforeAll(async () => {
    await createOwner(db(), 'once', `
      create table once.touched (job_id bigint primary key);
      create table once.ticks (job_id bigint not null);
      create function once.touch(job_id bigint) returns void security definer set search_path = pg_catalog, pg_temp
        language sql as $$ insert into once.touched (job_id) values (job_id) $$;
      create function once.tick(job_id bigint) returns void security definer set search_path = pg_catalog, pg_temp
        language sql as $$ insert into once.ticks (job_id) values (job_id) $$;
      create function once.nap(seconds float8) returns void security definer set search_path = pg_catalog, pg_temp
        language sql as $$ select pg_sleep(seconds) $$;`);
    await db().addUser('alice', { scheduler: true, memberOf: ['once'] });
    alice = await db().login('alice');
  });

  afterAll(async () => {
    await Promise.all(executors.map((executor) => executor.stop()));
  });

  test('no occurrence runs twice or goes missing, no run is lost or left running, effects match runs one to one', async () => {
    // Junk history of another job (kept one day, no last runs): what retention empties meanwhile.
    const junk = await scheduleJob(alice, 'once.tick(bigint)', [0], { options: { keep_days: 1, keep_last_runs: 0 } });
    await db().admin.query('update data.jobs set enabled = false, next_run_at = null where id = $1::bigint', [junk.id]);
    const tickers: string[] = [];
    for (let i = 0; i < TICKERS; i++) {
      const job = await scheduleJob(alice, 'once.tick(bigint)', [0], { schedule: '* * * * * *' });
      await alice.query('select api.update_job($1::bigint, arguments => jsonb_build_array($1::bigint))', [job.id]);
      tickers.push(job.id);
    }
    const connectionString = await executorUrl(db());
    executors.push(
      ...(await Promise.all([0, 1].map((i) => startExecutor(db(), { connectionString, concurrency: 3, executorId: `p${i}`, historySeconds: 3600 })))),
    );
    const { rows: oneOffs } = await alice.query<{ id: string }>(
      `select (api.update_job(j.id, arguments => jsonb_build_array(j.id))).id
         from (select (api.schedule_job('once.touch(bigint)', '[0]', run_at => now() + interval '1 day')).id
                 from generate_series(1, $1)) j`,
      [ONE_OFFS],
    );
    const due = async (ids: string[]): Promise<void> => {
      await db().admin.query('update data.jobs set extra_run_at = now() where id = any ($1::bigint[])', [ids]);
    };

    // Twelve rounds: a slice of one-offs made due, junk logged, a new partition opened, the older
    // ones made to look a few minutes old (so that they settle), and a retention pass acting three
    // days ahead (the junk is past its day; everything else is kept).
    const actions = new Set<string>();
    const slice = Math.ceil(ONE_OFFS / 12);
    for (let round = 0; round < 12; round++) {
      await due(oneOffs.slice(round * slice, (round + 1) * slice).map((row) => row.id));
      await db().admin.query(
        `insert into data.job_runs (job_id, owner, function_owner, scheduled_for, started_at, finished_at, status)
         select j.id, j.owner, j.function_owner, now() - make_interval(days => 2, secs => g), now() - interval '2 days',
                now() - interval '2 days', 'succeeded'
           from data.jobs j, generate_series(1, 200) g where j.id = $1::bigint`,
        [junk.id],
      );
      await db().admin.query('select data.create_run_partition()');
      await db().admin.query('select data.open_run_partition(now())');
      await db().admin.query(
        `update data.run_partitions set opened_at = opened_at - interval '10 minutes'
          where first_id < (select max(first_id) from data.run_partitions where opened_at is not null)`,
      );
      const { rows } = await db().admin.query<{ action: string }>(`select action from code.maintain_run_history(now() + interval '3 days')`);
      for (const row of rows) actions.add(row.action);
    }
    // Retention really worked while the executors ran.
    expect([...actions].filter((action) => ['truncated', 'compacted', 'dropped'].includes(action)).length).toBeGreaterThan(0);

    await waitFor(db(), `select count(*) = $1 as done from once.touched`, [ONE_OFFS], 120_000);
    await Promise.all(executors.splice(0).map((executor) => executor.stop()));

    const { rows } = await db().admin.query(`
      select (select count(*)::int from once.touched) as touched,
             (select count(*)::int from data.job_runs r where r.job_id = any ($1::bigint[]) and r.status = 'succeeded') as succeeded,
             (select count(*)::int from data.job_runs r where r.job_id = any ($1::bigint[]) and r.status <> 'succeeded') as other,
             (select count(*)::int from (select from data.job_runs r where r.job_id <> $2::bigint
                                          group by r.job_id, r.scheduled_for, r.attempt having count(*) > 1) d) as duplicates,
             (select count(*)::int from data.job_runs where status = 'running') as running,
             (select count(*)::int from once.ticks) as ticks,
             (select count(*)::int from data.job_runs r where r.job_id = any ($3::bigint[]) and r.status = 'succeeded') as tick_runs,
             (select count(*)::int from data.job_runs r where r.job_id = any ($3::bigint[]) and r.status in ('failed', 'lost', 'running')) as tick_bad,
             (select count(distinct r.id >> 32)::int from data.job_runs r where r.job_id = any ($1::bigint[])) as partitions_used`,
      [oneOffs.map((row) => row.id), junk.id, tickers],
    );
    expect(rows[0]).toMatchObject({ touched: ONE_OFFS, succeeded: ONE_OFFS, other: 0, duplicates: 0, running: 0, tick_bad: 0 });
    const row = rows[0] as { ticks: number; tick_runs: number; partitions_used: number };
    expect(row.ticks).toBe(row.tick_runs);
    expect(row.ticks).toBeGreaterThan(0);
    // The runs really were spread over partitions that changed under them.
    expect(row.partitions_used).toBeGreaterThanOrEqual(3);
  }, 240_000);

  test('the executor keeps a partition ready ahead, and opens it when the current one is older than the period', async () => {
    const executor = await startExecutor(db(), { historySeconds: 1, executorId: 'keeper' });
    executors.push(executor);
    try {
      await waitFor(db(), `select count(*) = 1 as done from data.run_partitions where opened_at is null`);
      const { rows } = await db().admin.query<{ first: string }>(
        `update data.run_partitions set opened_at = now() - interval '8 days'
          where first_id = (select max(first_id) from data.run_partitions where opened_at is not null)
         returning first_id::text as first`,
      );
      const old = BigInt((rows[0] as { first: string }).first);
      // Opened, and the next one made ready again.
      await waitFor(db(), `select max(first_id) filter (where opened_at is not null) > $1::bigint
                                  and count(*) filter (where opened_at is null) = 1 as done
                             from data.run_partitions`, [old.toString()]);
      // New runs go to the new partition.
      const job = await scheduleJob(alice, 'once.tick(bigint)', [0], { runIn: '0 seconds' });
      await waitFor(db(), `select count(*) = 1 as done from data.job_runs where job_id = $1::bigint and status = 'succeeded'`, [job.id]);
      const { rows: run } = await db().admin.query<{ id: string }>('select id::text from data.job_runs where job_id = $1::bigint', [job.id]);
      expect(BigInt((run[0] as { id: string }).id) >> 32n).toBeGreaterThan(old >> 32n);
    } finally {
      await executor.stop();
    }
  }, 60_000);

  test('retention empties an old partition while a run is running: a run locks its own partition only', async () => {
    const junk = await scheduleJob(alice, 'once.tick(bigint)', [0], { options: { keep_days: 1, keep_last_runs: 0 } });
    await db().admin.query('update data.jobs set enabled = false, next_run_at = null where id = $1::bigint', [junk.id]);
    await db().admin.query(
      `insert into data.job_runs (job_id, owner, function_owner, scheduled_for, started_at, finished_at, status)
       select j.id, j.owner, j.function_owner, now() - make_interval(days => 2, secs => g), now() - interval '2 days',
              now() - interval '2 days', 'succeeded'
         from data.jobs j, generate_series(1, 100) g where j.id = $1::bigint`,
      [junk.id],
    );
    const { rows: [old] } = await db().admin.query<{ name: string }>(
      `select p.name from data.run_partitions p where p.first_id = (select max(first_id) from data.run_partitions where opened_at is not null)`,
    );
    await db().admin.query('select data.create_run_partition()');
    await db().admin.query(`select data.open_run_partition(now() - interval '10 minutes')`);

    // One connection, which has run ten runs first: PL/pgSQL would by now use cached generic plans
    // for a statement planned without the run's id, and such a plan locks every partition.
    const executor = await startExecutor(db(), { executorId: 'napper', historySeconds: 3600, concurrency: 1 });
    executors.push(executor);
    const warmUp: string[] = [];
    for (let i = 0; i < 10; i++) warmUp.push((await scheduleJob(alice, 'once.tick(bigint)', [i], { runIn: '0 seconds' })).id);
    await waitFor(db(), `select count(*) = 10 as done from data.job_runs where job_id = any ($1::bigint[]) and status = 'succeeded'`, [warmUp], 30_000);
    const nap = await scheduleJob(alice, 'once.nap(double precision)', [30], { runIn: '0 seconds' });
    // The run is in its call: its backend sleeps.
    await waitFor(db(), `select count(*) = 1 as done from pg_stat_activity where wait_event = 'PgSleep' and datname = current_database()`, [], 30_000);

    const actions: Array<{ action: string; partition_name: string }> = [];
    for (let pass = 0; pass < 20; pass++) {
      const { rows } = await db().admin.query<{ action: string; partition_name: string }>(
        `select action, partition_name from code.maintain_run_history(now() + interval '3 days')`,
      );
      actions.push(...rows);
      if (!rows.some((row) => ['truncated', 'compacted', 'dropped', 'busy'].includes(row.action))) break;
    }
    // Emptied (truncated, or compacted if it held rows to keep): either takes its lock.
    expect(actions.filter((a) => a.partition_name === old?.name).map((a) => a.action)).toEqual([expect.stringMatching(/^(truncated|compacted)$/)]);
    expect(actions.filter((a) => a.action === 'busy')).toEqual([]);
    // Still running, untouched, in its own partition.
    expect((await db().admin.query('select status from data.job_runs where job_id = $1::bigint', [nap.id])).rows).toEqual([{ status: 'running' }]);
    await db().admin.query(`select pg_cancel_backend(pid) from pg_stat_activity where wait_event = 'PgSleep' and datname = current_database()`);
    await executor.stop();
  }, 90_000);
});
