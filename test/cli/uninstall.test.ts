import { describe, expect, test } from 'vitest';
import { runCli } from '../support/cli.ts';
import { createTestDatabase, useTestDatabase } from '../support/database.ts';
import { createBilling } from '../support/jobs.ts';

const HARDCRON_SCHEMAS = ['api', 'code', 'data', 'executor', 'frames', 'mgr', 'migrations', 'server'];

describe('hardcron uninstall', () => {
  const db = useTestDatabase({ install: false });

  /** What of hardcron is in the database and on the server: its schemas and the database's roles. */
  async function leftovers(): Promise<{ schemas: string[]; roles: string[] }> {
    const { admin, name } = db();
    const schemas = (await admin.query<{ name: string }>(
      'select nspname::text as name from pg_catalog.pg_namespace where nspname = any ($1::text[]) order by 1', [[...HARDCRON_SCHEMAS, 'billing']],
    )).rows.map((row) => row.name);
    const roles = (await admin.query<{ name: string }>(
      'select rolname::text as name from pg_catalog.pg_roles where starts_with(rolname, $1) order by 1', [`${name}$`],
    )).rows.map((row) => row.name);
    return { schemas, roles };
  }

  async function installWithUsers(): Promise<void> {
    expect(await runCli(['migrate'], { DATABASE_URL: db().adminUrl })).toMatchObject({ code: 0, stderr: '' });
    await createBilling(db());
    await db().addUser('alice', { scheduler: true, memberOf: ['billing'] });
  }

  test('without --yes it lists what it would drop, drops nothing and exits with HC_UNINSTALL_CONFIRM', async () => {
    await installWithUsers();
    const before = await leftovers();
    expect(before.schemas).toEqual([...HARDCRON_SCHEMAS, 'billing'].sort());
    expect(before.roles).toContain(db().role('alice'));

    const result = await runCli(['uninstall'], { DATABASE_URL: db().adminUrl });
    expect(result.code).toBe(1);
    expect(result.stderr).toMatch(/^hardcron: nothing was dropped: run `hardcron uninstall --yes`.*\[HC_UNINSTALL_CONFIRM\]\n$/);
    expect(result.stdout).toContain(`would drop in database ${db().name}:`);
    expect(result.stdout).toContain('schemas: api, code, data, executor, frames, mgr, migrations, server');
    expect(result.stdout).toContain(db().role('alice'));
    expect(result.stdout).toMatch(/\n  owned by those roles: function billing\.close_day\(pg_catalog\.date\), schema billing, table billing\.closed\n$/);
    expect(await leftovers()).toEqual(before);
  });

  test('a role with objects in another database: HC_UNINSTALL_ROLE_IN_USE, and nothing is dropped', async () => {
    const before = await leftovers();
    const other = await createTestDatabase({ install: false });
    try {
      await other.admin.query(`create table alices_table (n integer); alter table alices_table owner to ${other.admin.escapeIdentifier(db().role('alice'))}`);
      const result = await runCli(['uninstall', '--yes'], { DATABASE_URL: db().adminUrl });
      expect(result.code).toBe(1);
      expect(result.stderr).toMatch(/a role cannot be dropped: .*alice.*DROP OWNED BY.*nothing was dropped \[HC_UNINSTALL_ROLE_IN_USE\]\n$/);
      expect(await leftovers()).toEqual(before);
    } finally {
      await other.drop();
    }
  });

  test('a non-superuser URL is refused with HC_UNINSTALL_NOT_SUPERUSER', async () => {
    const { admin } = db();
    await admin.query(`alter role ${admin.escapeIdentifier(db().role('authenticator'))} password 'uninstall-test-pw'`);
    const result = await runCli(['uninstall', '--yes'], { DATABASE_URL: db().urlFor(db().role('authenticator'), 'uninstall-test-pw') });
    expect(result.code).toBe(1);
    expect(result.stderr).toMatch(/needs a superuser URL.*\[HC_UNINSTALL_NOT_SUPERUSER\]\n$/);
    expect(result.stderr).not.toContain('uninstall-test-pw');
  });

  test('with --yes no hardcron schema and no <db>$ role remains; again, nothing to do; a second install works', async () => {
    const result = await runCli(['uninstall', '--yes'], { DATABASE_URL: db().adminUrl });
    expect(result).toMatchObject({ code: 0, stderr: '' });
    expect(result.stdout).toContain(`dropped in database ${db().name}:`);
    expect(result.stdout).toMatch(/hardcron uninstalled\n$/);
    expect(await leftovers()).toEqual({ schemas: [], roles: [] });

    const again = await runCli(['uninstall', '--yes'], { DATABASE_URL: db().adminUrl });
    expect(again).toMatchObject({ code: 0, stderr: '' });
    expect(again.stdout).toMatch(/nothing to uninstall\n$/);

    await installWithUsers();
    const alice = await db().login('alice');
    const { rows } = await alice.query<{ id: string }>(`select id from api.schedule_job('billing.close_day(date)', '["2026-03-01"]', '0 4 * * *')`);
    expect(rows).toHaveLength(1);
    expect((await leftovers()).roles).toContain(db().role('executor'));
  });

  test('usage errors and --help', async () => {
    expect(await runCli(['uninstall', 'extra'])).toMatchObject({ code: 1, stderr: expect.stringMatching(/takes no arguments.*\[HC_USAGE\]/) });
    const help = await runCli(['uninstall', '--help']);
    expect(help.code).toBe(0);
    expect(help.stdout).toContain('Usage: hardcron uninstall [--yes]');
  });
});
