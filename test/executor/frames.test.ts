import { afterAll, beforeAll, describe, expect, test } from 'vitest';
import type pg from 'pg';
import type { Executor } from '../../server/executor/executor.ts';
import { useTestDatabase } from '../support/database.ts';
import { finishedRuns, runNow, startExecutor } from '../support/executor.ts';
import { createOwner, scheduleJob } from '../support/jobs.ts';

/**
 * $executor is a member of every scheduler (it becomes each job's owner with SET ROLE), and
 * PostgreSQL checks SET ROLE against the session user. So job code that ran outside a SECURITY
 * DEFINER frame could RESET ROLE and SET ROLE to any other user.
 * alice's attempts below each try to become bob and unschedule bob's job; the executor runs
 * every run inside alice's frame (sql/routines/mgr/frames.sql), where PostgreSQL refuses any change of role.
 */
describe("a job's code cannot change roles: it runs in its owner's frame", () => {
  const db = useTestDatabase();
  let alice: pg.Client;
  let bobJob: string;
  let executor: Executor;

  beforeAll(async () => {
    const bob = `'${db().role('bob')}'`;
    await db().addUser('bob', { scheduler: true });
    await createOwner(db(), 'bob_fns', `
      create table bob_fns.calls (arg int);
      create function bob_fns.f(x int) returns void security definer set search_path = pg_catalog, pg_temp
        language sql as $$ insert into bob_fns.calls values (x) $$`);
    await db().admin.query(`grant "${db().role('bob_fns')}" to "${db().role('bob')}"`);
    const bobClient = await db().login('bob');
    bobJob = (await scheduleJob(bobClient, 'bob_fns.f(integer)', [1])).id;
    await bobClient.end();

    // Every attempt: note who it runs as, go back to the session's role, become bob, act as him.
    const attempt = (what: string): string => `
      insert into mal.seen values ('${what}', current_user::text, session_user::text);
      reset role;
      insert into mal.seen values ('${what}: after reset', current_user::text, session_user::text);
      perform set_config('role', ${bob}, false);
      insert into mal.seen values ('${what}: as bob', current_user::text, session_user::text);
      perform api.unschedule_job(${bobJob});`;
    await createOwner(db(), 'mal', `
      create table mal.seen (what text, by_user text, by_session text);
      create table mal.calls (what text);
      grant insert on mal.seen, mal.calls to public;
      grant usage on schema mal to public;
      create function mal.check_escape(v text) returns boolean language plpgsql set search_path = pg_catalog, pg_temp
        as $$ begin ${attempt('domain check')} return true; end $$;
      create domain mal.watched as text check (mal.check_escape(value));
      create function mal.default_escape() returns text language plpgsql set search_path = pg_catalog, pg_temp
        as $$ begin ${attempt('default')} return 'x'; end $$;
      create function mal.as_bob() returns boolean language plpgsql set search_path = pg_catalog, pg_temp set role = ${bob}
        as $$ begin insert into mal.seen values ('set role clause', current_user::text, session_user::text); return true; end $$;
      create domain mal.as_bob_domain as text check (mal.as_bob());
      create function mal.trigger_escape() returns trigger language plpgsql set search_path = pg_catalog, pg_temp
        as $$ begin ${attempt('deferred trigger')} return null; end $$;
      create table mal.entries (x int);
      create constraint trigger entries_escape after insert on mal.entries
        deferrable initially deferred for each row execute function mal.trigger_escape();
      create function mal.cursor_escape() returns int language plpgsql set search_path = pg_catalog, pg_temp
        as $$ begin ${attempt('cursor at commit')} return 1; end $$;
      grant execute on function mal.check_escape(text), mal.default_escape(), mal.as_bob(), mal.trigger_escape(), mal.cursor_escape() to public;
      grant usage on type mal.watched, mal.as_bob_domain to public;

      create function mal.take(w mal.watched) returns void security definer set search_path = pg_catalog, pg_temp
        language sql as $$ insert into mal.calls values ('take') $$;
      create function mal.take_default(w text default mal.default_escape()) returns void security definer
        set search_path = pg_catalog, pg_temp language sql as $$ insert into mal.calls values ('take_default') $$;
      create function mal.take_as_bob(w mal.as_bob_domain) returns void security definer set search_path = pg_catalog, pg_temp
        language sql as $$ insert into mal.calls values ('take_as_bob') $$;
      create function mal.enter() returns void security definer set search_path = pg_catalog, pg_temp
        language sql as $$ insert into mal.entries values (1); insert into mal.calls values ('enter') $$;
      create function mal.hold_cursor() returns void security definer set search_path = pg_catalog, pg_temp
        language plpgsql as $$
        begin
          execute 'declare escape cursor with hold for select mal.cursor_escape()';
          insert into mal.calls values ('hold_cursor');
        end $$;
      create function mal.noop() returns void security definer set search_path = pg_catalog, pg_temp
        language sql as $$ insert into mal.calls values ('noop') $$`);
    await db().addUser('alice', { scheduler: true, memberOf: ['mal'] });
    alice = await db().login('alice');
    executor = await startExecutor(db(), { concurrency: 1 });
  });

  afterAll(async () => {
    await executor?.stop();
  });

  const bobsJobIsThere = async (): Promise<boolean> =>
    (await db().admin.query('select count(*)::int as n from data.jobs where id = $1', [bobJob])).rows[0].n === 1;
  const seen = async (): Promise<Array<{ what: string; by_user: string }>> =>
    (await db().admin.query('select what, by_user from mal.seen')).rows;
  const calls = async (): Promise<string[]> => (await db().admin.query<{ what: string }>('select what from mal.calls')).rows.map((r) => r.what);

  test.each([
    ['a domain CHECK on an argument', 'mal.take(mal.watched)', ['x']],
    ['a parameter default', 'mal.take_default(text)', []],
    ['a deferred constraint trigger', 'mal.enter()', []],
    ['a function with SET role in its definition', 'mal.take_as_bob(mal.as_bob_domain)', ['x']],
  ])('%s: RESET ROLE / SET ROLE refused (42501), the run fails, nothing of it stays', async (_how, signature, args) => {
    await db().admin.query('truncate mal.seen, mal.calls');
    const [run] = await finishedRuns(db(), await runNow(alice, signature, args));
    expect(run).toMatchObject({ status: 'failed', error_sqlstate: '42501' });
    expect(run?.error_message).toMatch(/cannot set parameter "role" within security-definer function/);
    expect(await bobsJobIsThere()).toBe(true);
    expect(await seen()).toEqual([]); // rolled back with the run; and never as bob (below)
    expect(await calls()).toEqual([]);
  });

  test('the attempts ran as alice, never as bob or the executor (seen from a run that keeps what it saw)', async () => {
    // The domain check again, with its failure caught inside the check: the run succeeds and keeps its notes.
    await db().admin.query('truncate mal.seen, mal.calls');
    await db().admin.query(`begin; set local role "${db().role('mal')}";
      create function mal.check_and_catch(v text) returns boolean language plpgsql set search_path = pg_catalog, pg_temp
        as $$ begin begin perform mal.check_escape(v); exception when insufficient_privilege then
          insert into mal.seen values ('refused', current_user::text, session_user::text); end; return true; end $$;
      grant execute on function mal.check_and_catch(text) to public;
      create domain mal.caught as text check (mal.check_and_catch(value));
      grant usage on type mal.caught to public;
      create function mal.take_caught(w mal.caught) returns void security definer set search_path = pg_catalog, pg_temp
        language sql as $$ insert into mal.calls values ('take_caught') $$;
      commit`);
    const [run] = await finishedRuns(db(), await runNow(alice, 'mal.take_caught(mal.caught)', ['x']));
    expect(run?.status).toBe('succeeded');
    expect(await seen()).toEqual([{ what: 'refused', by_user: db().role('alice') }]);
    expect(await calls()).toEqual(['take_caught']);
    expect(await bobsJobIsThere()).toBe(true);
  });

  test('a cursor declared WITH HOLD is closed with the run: its query never runs at COMMIT as the executor', async () => {
    await db().admin.query('truncate mal.seen, mal.calls');
    const [run] = await finishedRuns(db(), await runNow(alice, 'mal.hold_cursor()'));
    expect(run?.status).toBe('succeeded');
    expect(await calls()).toEqual(['hold_cursor']);
    expect(await seen()).toEqual([]);
    expect(await bobsJobIsThere()).toBe(true);
  });

  test.each([
    ['made SECURITY INVOKER', (frame: string) => `alter function ${frame} security invoker`],
    ['given another search_path', (frame: string) => `alter function ${frame} set search_path = mal, pg_catalog`],
    ['stripped of its search_path', (frame: string) => `alter function ${frame} reset all`],
    ['granted to another user', (frame: string) => `grant execute on function ${frame} to "${db().role('bob')}"`],
  ])('a frame its owner %s runs nothing: scheduling is refused (HC204), a job scheduled before is rejected', async (_how, alter) => {
    const frame = `frames."${db().role('alice')}"(text, text[])`;
    await db().admin.query('truncate mal.seen, mal.calls');
    const { id: job } = await scheduleJob(alice, 'mal.noop()');
    await alice.query(alter(frame)); // the owner may alter what it owns
    try {
      await expect(alice.query(`select api.schedule_job('mal.noop()', run_at => now() + interval '1 day')`)).rejects.toMatchObject({
        code: 'HC204',
        message: expect.stringMatching(/has no intact frame to run jobs in \(frame altered\): an administrator can call mgr\.create_frame/),
      });
      await alice.query('select api.run_job_now($1)', [job]);
      const [run] = await finishedRuns(db(), job);
      expect(run).toMatchObject({ status: 'rejected', reject_reason: 'owner_not_eligible' });
      expect(await calls()).toEqual([]);
    } finally {
      await db().admin.query(`call mgr.create_frame($1)`, [db().role('alice')]);
    }
    const [again] = await finishedRuns(db(), await runNow(alice, 'mal.noop()'));
    expect(again?.status).toBe('succeeded');
    expect(await calls()).toEqual(['noop']);
  });

  test('a user cannot replace, rename or move its frame, and nobody else can use it', async () => {
    const frame = `frames."${db().role('alice')}"`;
    for (const sql of [
      `create or replace function ${frame}(call_sql text, arguments text[]) returns bigint language sql as $$ select 1::bigint $$`,
      `alter function ${frame}(text, text[]) rename to other`,
      `create function frames.other() returns int language sql as $$ select 1 $$`,
    ]) {
      await expect(alice.query(sql)).rejects.toMatchObject({ code: '42501' });
    }
    await db().admin.query('truncate mal.calls');
    const bob = await db().login('bob');
    try {
      await expect(bob.query(`select ${frame}('select count(*) from mal.noop()', '{}')`)).rejects.toMatchObject({ code: '42501' });
    } finally {
      await bob.end();
    }
    expect(await calls()).toEqual([]);
  });
});
