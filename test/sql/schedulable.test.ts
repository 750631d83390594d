import { beforeAll, describe, expect, test } from 'vitest';
import type pg from 'pg';
import { useTestDatabase } from '../support/database.ts';
import { createOwnerRole, setLocalRole, transaction } from '../support/jobs.ts';

/** A row of api.schedulable_functions as node-postgres returns it. */
interface Schedulable {
  function_signature: string;
  function_owner: string;
  argument_names: Array<string | null>;
  argument_types: string[];
  argument_defaults: number;
}

const SAFE = 'security definer set search_path = pg_catalog, pg_temp';

/**
 * alice (scheduler, member of $alice_fns) lists what she may schedule. $alice_fns owns functions
 * that pass every rule and functions that each fail one; $bob_fns's functions are not hers; a
 * superuser owns one too. The listing is compared with api.schedule_job's verdict on every
 * function outside pg_catalog and information_schema (hardcron's own included), tried as alice.
 */
describe('api.schedulable_functions: exactly what the caller could schedule', () => {
  const db = useTestDatabase();
  let alice: pg.Client;
  let carol: pg.Client; // a member of $alice_fns who may not schedule

  beforeAll(async () => {
    await createOwnerRole(db(), 'alice_fns', `
      create schema alice_fns;
      create table alice_fns.calls (x text);
      create function alice_fns.note(x text) returns void ${SAFE}
        language sql as $$ insert into alice_fns.calls values (x) $$;
      create function alice_fns.close_day(day date, note text default 'closed', force boolean default false) returns integer ${SAFE}
        language sql as $$ select 1 $$;
      create function alice_fns.unnamed(integer, text) returns integer ${SAFE} language sql as $$ select 1 $$;
      create function alice_fns.out_too(a integer, out doubled integer, b text default null) ${SAFE}
        language sql as $$ select a * 2 $$;
      create function alice_fns.nothing() returns void ${SAFE} language sql as $$ select $$;
      create function alice_fns.own_path() returns void security definer set search_path = alice_fns, pg_catalog, pg_temp
        language sql as $$ select $$;
      -- Each of these fails one rule.
      create function alice_fns.invoker() returns void security invoker set search_path = pg_catalog, pg_temp
        language sql as $$ select $$;
      create function alice_fns.unpinned() returns void security definer language sql as $$ select $$;
      create function alice_fns.temp_first() returns void security definer set search_path = pg_temp, pg_catalog
        language sql as $$ select $$;
      create function alice_fns.missing_schema() returns void security definer set search_path = nowhere, pg_catalog, pg_temp
        language sql as $$ select $$;
      create function alice_fns.no_timeout() returns void ${SAFE} set statement_timeout = 0 language sql as $$ select $$;
      create function alice_fns.many(variadic xs text[]) returns void ${SAFE} language sql as $$ select $$;
      create function alice_fns.generic(x anyelement) returns void ${SAFE} language sql as $$ select $$;
      create procedure alice_fns.proc() ${SAFE} language sql as $$ select $$;
      create aggregate alice_fns.total(integer) (sfunc = int4pl, stype = integer)`);
    await createOwnerRole(db(), 'bob_fns', `
      create schema bob_fns;
      create function bob_fns.note(x text) returns void ${SAFE} language sql as $$ select $$`);
    // Another role may write to this schema: unsafe in a search_path (rule 5).
    await transaction(db(), `
      create schema shared;
      grant create, usage on schema shared to public;
      ${setLocalRole(db(), 'alice_fns')};
      create function alice_fns.shared_path() returns void security definer set search_path = shared, pg_catalog, pg_temp
        language sql as $$ select $$`);
    // A superuser's function (rule 4), which alice could not have anyway.
    await db().admin.query(`create schema su_fns;
      create function su_fns.note() returns void ${SAFE} language sql as $$ select $$`);
    await db().addUser('alice', { scheduler: true, memberOf: ['alice_fns'] });
    await db().addUser('bob', { scheduler: true, memberOf: ['bob_fns'] });
    await db().addUser('carol', { memberOf: ['alice_fns'] });
    alice = await db().login('alice');
    carol = await db().login('carol');
  });

  const listing = async (client: pg.Client): Promise<Schedulable[]> =>
    (await client.query<Schedulable>('select * from api.schedulable_functions order by function_signature')).rows;

  const signatures = async (client: pg.Client): Promise<string[]> => (await listing(client)).map((row) => row.function_signature);

  /**
   * Whether api.schedule_job accepts `signature` from `client`, with the fewest arguments it
   * takes, all null (a day away; rolled back either way). Returns the error's code when refused.
   */
  const scheduleVerdict = async (client: pg.Client, signature: string, requiredArguments: number): Promise<string> => {
    await client.query('begin');
    try {
      await client.query(`select api.schedule_job($1::text, $2::jsonb, run_at => pg_catalog.now() + '1 day'::interval)`,
        [signature, JSON.stringify(Array.from({ length: requiredArguments }, () => null))]);
      return 'accepted';
    } catch (error) {
      return (error as { code?: string }).code ?? 'no code';
    } finally {
      await client.query('rollback');
    }
  };

  test('alice sees her owner role\'s safe security definer functions, with their parameters, and nothing else', async () => {
    const rows = await listing(alice);
    const owner = db().role('alice_fns');
    expect(rows).toEqual([
      { function_signature: 'alice_fns.close_day(date,text,boolean)', function_owner: owner, argument_names: ['day', 'note', 'force'],
        argument_types: ['date', 'text', 'boolean'], argument_defaults: 2 },
      { function_signature: 'alice_fns.note(text)', function_owner: owner, argument_names: ['x'], argument_types: ['text'], argument_defaults: 0 },
      { function_signature: 'alice_fns.nothing()', function_owner: owner, argument_names: [], argument_types: [], argument_defaults: 0 },
      { function_signature: 'alice_fns.out_too(integer,text)', function_owner: owner, argument_names: ['a', 'b'],
        argument_types: ['integer', 'text'], argument_defaults: 1 },
      { function_signature: 'alice_fns.own_path()', function_owner: owner, argument_names: [], argument_types: [], argument_defaults: 0 },
      { function_signature: 'alice_fns.unnamed(integer,text)', function_owner: owner, argument_names: [null, null],
        argument_types: ['integer', 'text'], argument_defaults: 0 },
      // Not her own frame (rule 3: a frame runs jobs, it is not one).
    ]);
  });

  test('a frame is not a job function: scheduling alice\'s own frame is refused (rule 3), and nothing is left behind', async () => {
    const frame = `frames.${db().admin.escapeIdentifier(db().role('alice'))}(text,text[])`;
    const jobs = async (): Promise<number> => (await db().admin.query<{ n: number }>('select count(*)::int as n from data.jobs')).rows[0]?.n ?? -1;
    const before = await jobs();
    const error = await alice.query(`select api.schedule_job($1, '["select 1", []]')`, [frame]).then(
      () => null,
      (failure: { code?: string; message?: string }) => failure,
    );
    expect(error).toMatchObject({ code: 'HC203', message: expect.stringMatching(/is a frame/) });
    expect(await jobs()).toBe(before);
  });

  test('the listing is api.schedule_job\'s verdict on every function outside pg_catalog, tried as alice', async () => {
    const { rows: candidates } = await db().admin.query<{ signature: string; required: number }>(
      `select code.function_signature(p.oid) as signature, p.pronargs - p.pronargdefaults as required
         from pg_proc p
        where p.pronamespace not in ('pg_catalog'::regnamespace, 'information_schema'::regnamespace)
        order by 1`);
    // Not just alice's: hardcron's own api, code and mgr functions, bob's, the superuser's, frames.
    expect(candidates.length).toBeGreaterThan(100);
    const accepted: string[] = [];
    const refusals = new Map<string, string>();
    for (const { signature, required } of candidates) {
      const verdict = await scheduleVerdict(alice, signature, required);
      if (verdict === 'accepted') accepted.push(signature);
      else refusals.set(signature, verdict);
    }
    expect(await signatures(alice)).toEqual(accepted);
    // The near misses were refused by the eligibility rules, not by anything else.
    for (const signature of ['alice_fns.invoker()', 'alice_fns.unpinned()', 'alice_fns.temp_first()', 'alice_fns.missing_schema()',
      'alice_fns.no_timeout()', 'alice_fns.many(text[])', 'alice_fns.shared_path()', 'alice_fns.proc()', 'alice_fns.total(integer)',
      'bob_fns.note(text)', 'su_fns.note()']) {
      expect([signature, refusals.get(signature)]).toEqual([signature, 'HC203']);
    }
    // A required parameter of a pseudo-type: no argument can ever be given to it.
    expect(refusals.get('alice_fns.generic(anyelement)')).toBe('HC205');
  });

  test('a change to a function or to a membership shows at once', async () => {
    await transaction(db(), `${setLocalRole(db(), 'alice_fns')}; alter function alice_fns.nothing() security invoker`);
    expect(await signatures(alice)).not.toContain('alice_fns.nothing()');
    expect(await scheduleVerdict(alice, 'alice_fns.nothing()', 0)).toBe('HC203');
    await transaction(db(), `${setLocalRole(db(), 'alice_fns')}; alter function alice_fns.nothing() security definer`);
    expect(await signatures(alice)).toContain('alice_fns.nothing()');

    await db().admin.query(`grant ${db().admin.escapeIdentifier(db().role('bob_fns'))} to ${db().admin.escapeIdentifier(db().role('alice'))}`);
    expect(await signatures(alice)).toContain('bob_fns.note(text)');
    expect(await scheduleVerdict(alice, 'bob_fns.note(text)', 1)).toBe('accepted');
    await db().admin.query(`revoke ${db().admin.escapeIdentifier(db().role('bob_fns'))} from ${db().admin.escapeIdentifier(db().role('alice'))}`);
    expect(await signatures(alice)).not.toContain('bob_fns.note(text)');
  });

  test('whoever may not schedule sees nothing: a member of the owner role without $job_scheduler, a superuser, $anonymous', async () => {
    expect(await scheduleVerdict(carol, 'alice_fns.note(text)', 1)).toBe('HC204');
    expect(await listing(carol)).toEqual([]);
    expect(await listing(db().admin)).toEqual([]);
    await db().admin.query('begin');
    try {
      await db().admin.query(setLocalRole(db(), 'anonymous'));
      expect((await db().admin.query('select * from api.schedulable_functions')).rows).toEqual([]);
    } finally {
      await db().admin.query('rollback');
    }
  });

  test('listing locks nothing: it works in a read-only transaction and leaves it without a transaction id', async () => {
    await alice.query('begin transaction read only');
    try {
      expect(await signatures(alice)).toContain('alice_fns.note(text)');
      // A row lock on a catalog row (what scheduling takes) would have given the transaction an id.
      const { rows } = await alice.query('select pg_catalog.pg_current_xact_id_if_assigned() as xid');
      expect(rows).toEqual([{ xid: null }]);
    } finally {
      await alice.query('rollback');
    }
    // Control: scheduling does lock (and write), so it has an id.
    await alice.query('begin');
    try {
      await alice.query(`select api.schedule_job('alice_fns.nothing()', run_at => pg_catalog.now() + '1 day'::interval)`);
      const { rows } = await alice.query('select pg_catalog.pg_current_xact_id_if_assigned() is not null as has_xid');
      expect(rows).toEqual([{ has_xid: true }]);
    } finally {
      await alice.query('rollback');
    }
  });
});
