import { beforeAll, describe, expect, test } from 'vitest';
import pg from 'pg';
import { useTestDatabase } from '../support/database.ts';
import { countRows, createNoteOwner, failureOf, scheduleJob } from '../support/jobs.ts';

/**
 * Retention of run history (sql/routines/code/retention.sql) on partitions made for the test:
 * code.maintain_run_history(at) is asked to act at chosen times. The partitions span the end of
 * daylight saving time in New York (2026-11-01 06:00 UTC: that local day has 25 hours), and a
 * job there keeps its runs two calendar days of its zone.
 */

type Action = { action: string; partition_name: string; rows_before: string | null; rows_kept: string | null };

describe('run history retention by partition', () => {
  const db = useTestDatabase();
  let alice: pg.Client;
  let bob: pg.Client;
  const jobs: Record<'ny' | 'utc' | 'last3' | 'junk', string> = { ny: '', utc: '', last3: '', junk: '' };
  const partitions: Record<'p1' | 'p2' | 'p3', { first: string; name: string }> = {
    p1: { first: '', name: '' },
    p2: { first: '', name: '' },
    p3: { first: '', name: '' },
  };
  /** Run ids by label, as inserted. */
  const runs: Record<string, string> = {};

  /** A run recorded as the executor would record it (as the admin), in whichever partition is open. */
  const insertRun = async (label: string, job: string, status: string, finishedAt: string | null): Promise<void> => {
    const { rows } = await db().admin.query<{ id: string }>(
      `insert into data.job_runs (job_id, owner, function_owner, scheduled_for, started_at, finished_at, status, error_sqlstate,
                                  error_message, trigger)
       select j.id, j.owner, j.function_owner, coalesce($3::timestamptz, now()) - make_interval(secs => $4::integer),
              coalesce($3::timestamptz, now()) - interval '1 second', $3::timestamptz, $2::text,
              case when $2 = 'failed' then 'P0001' end, case when $2 = 'failed' then 'it failed' end, 'schedule'
         from data.jobs j where j.id = $1::bigint
       returning id`,
      [job, status, finishedAt, Object.keys(runs).length + 1], // each its own occurrence
    );
    runs[label] = (rows[0] as { id: string }).id;
  };

  const openPartition = async (at: string): Promise<{ first: string; name: string }> => {
    await db().admin.query('select data.create_run_partition()');
    await db().admin.query('select data.open_run_partition($1::timestamptz)', [at]);
    const { rows } = await db().admin.query<{ first: string; name: string }>(
      `select p.first_id::text as first, p.name from data.run_partitions p where p.opened_at = $1::timestamptz`,
      [at],
    );
    expect(rows).toHaveLength(1);
    return rows[0] as { first: string; name: string };
  };

  /**
   * Passes at `at`, as the executor makes them: a pass that empties or drops a partition returns
   * at once (its locks go with its commit), and the next pass goes on.
   */
  const maintain = async (at: string): Promise<Action[]> => {
    const all: Action[] = [];
    for (let pass = 0; pass < 20; pass++) {
      const { rows } = await db().admin.query<Action>('select * from code.maintain_run_history($1::timestamptz)', [at]);
      all.push(...rows);
      // One emptying action per pass, committed before the next (a drop locks the whole table).
      const emptying = rows.filter((row) => ['truncated', 'compacted', 'dropped'].includes(row.action));
      expect(emptying.length).toBeLessThanOrEqual(1);
      if (emptying.length === 0) return all;
    }
    throw new Error('retention passes did not come to rest');
  };

  const remaining = async (): Promise<Set<string>> =>
    new Set((await db().admin.query<{ id: string }>('select id::text from data.job_runs')).rows.map((row) => row.id));

  beforeAll(async () => {
    await createNoteOwner(db(), 'alice_fns');
    await createNoteOwner(db(), 'bob_fns');
    await db().addUser('alice', { scheduler: true, memberOf: ['alice_fns'] });
    await db().addUser('bob', { scheduler: true, memberOf: ['bob_fns'] });
    alice = await db().login('alice');
    bob = await db().login('bob');
    await db().admin.query('select code.set_history_settings(keep_days => 5, keep_failed_days => 10, keep_last_runs => 0)');

    jobs.ny = (await scheduleJob(alice, 'alice_fns.note(text)', ['ny'], { timeZone: 'America/New_York', options: { keep_days: 2 } })).id;
    jobs.utc = (await scheduleJob(alice, 'alice_fns.note(text)', ['utc'])).id;
    jobs.last3 = (await scheduleJob(alice, 'alice_fns.note(text)', ['last3'], { options: { keep_days: 1, keep_last_runs: 3 } })).id;
    jobs.junk = (await scheduleJob(bob, 'bob_fns.note(text)', ['junk'])).id;

    // P1: from 2026-10-29 to 2026-11-01 07:00 UTC, across the end of DST in New York (06:00 UTC).
    partitions.p1 = await openPartition('2026-10-29T00:00:00Z');
    // Two calendar days before 2026-11-03 00:30 EST is 2026-11-01 00:30 EDT, 04:30 UTC: 49 hours.
    await insertRun('ny-old', jobs.ny, 'succeeded', '2026-11-01T04:00:00Z');
    await insertRun('ny-edge', jobs.ny, 'succeeded', '2026-11-01T04:59:00Z'); // kept: 48 hours would drop it
    await insertRun('ny-after', jobs.ny, 'succeeded', '2026-11-01T06:30:00Z');
    await insertRun('utc-ok', jobs.utc, 'succeeded', '2026-10-29T01:00:00Z');
    await insertRun('utc-failed', jobs.utc, 'failed', '2026-10-29T01:00:00Z'); // failures: 10 days
    for (let i = 1; i <= 5; i++) await insertRun(`last3-${i}`, jobs.last3, 'succeeded', `2026-10-29T0${i}:00:00Z`);
    for (let i = 1; i <= 10; i++) await insertRun(`junk-${i}`, jobs.junk, 'succeeded', '2026-10-29T01:00:00Z');
    await insertRun('running', jobs.utc, 'running', null);
    // P2: only runs past the policy.
    partitions.p2 = await openPartition('2026-11-01T07:00:00Z');
    await insertRun('p2-ny', jobs.ny, 'succeeded', '2026-11-01T03:00:00Z');
    await insertRun('p2-junk', jobs.junk, 'succeeded', '2026-10-28T03:00:00Z');
    // P3: the current partition.
    partitions.p3 = await openPartition('2026-11-02T00:00:00Z');
    await insertRun('p3-ny', jobs.ny, 'succeeded', '2026-10-01T00:00:00Z'); // past the policy, but never in the current partition
  });

  test('a partition with a running run is not settled, and neither are the newer ones: nothing of them is removed', async () => {
    const before = await remaining();
    const actions = await maintain('2026-11-03T05:30:00Z');
    const names = actions.map((a) => `${a.action} ${a.partition_name}`);
    expect(names).toContain('created ' + `job_runs_${(BigInt(partitions.p3.first) >> 32n) + 1n}`);
    expect(names.filter((name) => name.includes(partitions.p1.name) || name.includes(partitions.p2.name))).toEqual([]);
    expect(await remaining()).toEqual(before);
    const settled = await db().admin.query<{ name: string }>('select name from data.run_partitions where settled_at is not null');
    expect(settled.rows.map((row) => row.name)).not.toContain(partitions.p1.name);
  });

  test('once it ends: runs past their policy go, by whole partitions; the rest stay with their ids, in calendar days of the job\'s zone', async () => {
    await db().admin.query(`update data.job_runs set status = 'succeeded', finished_at = '2026-10-29T01:00:00Z' where id = $1::bigint`, [runs.running]);
    const actions = await maintain('2026-11-03T05:30:00Z');
    const byPartition = Object.fromEntries(actions.filter((a) => a.action !== 'settled').map((a) => [a.partition_name, a]));
    // P1: 21 rows, 6 kept: compacted (its other rows truncated with it, the kept put back).
    expect(byPartition[partitions.p1.name]).toMatchObject({ action: 'compacted', rows_before: '21', rows_kept: '6' });
    // P2: nothing to keep: truncated (and dropped by a later pass, once empty).
    expect(byPartition[partitions.p2.name]).toMatchObject({ action: 'truncated', rows_before: '2', rows_kept: '0' });
    expect(byPartition[partitions.p3.name]).toBeUndefined(); // current: never looked at

    const left = await remaining();
    const kept = ['ny-edge', 'ny-after', 'utc-failed', 'last3-3', 'last3-4', 'last3-5', 'p3-ny'];
    // The run that was running in P1 ended 2026-10-29 (5 days): it goes with the rest.
    const gone = ['ny-old', 'utc-ok', 'last3-1', 'last3-2', 'running', 'p2-ny', 'p2-junk', ...Array.from({ length: 10 }, (_, i) => `junk-${i + 1}`)];
    expect(kept.filter((label) => !left.has(runs[label] as string))).toEqual([]);
    expect(gone.filter((label) => left.has(runs[label] as string))).toEqual([]);
    // 'ny-edge' is 48 h 31 min old: kept because two days in New York were 49 hours then.
    expect(left.has(runs['ny-edge'] as string)).toBe(true);

    // The kept rows are whole (same ids, same fields) and seen as before, by their owners only.
    const seen = await alice.query<{ id: string; status: string; error_message: string | null }>(
      'select r.id::text, r.status::text, r.error_message from api.job_runs r where r.id = any ($1::bigint[]) order by r.id',
      [kept.map((label) => runs[label])],
    );
    expect(seen.rows.map((row) => row.id)).toEqual(kept.map((label) => runs[label]).sort((a, b) => Number(a) - Number(b)));
    expect(seen.rows.find((row) => row.id === runs['utc-failed'])).toMatchObject({ status: 'failed', error_message: 'it failed' });
    expect((await bob.query('select id from api.job_runs where job_id <> $1::bigint', [jobs.junk])).rows).toEqual([]);
  });

  test('a later pass drops the emptied partition, and does not look at a pruned one again within a day', async () => {
    const actions = await maintain('2026-11-03T06:00:00Z');
    expect(actions.filter((a) => a.partition_name === partitions.p1.name)).toEqual([]);
    expect(actions.filter((a) => a.partition_name === partitions.p2.name)).toEqual([]);
    const later = await maintain('2026-11-04T06:00:00Z');
    expect(later.find((a) => a.partition_name === partitions.p2.name)).toMatchObject({ action: 'dropped' });
    expect(await countRows(db(), `select from pg_class where relname = $1 and relnamespace = 'data'::regnamespace`, [partitions.p2.name])).toBe(0);
    expect(await countRows(db(), 'select from data.run_partitions where name = $1', [partitions.p2.name])).toBe(0);
  });

  test('one pass at a time: while another holds the settings row, a pass returns at once and does nothing', async () => {
    const second = new pg.Client({ connectionString: db().adminUrl });
    await second.connect();
    await db().admin.query('begin');
    try {
      await db().admin.query('select from data.history_settings for update');
      expect((await second.query('select * from code.maintain_run_history(now())')).rows).toEqual([]);
    } finally {
      await db().admin.query('rollback');
      await second.end();
    }
  });

  test('bad retention options and settings are refused with a clear error and a code, and leave nothing behind', async () => {
    const jobsBefore = await countRows(db(), 'select from data.jobs');
    for (const [options, message] of [
      [{ keep_days: 0 }, 'option keep_days must be a whole number from 1 to 36500'],
      [{ keep_days: 'seven' }, 'option keep_days must be a whole number from 1 to 36500'],
      [{ keep_failed_days: 1.5 }, 'option keep_failed_days must be a whole number from 1 to 36500'],
      [{ keep_last_runs: -1 }, 'option keep_last_runs must be a whole number from 0 to 10000'],
      [{ keep_last_runs: 10001 }, 'option keep_last_runs must be a whole number from 0 to 10000'],
    ] as const) {
      const failure = await failureOf(alice, `select * from api.schedule_job('alice_fns.note(text)', '["x"]', options => $1::jsonb)`, [
        JSON.stringify(options),
      ]);
      expect(failure).toMatchObject({ code: 'HC210', message });
    }
    expect(await countRows(db(), 'select from data.jobs')).toBe(jobsBefore);
    const updated = await failureOf(alice, `select * from api.update_job($1::bigint, options => '{"keep_days": -3}')`, [jobs.utc]);
    expect(updated).toMatchObject({ code: 'HC210' });
    expect((await db().admin.query('select options from data.jobs where id = $1::bigint', [jobs.utc])).rows[0]).not.toHaveProperty('options.keep_days', -3);

    const settingsBefore = (await db().admin.query('select * from data.history_settings')).rows;
    for (const [args, message] of [
      ['keep_days => 0', 'keep_days must be a whole number from 1 to 36500'],
      ['keep_failed_days => 40000', 'keep_failed_days must be a whole number from 1 to 36500'],
      ['keep_last_runs => -1', 'keep_last_runs must be a whole number from 0 to 10000'],
      ['partition_seconds => 59', 'partition_seconds must be a whole number from 60 to 31622400 (a year)'],
    ] as const) {
      expect(await failureOf(db().admin as pg.Client, `select code.set_history_settings(${args})`)).toMatchObject({ code: 'HC401', message });
    }
    expect((await db().admin.query('select * from data.history_settings')).rows).toEqual(settingsBefore);
  });

  test('users cannot reach the upkeep: neither the partition functions nor the settings', async () => {
    for (const sql of [
      'select data.create_run_partition()',
      `select data.open_run_partition(now())`,
      `select data.empty_run_partition(0, '{}')`,
      'select data.drop_run_partition(0)',
      'select * from code.maintain_run_history(now())',
      'select code.set_history_settings(keep_days => 1)',
      'select * from data.history_settings',
      'select * from data.run_partitions',
      'truncate data.job_runs',
    ]) {
      const failure = await failureOf(bob, sql);
      expect([sql, failure.code]).toEqual([sql, '42501']);
    }
    // Bob's own jobs' runs are all still there: he could not make anything go early.
    expect((await db().admin.query('select count(*)::int as n from data.history_settings where keep_days = 5')).rows[0]).toEqual({ n: 1 });
  });

  test('a job written by hand (a restore, say) shows its runs to its owner: its roles are recorded by a trigger', async () => {
    await createNoteOwner(db(), 'dora_fns');
    await db().addUser('dora', { memberOf: ['dora_fns'] });
    const dora = await db().login('dora');
    const { rows: [job] } = await db().admin.query<{ id: string }>(
      `insert into data.jobs (owner, function_signature, function_owner, schedule, schedule_anchor, next_run_at)
       values ($1, 'dora_fns.note(text)', $2, '0 0 1 1 *', now(), now() + interval '1 year') returning id::text`,
      [db().role('dora'), db().role('dora_fns')],
    );
    await db().admin.query(
      `insert into data.job_runs (job_id, owner, function_owner, scheduled_for, started_at, finished_at, status)
       values ($1::bigint, $2, $3, now(), now(), now(), 'succeeded')`,
      [job?.id, db().role('dora'), db().role('dora_fns')],
    );
    expect((await dora.query('select job_id::text from api.job_runs')).rows).toEqual([{ job_id: job?.id }]);
    expect((await dora.query('select id::text from api.jobs')).rows).toEqual([{ id: job?.id }]);
    expect((await bob.query('select from api.job_runs where job_id = $1::bigint', [job?.id])).rows).toEqual([]);
  });
});
