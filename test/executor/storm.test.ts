import { afterAll, beforeAll, describe, expect, test } from 'vitest';
import type pg from 'pg';
import type { Executor } from '../../server/executor/executor.ts';
import { useTestDatabase } from '../support/database.ts';
import { afterNextClaim, finishedRuns, runNow, startExecutor, waitFor } from '../support/executor.ts';
import { countRows, createOwner, scheduleJob, type RunRow } from '../support/jobs.ts';

/** Jobs that schedule jobs do so as their owner would, and cannot grow without bound. */
describe('a job that schedules jobs', () => {
  const db = useTestDatabase();
  let alice: pg.Client;
  let bob: pg.Client;
  let executor: Executor;

  beforeAll(async () => {
    await createOwner(db(), 'storm', 'select 1');
    // The function's owner may use the api (as any client); the job it schedules belongs to the caller.
    await db().admin.query(`grant "${db().role('client')}" to "${db().role('storm')}"`);
    await db().admin.query(`begin; set local role "${db().role('storm')}";
      create function storm.spawn() returns void security definer set search_path = pg_catalog, pg_temp
        language sql as $$ select api.schedule_job('storm.spawn()', run_at => now() + interval '1 day') $$;
      create function storm.manage(action text, job bigint) returns void security definer set search_path = pg_catalog, pg_temp
        language plpgsql as $$
        begin
          case action
            when 'pause' then perform api.pause_job(job);
            when 'update' then perform api.update_job(job, name => 'renamed by a job');
            when 'run now' then perform api.run_job_now(job);
            when 'unschedule' then perform api.unschedule_job(job);
          end case;
        end $$;
      commit`);
    await createOwner(db(), 'bobs', `
      create function bobs.noop() returns void security definer set search_path = pg_catalog, pg_temp language sql as $$ select $$`);
    await db().addUser('alice', { scheduler: true, memberOf: ['storm'] });
    await db().addUser('bob', { scheduler: true, memberOf: ['bobs'] });
    alice = await db().login('alice');
    bob = await db().login('bob');
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

  test("manages jobs as the job's owner: its own jobs change, another owner's are not found (HC211) and stay as they were", async () => {
    const scheduled = async (client: pg.Client, signature: string): Promise<string> => (await scheduleJob(client, signature)).id;
    const jobState = async (id: string): Promise<unknown> =>
      (await db().admin.query('select enabled, name, extra_run_at, updated_at from data.jobs where id = $1', [id])).rows[0];
    const own = { pause: await scheduled(alice, 'storm.spawn()'), update: await scheduled(alice, 'storm.spawn()'), unschedule: await scheduled(alice, 'storm.spawn()') };
    const bobsJob = await scheduled(bob, 'bobs.noop()');
    const bobsBefore = await jobState(bobsJob);

    for (const [action, target] of Object.entries(own)) {
      const run = (await finishedRuns(db(), await runNow(alice, 'storm.manage(text,bigint)', [action, Number(target)])))[0];
      expect([action, run?.status]).toEqual([action, 'succeeded']);
    }
    expect(await jobState(own.pause)).toMatchObject({ enabled: false });
    expect(await jobState(own.update)).toMatchObject({ name: 'renamed by a job' });
    expect(await jobState(own.unschedule)).toBeUndefined();

    for (const action of ['pause', 'update', 'run now', 'unschedule']) {
      const run = (await finishedRuns(db(), await runNow(alice, 'storm.manage(text,bigint)', [action, Number(bobsJob)])))[0];
      expect([action, run?.status, run?.error_sqlstate]).toEqual([action, 'failed', 'HC211']);
      expect(run?.error_message).not.toContain('bobs');
    }
    expect(await jobState(bobsJob)).toEqual(bobsBefore);
    expect((await db().admin.query('select count(*)::int as n from data.job_runs where job_id = $1', [bobsJob])).rows[0].n).toBe(0);
  });

  test('a job that asks to run itself again runs one occurrence at a time, multiplies nothing, and stops when paused', async () => {
    const jobsBefore = await countRows(db(), 'select from data.jobs');
    const { id } = await scheduleJob(alice, 'storm.manage(text,bigint)', ['run now', 0]);
    await alice.query(`select api.update_job($1, arguments => $2)`, [id, JSON.stringify(['run now', Number(id)])]);
    await alice.query('select api.run_job_now($1)', [id]);
    await finishedRuns(db(), id, 20);
    await alice.query('select api.pause_job($1)', [id]);
    await waitFor(db(), `select count(*) = 0 as done from data.job_runs where job_id = $1 and status = 'running'`, [id]);
    const settled = (await db().admin.query('select count(*)::int as n from data.job_runs where job_id = $1', [id])).rows[0].n as number;
    const sentinel = await afterNextClaim(db(), bob, 'bobs.noop()');
    const runs = (await db().admin.query<RunRow>('select * from data.job_runs where job_id = $1 order by id', [id])).rows;
    expect(runs).toHaveLength(settled); // nothing ran after it was paused
    expect(runs.slice(0, -1).filter((run) => run.status !== 'succeeded')).toEqual([]);
    // The last one may have asked for another run of a job paused meanwhile (refused: HC216), or
    // been cancelled by the pause: while running (57014, or HC216 if the refusal came first: a
    // run asked to stop is cancelled whatever ends it), or claimed and not yet started.
    expect([['succeeded', null], ['failed', 'HC216'], ['cancelled', '57014'], ['cancelled', 'HC216'], ['cancelled', null]]).toContainEqual([
      runs.at(-1)?.status,
      runs.at(-1)?.error_sqlstate,
    ]);
    expect((await db().admin.query('select enabled, extra_run_at from data.jobs where id = $1', [id])).rows).toEqual([{ enabled: false, extra_run_at: null }]);
    for (const [previous, next] of runs.slice(1).map((run, i) => [runs[i] as RunRow, run] as const)) {
      expect(next.started_at!.getTime()).toBeGreaterThanOrEqual(previous.finished_at!.getTime()); // one at a time
    }
    expect(await countRows(db(), 'select from data.jobs where id <> $1', [sentinel])).toBe(jobsBefore + 1); // itself, paused
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
