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
