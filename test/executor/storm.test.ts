import { afterAll, beforeAll, describe, expect, test } from 'vitest';
import type pg from 'pg';
import type { Executor } from '../../server/executor/executor.ts';
import { useTestDatabase } from '../support/database.ts';
import { finishedRuns, runNow, startExecutor } from '../support/executor.ts';
import { createOwner } from '../support/jobs.ts';

/** THREATS 19: jobs that schedule jobs do so as their owner would, and cannot grow without bound. */
describe('a job that schedules jobs', () => {
  const db = useTestDatabase();
  let alice: pg.Client;
  let executor: Executor;

  beforeAll(async () => {
    await createOwner(db(), 'storm', 'select 1');
    // The function's owner may use the api (as any client); the job it schedules belongs to the caller.
    await db().admin.query(`grant "${db().role('client')}" to "${db().role('storm')}"`);
    await db().admin.query(`begin; set local role "${db().role('storm')}";
      create function storm.spawn() returns void security definer set search_path = pg_catalog, pg_temp
        language sql as $$ select api.schedule_job('storm.spawn()', run_at => now() + interval '1 day') $$;
      commit`);
    await db().addUser('alice', { scheduler: true, memberOf: ['storm'] });
    alice = await db().login('alice');
    executor = await startExecutor(db(), { concurrency: 1 });
  });

  afterAll(async () => {
    await executor?.stop();
  });

  test("schedules as the job's owner: never as the function's owner or the executor", async () => {
    const parent = await runNow(alice, 'storm.spawn()');
    expect((await finishedRuns(db(), parent))[0]?.status).toBe('succeeded');
    const { rows } = await db().admin.query(`select owner from data.jobs where id <> $1`, [parent]);
    expect(rows).toEqual([{ owner: db().role('alice') }]);
  });

  test('an owner holds at most 10,000 jobs: past that, scheduling fails (HC215) and nothing is added', async () => {
    const { role } = db();
    await db().admin.query(
      `insert into data.jobs (owner, function_signature, function_owner, run_at, next_run_at, options)
       select $1, 'storm.spawn()', $2, now() + interval '1 day', now() + interval '1 day', code.job_options('{}')
         from generate_series(1, 10000 - (select count(*)::int from data.jobs where owner = $1))`,
      [role('alice'), role('storm')],
    );
    const spawner = (await db().admin.query<{ id: string }>('select min(id)::text as id from data.jobs')).rows[0]?.id as string;
    await db().admin.query('update data.jobs set extra_run_at = now() where id = $1', [spawner]);
    const runs = await finishedRuns(db(), spawner, 2);
    expect(runs.at(-1)).toMatchObject({ status: 'failed', error_sqlstate: 'HC215' });
    expect((await db().admin.query('select count(*)::int as n from data.jobs where owner = $1', [role('alice')])).rows[0].n).toBe(10000);
    expect((await alice.query(`select count(*)::int as n from api.jobs`)).rows[0].n).toBe(10000);
  });
});
