import { chmod, mkdtemp, rm, stat } from 'node:fs/promises';
import { userInfo } from 'node:os';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { describe, expect, test } from 'vitest';
import { runCli } from '../support/cli.ts';
import { connect, useTestDatabase } from '../support/database.ts';

describe('hardcron migrate', () => {
  const db = useTestDatabase({ install: false });

  test('installs into DATABASE_URL, then reports it is up to date', async () => {
    const first = await runCli(['migrate'], { DATABASE_URL: db().adminUrl });
    expect(first).toMatchObject({ code: 0, stderr: '' });
    expect(first.stdout).toContain('applied 0001_roles.sql');
    expect(first.stdout).not.toContain(new URL(db().adminUrl).password || '\u0000');

    const second = await runCli(['migrate'], { DATABASE_URL: db().adminUrl });
    expect(second.code).toBe(0);
    expect(second.stdout).toMatch(/up to date \(\d+ migrations applied earlier\)/);
  });

  test.each([
    ['mysql://root@localhost/db', /DATABASE_URL must start with postgres:\/\//],
    ['not a url', /DATABASE_URL is not a URL/],
    ['postgres://localhost', /DATABASE_URL must name a database/],
  ])('refuses DATABASE_URL=%j with one line naming the variable', async (url, message) => {
    const result = await runCli(['migrate'], { DATABASE_URL: url });
    expect(result.code).toBe(1);
    expect(result.stderr).toMatch(message);
    expect(result.stderr).toMatch(/\[HC_CONFIG_INVALID\]\n$/);
    expect(result.stderr.trim().split('\n')).toHaveLength(1);
  });

  test('AUTHENTICATOR_PASSWORD and EXECUTOR_PASSWORD become the runtime roles\' passwords, never printed', async () => {
    const passwords = { AUTHENTICATOR_PASSWORD: 'authenticator-pw-3f9a1c', EXECUTOR_PASSWORD: 'executor-pw-7b2d4e' };
    const result = await runCli(['migrate'], { DATABASE_URL: db().adminUrl, ...passwords });
    expect(result.code).toBe(0);
    expect(result.stdout).toContain('set the password of $authenticator');
    for (const value of Object.values(passwords)) expect(result.stdout + result.stderr).not.toContain(value);
    for (const [nickname, password] of [['authenticator', passwords.AUTHENTICATOR_PASSWORD], ['executor', passwords.EXECUTOR_PASSWORD]] as const) {
      const client = await connect(db().urlFor(db().role(nickname), password));
      try {
        expect((await client.query('select current_user as u')).rows).toEqual([{ u: db().role(nickname) }]);
      } finally {
        await client.end();
      }
    }
  });

  test('a server that does not answer: one line, no stack trace, no password', async () => {
    const result = await runCli(['migrate'], { DATABASE_URL: 'postgres://someone:secret-pw@127.0.0.1:1/d0' });
    expect(result.code).toBe(1);
    expect(result.stderr).toMatch(/^hardcron: cannot connect to postgres:\/\/someone:\*\*\*@127\.0\.0\.1:1\/d0: .*\[HC_CONNECT\]\n$/);
    expect(result.stderr).not.toContain('secret-pw');
  });

  test('usage errors and --help', async () => {
    expect(await runCli(['migrate', 'extra'])).toMatchObject({ code: 1, stderr: expect.stringMatching(/takes no arguments.*\[HC_USAGE\]/) });
    expect(await runCli(['nonsense'])).toMatchObject({ code: 2, stderr: expect.stringContaining('unknown command "nonsense"') });
    expect(await runCli(['migrate', '--help'])).toMatchObject({ code: 0, stdout: expect.stringContaining('DATABASE_URL') });
    expect(await runCli(['--help'])).toMatchObject({ code: 0, stdout: expect.stringContaining('migrate') });
  });
});

describe('hardcron migrate without DATABASE_URL', () => {
  test('starts embedded PostgreSQL under HARDCRON_DATA_DIR, installs into d0, keeps the data between runs', async () => {
    const dataDir = await mkdtemp(join(tmpdir(), 'hardcron-data-'));
    try {
      if (userInfo().uid === 0) {
        // As root PostgreSQL runs as OS user postgres; a private (0700) directory is refused plainly.
        const refused = await runCli(['migrate'], { HARDCRON_DATA_DIR: dataDir });
        expect(refused.code).toBe(1);
        expect(refused.stderr).toMatch(new RegExp(`cannot enter ${dataDir}: run "chmod o\\+x .*\\[HC_EMBEDDED_PATH\\]\n$`));
        await chmod(dataDir, 0o755);
      }
      const first = await runCli(['migrate'], { HARDCRON_DATA_DIR: dataDir });
      expect(first).toMatchObject({ code: 0, stderr: '' });
      expect(first.stdout).toMatch(/embedded PostgreSQL: applied \d+ migration/);
      expect((await stat(join(dataDir, 'postgres', 'superuser-password'))).mode & 0o777).toBe(0o600);

      const second = await runCli(['migrate'], { HARDCRON_DATA_DIR: dataDir });
      expect(second).toMatchObject({ code: 0, stderr: '' });
      expect(second.stdout).toMatch(/embedded PostgreSQL: up to date/);
    } finally {
      await rm(dataDir, { recursive: true, force: true });
    }
  });
});
