import { describe, expect, test } from 'vitest';
import { runCli } from '../support/cli.ts';
import { useTestDatabase } from '../support/database.ts';

describe('hardcron executor', () => {
  const db = useTestDatabase();

  test('refuses to start without EXECUTOR_DATABASE_URL, with a superuser URL, or with bad flags', async () => {
    expect(await runCli(['executor'])).toMatchObject({
      code: 1,
      stderr: expect.stringMatching(/^hardcron: EXECUTOR_DATABASE_URL is not set.*\[HC_CONFIG_MISSING\]\n$/),
    });
    expect(await runCli(['executor'], { EXECUTOR_DATABASE_URL: db().adminUrl })).toMatchObject({
      code: 1,
      stderr: expect.stringMatching(/logs in as superuser .*\[HC_SUPERUSER_REFUSED\]\n$/),
    });
    expect(await runCli(['executor', '--concurrency', 'lots'], { EXECUTOR_DATABASE_URL: db().adminUrl })).toMatchObject({
      code: 1,
      stderr: expect.stringMatching(/--concurrency must be a number: a whole number from 1 to 64 \[HC_CONFIG_INVALID\]/),
    });
    expect(await runCli(['executor'], { EXECUTOR_DATABASE_URL: 'postgres://x:secret@127.0.0.1:1/d0' })).toMatchObject({
      code: 1,
      stderr: expect.stringMatching(/^hardcron: cannot connect to postgres:\/\/x:\*\*\*@127\.0\.0\.1:1\/d0: .*\[HC_CONNECT\]\n$/),
    });
  });
});
