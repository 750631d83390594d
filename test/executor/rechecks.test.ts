import { afterAll, beforeAll, beforeEach, describe, expect, test } from 'vitest';
import type pg from 'pg';
import type { Executor } from '../../server/executor/executor.ts';
import { useTestDatabase } from '../support/database.ts';
import { finishedRuns, startExecutor } from '../support/executor.ts';
import { scheduleJob } from '../support/jobs.ts';

/**
 * Every rule is checked again when the job runs. Each test schedules a job while everything is
 * eligible, breaks one rule, then lets the executor run it: the run is `rejected` with the
 * generic reason and the function is not called (its side-effect table stays empty).
 */
describe('eligibility is re-checked at execution', () => {
  const db = useTestDatabase();
  let alice: pg.Client;
  let executor: Executor;
  let n = 0;
  let fn = '';

  const sql = (statements: string): Promise<unknown> => db().admin.query(statements);
  const calls = async (): Promise<number> =>
    (await db().admin.query<{ n: number }>('select count(*)::int as n from owned.calls')).rows[0]?.n ?? -1;

  beforeAll(async () => {
    const { role } = db();
    await sql(`begin;
      set local role "${role('mgr')}";
      call mgr.re_create_role('owned', null, true);
      call mgr.re_create_role('stranger', null, true);
      set local role "${role('owned')}";
      create schema owned;
      create table owned.calls (fn text, by_role text default current_user);
      grant usage on schema owned to public;
      grant insert on owned.calls to public;
      commit`);
    await db().addUser('alice', { scheduler: true, memberOf: ['owned'] });
    alice = await db().login('alice');
  });

  beforeEach(async () => {
    // A fresh function per test: owned.f<n>(int), security definer, pinned search_path.
    n += 1;
    fn = `owned.f${n}`;
    await sql(`set role "${db().role('owned')}";
      create function ${fn}(x int) returns void security definer set search_path = pg_catalog, pg_temp
        language sql as $$ insert into owned.calls (fn) values ('${fn}') $$;
      reset role`);
  });

  afterAll(async () => {
    await executor?.stop();
  });

  /** Schedules fn as alice (one-off, far away), breaks a rule, then runs it now and returns its run. */
  async function scheduleBreakRun(breakRule: string, signature = `${fn}(integer)`): Promise<{ status: string; reject_reason: string | null }> {
    const { id: jobId } = await scheduleJob(alice, signature, [7]);
    await sql(breakRule);
    await db().admin.query('update data.jobs set extra_run_at = now() where id = $1', [jobId]);
    executor ??= await startExecutor(db(), { concurrency: 1 });
    const [run] = await finishedRuns(db(), jobId);
    return run as { status: string; reject_reason: string | null };
  }

  const rejected = (reason: string) => ({ status: 'rejected', reject_reason: reason });

  test('control: nothing broken, the job runs', async () => {
    expect(await scheduleBreakRun('select 1')).toMatchObject({ status: 'succeeded', reject_reason: null });
    expect(await calls()).toBe(1);
    await sql('truncate owned.calls');
  });

  test('the function was dropped', async () => {
    expect(await scheduleBreakRun(`drop function ${fn}(int)`)).toMatchObject(rejected('function_not_eligible'));
    expect(await calls()).toBe(0);
  });

  test('CREATE OR REPLACE made it SECURITY INVOKER', async () => {
    const replace = `set role "${db().role('owned')}";
      create or replace function ${fn}(x int) returns void security invoker set search_path = pg_catalog, pg_temp
        language sql as $$ insert into owned.calls (fn) values ('${fn} as invoker') $$;
      reset role`;
    expect(await scheduleBreakRun(replace)).toMatchObject(rejected('function_not_eligible'));
    expect(await calls()).toBe(0);
  });

  test('its owner became a role the job owner is not a member of', async () => {
    expect(await scheduleBreakRun(`alter function ${fn}(int) owner to "${db().role('stranger')}"`)).toMatchObject(
      rejected('function_not_eligible'),
    );
    expect(await calls()).toBe(0);
  });

  test('its owner became a superuser', async () => {
    expect(await scheduleBreakRun(`alter function ${fn}(int) owner to current_user`)).toMatchObject(rejected('function_not_eligible'));
    expect(await calls()).toBe(0);
  });

  test('its search_path was unpinned', async () => {
    expect(await scheduleBreakRun(`alter function ${fn}(int) reset search_path`)).toMatchObject(rejected('function_not_eligible'));
    expect(await calls()).toBe(0);
  });

  test('the job owner lost membership in the function owner', async () => {
    const revoke = `revoke "${db().role('owned')}" from "${db().role('alice')}"`;
    const restore = `grant "${db().role('owned')}" to "${db().role('alice')}"`;
    try {
      expect(await scheduleBreakRun(revoke)).toMatchObject(rejected('function_not_eligible'));
      expect(await calls()).toBe(0);
    } finally {
      await sql(restore);
    }
  });

  test('the job owner lost $job_scheduler', async () => {
    const revoke = `revoke "${db().role('job_scheduler')}" from "${db().role('alice')}"`;
    try {
      expect(await scheduleBreakRun(revoke)).toMatchObject(rejected('owner_not_eligible'));
      expect(await calls()).toBe(0);
    } finally {
      await sql(`grant "${db().role('job_scheduler')}" to "${db().role('alice')}"`);
    }
  });

  test('the function owner role was dropped and created again under the same name', async () => {
    // Roles are resolved by name (DESIGN.md): the new role is checked like any other. Here it
    // owns nothing the job names (the function went with the old role): rejected. Had it been
    // given an eligible function of that signature and alice's membership, the job would run:
    // every rule holds again, now.
    const { role } = db();
    await sql(`begin;
      set local role "${role('mgr')}";
      call mgr.re_create_role('doomed', null, true);
      set local role "${role('doomed')}";
      create schema doomed;
      create table doomed.calls (n int);
      create function doomed.f(x int) returns void security definer set search_path = pg_catalog, pg_temp
        language sql as $$ insert into doomed.calls values (x) $$;
      reset role;
      grant "${role('doomed')}" to "${role('alice')}";
      commit`);
    const recreate = `set role "${role('mgr')}"; call mgr.re_create_role('doomed', null, true); reset role;
      grant "${role('doomed')}" to "${role('alice')}"`;
    expect(await scheduleBreakRun(recreate, 'doomed.f(integer)')).toMatchObject(rejected('function_not_eligible'));
    expect((await db().admin.query(`select to_regnamespace('doomed') as s`)).rows[0].s).toBeNull();
  });
});
