import { describe, expect, test } from 'vitest';
import type pg from 'pg';
import { connect, createTestDatabase, useTestDatabase } from '../support/database.ts';

const RESERVED = ['mgr', 'data', 'code', 'api', 'client', 'job_scheduler', 'executor', 'authenticator', 'anonymous'];

interface PgFailure {
  code: string;
  message: string;
}

/** Calls `sql` as $mgr in a transaction of its own; returns the failure, or null when it worked. */
async function asMgr(client: pg.Client, mgrRole: string, sql: string, params: unknown[] = []): Promise<PgFailure | null> {
  await client.query('begin');
  try {
    await client.query(`set local role ${client.escapeIdentifier(mgrRole)}`);
    await client.query(sql, params);
    await client.query('commit');
    return null;
  } catch (error) {
    await client.query('rollback');
    const { code = '', message } = error as { code?: string; message: string };
    return { code, message };
  }
}

describe('provisioning end users with mgr.add_user', () => {
  const db = useTestDatabase();
  const localRoles = async (): Promise<string[]> =>
    (
      await db().admin.query<{ r: string }>(
        `select rolname as r from pg_roles where starts_with(rolname, current_database() || '$') order by 1`,
      )
    ).rows.map((row) => row.r);
  const addUser = (nickname: unknown, scheduler = false, memberOf: unknown = []): Promise<PgFailure | null> =>
    asMgr(db().admin, db().role('mgr'), 'call mgr.add_user($1, $2, $3, $4)', [nickname, 'pw-123456', scheduler, memberOf]);
  const membersOf = async (nickname: string): Promise<string[]> =>
    (
      await db().admin.query<{ r: string }>(
        `select roleid::regrole::text as r from pg_auth_members where member = to_regrole(quote_ident($1)) order by 1`,
        [db().role(nickname)],
      )
    ).rows.map((row) => row.r);
  const grantedTo = async (nickname: string): Promise<string[]> =>
    (
      await db().admin.query<{ r: string }>(
        `select member::regrole::text as r from pg_auth_members where roleid = to_regrole(quote_ident($1)) order by 1`,
        [db().role(nickname)],
      )
    ).rows.map((row) => row.r);
  const quoted = (nickname: string): string => `"${db().role(nickname)}"`;

  test('a scheduler: member of $client, $job_scheduler and its owner roles; assumable by the server and the executor', async () => {
    expect(await asMgr(db().admin, db().role('mgr'), `call mgr.re_create_role('billing', null, true)`)).toBeNull();
    expect(await addUser('alice', true, ['billing'])).toBeNull();

    expect(await membersOf('alice')).toEqual([quoted('billing'), quoted('client'), quoted('job_scheduler')].sort());
    expect(await grantedTo('alice')).toEqual([quoted('authenticator'), quoted('executor')].sort());
    const { rows } = await db().admin.query('select rolcanlogin, rolinherit, rolsuper from pg_roles where rolname = $1', [
      db().role('alice'),
    ]);
    expect(rows).toEqual([{ rolcanlogin: true, rolinherit: true, rolsuper: false }]);
  });

  test('a plain user: member of $client only, assumable by the server only', async () => {
    expect(await addUser('bob')).toBeNull();
    expect(await membersOf('bob')).toEqual([quoted('client')]);
    expect(await grantedTo('bob')).toEqual([quoted('authenticator')]);
  });

  test.each(RESERVED)('the reserved nickname %s is refused, as user and as owner role, and nothing is created', async (nickname) => {
    const before = await localRoles();
    const asUser = await addUser(nickname);
    expect(asUser).toMatchObject({ code: 'HC102' });
    expect(asUser?.message).toContain('reserved');
    expect(await asMgr(db().admin, db().role('mgr'), 'call mgr.re_create_role($1, null, false)', [nickname])).toMatchObject({
      code: 'HC102',
    });
    expect(await addUser('carol', false, [nickname])).toMatchObject({ code: 'HC102' });
    expect(await localRoles()).toEqual(before);
  });

  test.each([
    'x"; drop role y; --',
    `x'; drop role y; --`,
    'Alice',
    '1abc',
    '',
    'a b',
    'a$b',
    'ünïcode',
    'tab\there',
    'x'.repeat(80),
    null,
  ])('the nickname %j is not a plain identifier: refused with a clear error, no role created', async (nickname) => {
    await db().admin.query(`create role "${db().name}$y"`).catch(() => {});
    const before = await localRoles();
    const failure = await addUser(nickname);
    expect(failure).toMatchObject({ code: 'HC101' });
    expect(failure?.message).toMatch(/^invalid nickname/);
    expect(await localRoles()).toEqual(before);
    expect(before).toContain(db().role('y'));
  });

  test('an existing user, an unknown owner role, a non-identifier owner role: refused, nothing created', async () => {
    await addUser('dave');
    const before = await localRoles();
    expect(await addUser('dave')).toMatchObject({ code: 'HC103', message: `user 'dave' already exists` });
    expect(await addUser('erin', false, ['no_such_role'])).toMatchObject({ code: 'HC104' });
    expect(await addUser('erin', false, ['x"; drop role y; --'])).toMatchObject({ code: 'HC101' });
    expect(await addUser('erin', false, null)).toMatchObject({ code: 'HC101' });
    expect(await localRoles()).toEqual(before);
  });

  test('remove_user drops a user and refuses roles that are not users', async () => {
    await addUser('frank');
    expect(await asMgr(db().admin, db().role('mgr'), `call mgr.remove_user('frank')`)).toBeNull();
    expect(await localRoles()).not.toContain(db().role('frank'));
    expect(await asMgr(db().admin, db().role('mgr'), `call mgr.remove_user('frank')`)).toMatchObject({ code: 'HC104' });
    expect(await asMgr(db().admin, db().role('mgr'), `call mgr.remove_user('billing')`)).toMatchObject({ code: 'HC104' });
    expect(await asMgr(db().admin, db().role('mgr'), `call mgr.remove_user('executor')`)).toMatchObject({ code: 'HC102' });
    expect(await localRoles()).toContain(db().role('billing'));
  });
});

describe('two databases installed side by side on one cluster', () => {
  test("do not see each other's roles", async () => {
    const [one, two] = await Promise.all([createTestDatabase(), createTestDatabase()]);
    try {
      await one.addUser('alice', { scheduler: true });
      await two.addUser('alice', { scheduler: true });
      expect(one.role('alice')).not.toBe(two.role('alice'));

      // alice of database one, with her right password, cannot even connect to database two.
      await one.admin.query(`alter role "${one.role('alice')}" password 'known-pw'`);
      const attempt = await connect(two.urlFor(one.role('alice'), 'known-pw')).then(
        (client) => client.end().then(() => 'connected'),
        (error: { code?: string }) => error.code,
      );
      expect(attempt).toBe('42501');

      // Database one's server and executor cannot assume database two's users.
      const authenticatorOne = await one.login('authenticator');
      await expect(authenticatorOne.query(`set role "${two.role('alice')}"`)).rejects.toMatchObject({ code: '42501' });
      const executorOne = await one.login('executor');
      await expect(executorOne.query(`set role "${two.role('alice')}"`)).rejects.toMatchObject({ code: '42501' });

      // Nicknames map into the current database only: a $ cannot reach another database's roles.
      const mgrCall = await asMgr(one.admin, one.role('mgr'), 'call mgr.add_user($1, null, false, $2)', [
        'mallory',
        [two.role('alice')],
      ]);
      expect(mgrCall).toMatchObject({ code: 'HC101' });
    } finally {
      await Promise.all([one.drop(), two.drop()]);
    }
  });
});
