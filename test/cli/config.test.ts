import { describe, expect, test } from 'vitest';
import { runCli } from '../support/cli.ts';

/** The environment is checked once, before any command runs: by name, without echoing values. */
describe('environment settings', () => {
  test.each([
    [{ HARDCRON_EXECUTOR_CONCURENCY: '4' }, 'HC_CONFIG_UNKNOWN', 'HARDCRON_EXECUTOR_CONCURENCY is not a hardcron setting'],
    [{ PORT: 'eighty' }, 'HC_CONFIG_INVALID', 'PORT must be a number'],
    [{ PORT: '70000' }, 'HC_CONFIG_INVALID', 'PORT is out of range'],
    [{ HARDCRON_EXECUTOR_LISTEN: 'maybe' }, 'HC_CONFIG_INVALID', 'HARDCRON_EXECUTOR_LISTEN must be one of'],
    [{ LOG_LEVEL: 'loud' }, 'HC_CONFIG_INVALID', 'LOG_LEVEL must be one of'],
    [{ JWT_SECRET: 'sesame-open-sesame' }, 'HC_CONFIG_INVALID', 'JWT_SECRET must be at least 32 bytes long'],
    [{ SERVER_DATABASE_URL: 'mysql://root@db/x' }, 'HC_CONFIG_INVALID', 'SERVER_DATABASE_URL must start with postgres://'],
    [{ JWT_MAX_TTL: 'one-day' }, 'HC_CONFIG_INVALID', 'JWT_MAX_TTL must be a duration such as'],
    [{ JWT_MAX_TTL: '24hours' }, 'HC_CONFIG_INVALID', 'JWT_MAX_TTL must be a duration such as'],
    [{ JWT_MAX_TTL: '86400' }, 'HC_CONFIG_INVALID', 'JWT_MAX_TTL must be a duration such as'],
    [{ JWT_MAX_TTL: '0h' }, 'HC_CONFIG_INVALID', 'JWT_MAX_TTL must be a duration such as'],
    [{ JWT_MAX_TTL: '31d' }, 'HC_CONFIG_INVALID', 'JWT_MAX_TTL must be a duration such as'],
    // 0 would switch the PostgreSQL timeout off.
    [{ HARDCRON_SERVER_LOCK_TIMEOUT_MS: '0' }, 'HC_CONFIG_INVALID', 'HARDCRON_SERVER_LOCK_TIMEOUT_MS is out of range'],
    [{ HARDCRON_SERVER_CONNECTIONS_PER_USER: 'half' }, 'HC_CONFIG_INVALID', 'HARDCRON_SERVER_CONNECTIONS_PER_USER must be a number'],
    [{ HARDCRON_MIGRATE_LOCK_TIMEOUT_MS: '0' }, 'HC_CONFIG_INVALID', 'HARDCRON_MIGRATE_LOCK_TIMEOUT_MS is out of range'],
    [{ HARDCRON_EXECUTOR_HISTORY_SECONDS: '0' }, 'HC_CONFIG_INVALID', 'HARDCRON_EXECUTOR_HISTORY_SECONDS is out of range'],
    [{ HARDCRON_EXECUTOR_HISTORY_SECONDS: 'hourly' }, 'HC_CONFIG_INVALID', 'HARDCRON_EXECUTOR_HISTORY_SECONDS must be a number'],
  ])('%j is refused before the command runs', async (env, code, message) => {
    // `jobs` would need a database: it never gets that far.
    const result = await runCli(['jobs'], env);
    expect(result.code).toBe(1);
    expect(result.stdout).toBe('');
    expect(result.stderr).toContain(message);
    expect(result.stderr).toContain(`[${code}]`);
    expect(result.stderr.trim().split('\n')).toHaveLength(1);
    for (const value of Object.values(env)) if (value.length > 6) expect(result.stderr).not.toContain(value);
  });
});

/**
 * A flag is checked by the rule of the variable it overrides (--ttl: whose syntax it shares) and
 * refused in the same words: the flag's name instead of the variable's, never the value.
 */
describe('flags', () => {
  const SERVER = { SERVER_DATABASE_URL: 'postgres://nobody@127.0.0.1:1/d0' };
  const EXECUTOR = { EXECUTOR_DATABASE_URL: 'postgres://nobody@127.0.0.1:1/d0' };
  const LONG_ID = 'x'.repeat(201);
  test.each([
    ['--port', 'PORT', '70000', 'is out of range: a whole number from 0 to 65535', ['server'], SERVER],
    ['--port', 'PORT', 'eighty', 'must be a number: a whole number from 0 to 65535', ['server'], SERVER],
    ['--host', 'HOST', '', 'must not be empty', ['server'], SERVER],
    ['--concurrency', 'HARDCRON_EXECUTOR_CONCURRENCY', '65', 'is out of range: a whole number from 1 to 64', ['executor'], EXECUTOR],
    ['--batch-size', 'HARDCRON_EXECUTOR_BATCH_SIZE', '2.5', 'must be a whole number from 1 to 10000', ['executor'], EXECUTOR],
    ['--poll-ms', 'HARDCRON_EXECUTOR_POLL_MS', '5', 'is out of range: a whole number from 10 to 3600000', ['executor'], EXECUTOR],
    ['--http-port', 'HARDCRON_EXECUTOR_HTTP_PORT', '65536', 'is out of range: a whole number from 0 to 65535', ['executor'], EXECUTOR],
    ['--id', 'HARDCRON_EXECUTOR_ID', LONG_ID, 'must be at most 200 characters long', ['executor'], EXECUTOR],
    ['--ttl', 'JWT_MAX_TTL', '31d', 'must be a duration such as 3600s, 90m, 24h or 7d (at most 30d)', ['token', 'alice'], {}],
  ])('%s and %s (case %#) are refused in the same words', async (flag, variable, value, rule, command, env) => {
    // The flag's value as `--flag=value`, so that an empty one is given too. Neither gets near a database.
    const byFlag = await runCli([...command, `${flag}=${value}`], env);
    expect(byFlag).toEqual({ code: 1, stdout: '', stderr: `hardcron: ${flag} ${rule} [HC_CONFIG_INVALID]\n` });
    // An empty variable counts as unset: the empty flag has no counterpart.
    if (value === '') return;
    const byVariable = await runCli(command, { ...env, [variable]: value });
    expect(byVariable).toEqual({ code: 1, stdout: '', stderr: `hardcron: ${variable} ${rule} [HC_CONFIG_INVALID]\n` });
  });

  test('hardcron jobs --limit is refused in the same words', async () => {
    expect(await runCli(['jobs', '--limit', '0'])).toEqual({
      code: 1,
      stdout: '',
      stderr: 'hardcron: --limit is out of range: a whole number from 1 to 100000 [HC_CONFIG_INVALID]\n',
    });
  });
});
