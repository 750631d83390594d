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
