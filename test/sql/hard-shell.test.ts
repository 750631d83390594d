import { beforeAll, describe, expect, test } from 'vitest';
import type pg from 'pg';
import { useTestDatabase } from '../support/database.ts';

/** Runs `sql` and returns the SQLSTATE it failed with (or 'ok'). */
async function sqlstateOf(client: pg.Client, sql: string, params: unknown[] = []): Promise<string> {
  try {
    await client.query(sql, params);
    return 'ok';
  } catch (error) {
    return (error as { code?: string }).code ?? 'no sqlstate';
  }
}

describe('the hard shell as $client members, $executor and $authenticator see it', () => {
  const db = useTestDatabase();
  let alice: pg.Client;

  beforeAll(async () => {
    const { admin, role } = db();
    // A table of $data and a security definer function of $code, each created by its owner.
    // If anyone outside the shell reached code.touch_secret(), data.secret would gain a row.
    await admin.query(`begin;
      set local role "${role('data')}";
      create table data.secret (note text);
      grant select, insert on data.secret to "${role('code')}";
      set local role "${role('code')}";
      create function code.touch_secret() returns void security definer
        set search_path = pg_catalog, pg_temp language sql as $$ insert into data.secret values ('touched') $$;
      grant execute on function code.touch_secret() to "${role('api')}";
      commit`);
    await db().addUser('alice', { scheduler: true });
    alice = await db().login('alice');
  });

  test('a $client member can read no table and execute no function outside api (permission denied)', async () => {
    expect(await sqlstateOf(alice, 'select * from data.secret')).toBe('42501');
    expect(await sqlstateOf(alice, 'select code.touch_secret()')).toBe('42501');
    expect(await sqlstateOf(alice, `call mgr.re_create_role('x', null, true)`)).toBe('42501');
    expect(await sqlstateOf(alice, `call mgr.add_user('x')`)).toBe('42501');
    expect(await sqlstateOf(alice, `call mgr.grant_priv('select', 'table', 'data.secret', 'client')`)).toBe('42501');
    expect((await db().admin.query('select count(*)::int as n from data.secret')).rows[0].n).toBe(0);
    expect(await sqlstateOf(alice, `select 1 from pg_roles where rolname = $1`, [db().role('mgr')])).toBe('ok');
  });

  test('no function outside api and the system schemas is executable by a $client member, but its own frame', async () => {
    const { rows } = await db().admin.query(
      `select p.oid::regprocedure::text as proc
         from pg_proc p join pg_namespace n on n.oid = p.pronamespace
        where n.nspname !~ '^(pg_|information_schema$|api$)'
          and has_schema_privilege($1, n.oid, 'usage') and has_function_privilege($1, p.oid, 'execute')`,
      [db().role('alice')],
    );
    // A scheduler owns the frame its jobs run in (sql/routines/mgr/frames.sql): it runs SQL as that user only.
    expect(rows).toEqual([{ proc: `frames."${db().role('alice')}"(text,text[])` }]);
  });

  test('a $client member cannot create anything', async () => {
    for (const sql of [
      'create schema mine',
      'create table api.mine (x int)',
      'create temp table mine (x int)',
      'create function api.mine() returns int language sql as $$ select 1 $$',
      'create view api.mine as select 1 as x',
    ]) {
      expect([sql, await sqlstateOf(alice, sql)]).toEqual([sql, '42501']);
    }
  });

  // A token can only make $authenticator become a role it was granted, so it must be
  // granted end users and $anonymous only (and $client, NOINHERIT, for introspecting as $client).
  test('$authenticator is granted end users, $anonymous and $client only; $executor the schedulers among them only', async () => {
    await db().addUser('bea'); // not a scheduler: no job of hers ever runs
    const grantedTo = async (nickname: string): Promise<string[]> =>
      (
        await db().admin.query<{ rolname: string }>(
          `select g.rolname from pg_auth_members m join pg_roles g on g.oid = m.roleid join pg_roles r on r.oid = m.member
            where r.rolname = $1 order by g.rolname`,
          [db().role(nickname)],
        )
      ).rows.map((row) => row.rolname);
    expect(await grantedTo('authenticator')).toEqual(['alice', 'anonymous', 'bea', 'client'].map((n) => db().role(n)).sort());
    expect(await grantedTo('executor')).toEqual([db().role('alice')]);
    // Nobody else holds either runtime role, and neither is granted anything with ADMIN OPTION.
    const { rows } = await db().admin.query(
      `select r.rolname as member, g.rolname as role, m.admin_option from pg_auth_members m
         join pg_roles g on g.oid = m.roleid join pg_roles r on r.oid = m.member
        where g.rolname in ($1, $2) or (r.rolname in ($1, $2) and m.admin_option)`,
      [db().role('authenticator'), db().role('executor')],
    );
    expect(rows).toEqual([]);
  });

  test('$executor and $authenticator are LOGIN, NOINHERIT, not superuser, and can create nothing', async () => {
    const { rows } = await db().admin.query(
      `select rolname, rolcanlogin, rolinherit, rolsuper, rolcreaterole, rolcreatedb, rolbypassrls
         from pg_roles where rolname in ($1, $2) order by rolname`,
      [db().role('authenticator'), db().role('executor')],
    );
    expect(rows.map(({ rolname, ...attrs }) => attrs)).toEqual(
      Array(2).fill({ rolcanlogin: true, rolinherit: false, rolsuper: false, rolcreaterole: false, rolcreatedb: false, rolbypassrls: false }),
    );

    for (const nickname of ['executor', 'authenticator']) {
      const session = await db().login(nickname);
      // NOINHERIT: although granted alice (to SET ROLE to her), the session has none of her rights.
      expect(await sqlstateOf(session, 'select * from data.secret')).toBe('42501');
      for (const sql of [
        'create schema mine',
        'create temp table mine (x int)',
        'create table api.mine (x int)',
        'create table data.mine (x int)',
        'create function code.mine() returns int language sql as $$ select 1 $$',
        'create table mgr.mine (x int)',
        'create role mine',
        'create database mine',
      ]) {
        expect([nickname, sql, await sqlstateOf(session, sql)]).toEqual([nickname, sql, '42501']);
      }
      // It may assume an end user, and then has exactly that user's rights.
      expect(await sqlstateOf(session, `set role "${db().role('alice')}"`)).toBe('ok');
      expect(await sqlstateOf(session, 'select code.touch_secret()')).toBe('42501');
      await session.query('reset role');
    }
    expect((await db().admin.query('select count(*)::int as n from data.secret')).rows[0].n).toBe(0);
  });

  test('$mgr cannot replace the helpers that run inside its superuser-owned procedures', async () => {
    // Were $mgr to own schema mgr: a schema owner may drop any object in it, and a
    // look-alike mgr.grant_priv would then run as superuser inside mgr.re_create_role.
    const { admin, role } = db();
    await admin.query(`set role "${role('mgr')}"`);
    try {
      expect(await sqlstateOf(admin, 'drop procedure mgr.grant_priv(text, text, text, text)')).toBe('42501');
      expect(await sqlstateOf(admin, 'drop function mgr.local_role_name(text, boolean)')).toBe('42501');
      expect(
        await sqlstateOf(admin, 'create function mgr.extra() returns int language sql as $$ select 1 $$'),
      ).toBe('42501');
    } finally {
      await admin.query('reset role');
    }
  });
});
