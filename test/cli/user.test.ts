import { randomBytes } from 'node:crypto';
import { beforeAll, describe, expect, test } from 'vitest';
import { freePort } from '../support/child.ts';
import { runCli, type CliResult } from '../support/cli.ts';
import { connect, useTestDatabase } from '../support/database.ts';
import { createBilling, createOwnerRole } from '../support/jobs.ts';

/** A failure of the CLI as people see it: exit code 1, nothing on stdout, one line naming the code. */
function expectOneLineFailure(result: CliResult, code: string): void {
  expect(result.code).toBe(1);
  expect(result.stdout).toBe('');
  expect(result.stderr).toMatch(new RegExp(`^hardcron: [^\\n]+ \\[${code}\\]\\n$`));
}

describe('hardcron user', { timeout: 60_000 }, () => {
  const db = useTestDatabase();
  const env = (): Record<string, string> => ({ DATABASE_URL: db().adminUrl });

  /** The database's local roles (`<db>$…`), sorted. */
  const localRoles = async (): Promise<string[]> =>
    (await db().admin.query<{ rolname: string }>('select rolname from pg_catalog.pg_roles where starts_with(rolname, $1) order by 1', [`${db().name}$`])).rows.map(
      (row) => row.rolname,
    );

  /** The roles `nickname`'s role is a direct member of, sorted. */
  const memberOf = async (nickname: string): Promise<string[]> =>
    (await db().admin.query<{ rolname: string }>(
      `select r.rolname from pg_catalog.pg_auth_members m join pg_catalog.pg_roles r on r.oid = m.roleid
        where m.member = to_regrole(quote_ident($1)) order by 1`,
      [db().role(nickname)],
    )).rows.map((row) => row.rolname);

  const role = async (nickname: string): Promise<{ rolcanlogin: boolean; rolsuper: boolean } | undefined> =>
    (await db().admin.query<{ rolcanlogin: boolean; rolsuper: boolean }>('select rolcanlogin, rolsuper from pg_catalog.pg_roles where rolname = $1', [db().role(nickname)])).rows[0];

  beforeAll(async () => {
    await createBilling(db());
    await createOwnerRole(db(), 'reports');
  });

  test('user add <nick> --scheduler --member-of <owner>: a member of $client, $job_scheduler and the owner', async () => {
    const result = await runCli(['user', 'add', 'alice', '--scheduler', '--member-of', 'billing'], env());
    expect(result).toEqual({ code: 0, stdout: 'added user alice\n', stderr: '' });
    expect(await memberOf('alice')).toEqual([db().role('billing'), db().role('client'), db().role('job_scheduler')].sort());
    // Without --password-env the user cannot log in (the GraphQL server acts as it).
    expect(await role('alice')).toEqual({ rolcanlogin: false, rolsuper: false });
  });

  test('without --scheduler, with two owners: a member of $client and both owners only', async () => {
    const result = await runCli(['user', 'add', 'bob', '--member-of', 'billing', '--member-of', 'reports'], env());
    expect(result).toEqual({ code: 0, stdout: 'added user bob\n', stderr: '' });
    expect(await memberOf('bob')).toEqual([db().role('billing'), db().role('client'), db().role('reports')].sort());
  });

  test('--password-env VAR: the user logs in with that password, which is printed nowhere', async () => {
    const password = `pw-${randomBytes(12).toString('hex')}`;
    const result = await runCli(['user', 'add', 'carol', '--password-env', 'CAROL_PASSWORD'], { ...env(), CAROL_PASSWORD: password });
    expect(result).toEqual({ code: 0, stdout: 'added user carol\n', stderr: '' });
    expect(await role('carol')).toEqual({ rolcanlogin: true, rolsuper: false });
    const carol = await connect(db().urlFor(db().role('carol'), password));
    try {
      const { rows } = await carol.query<{ user: string }>('select current_user as user');
      expect(rows).toEqual([{ user: db().role('carol') }]);
    } finally {
      await carol.end();
    }
  });

  test('user remove drops the user', async () => {
    expect(await runCli(['user', 'add', 'dave'], env())).toEqual({ code: 0, stdout: 'added user dave\n', stderr: '' });
    expect(await role('dave')).toBeDefined();
    expect(await runCli(['user', 'remove', 'dave'], env())).toEqual({ code: 0, stdout: 'removed user dave\n', stderr: '' });
    expect(await role('dave')).toBeUndefined();
  });

  describe('failures: exit code 1, one line on stderr, nothing created or removed', () => {
    test.each([
      ['a bad nickname', ['user', 'add', 'Bad-Name', '--scheduler'], 'HC101'],
      ['an existing user', ['user', 'add', 'alice'], 'HC103'],
      ['an unknown owner', ['user', 'add', 'erin', '--scheduler', '--member-of', 'billing', '--member-of', 'nosuch'], 'HC104'],
      ['removing an unknown user', ['user', 'remove', 'nobody'], 'HC104'],
      ['a reserved nickname', ['user', 'add', 'executor'], 'HC102'],
      ['--password-env naming an unset variable', ['user', 'add', 'frank', '--password-env', 'NOT_SET_HERE'], 'HC_CONFIG_MISSING'],
      ['no nickname', ['user', 'add'], 'HC_USAGE'],
    ])('%s', async (_, args, code) => {
      const before = await localRoles();
      const aliceBefore = await memberOf('alice');
      expectOneLineFailure(await runCli(args, env()), code);
      expect(await localRoles()).toEqual(before);
      expect(await memberOf('alice')).toEqual(aliceBefore);
    });

    test('the database is down: HC_CONNECT, without the password', async () => {
      const port = await freePort();
      const result = await runCli(['user', 'add', 'grace', '--password-env', 'GRACE_PASSWORD'], {
        DATABASE_URL: `postgres://someone:db-secret-pw@127.0.0.1:${port}/${db().name}`,
        GRACE_PASSWORD: 'grace-secret-password',
      });
      expectOneLineFailure(result, 'HC_CONNECT');
      expect(result.stderr).toContain(`cannot connect to postgres://someone:***@127.0.0.1:${port}/${db().name}`);
      expect(result.stderr).not.toContain('db-secret-pw');
      expect(result.stderr).not.toContain('grace-secret-password');
      expect(await role('grace')).toBeUndefined();
    });
  });
});
