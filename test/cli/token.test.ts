import { describe, expect, test } from 'vitest';
import { createTokenVerifier } from '../../server/api/auth.ts';
import { runCli } from '../support/cli.ts';

const SECRET = 'cli-test-secret-0123456789abcdef0123';

describe('hardcron token', () => {
  test('prints a token the server accepts for the nickname, expiring after --ttl', async () => {
    const { code, stdout, stderr } = await runCli(['token', 'alice', '--ttl', '2h'], { JWT_SECRET: SECRET });
    expect([code, stderr]).toEqual([0, '']);
    const identity = await createTokenVerifier({ secret: SECRET }, 'd0')(`Bearer ${stdout.trim()}`);
    expect(identity.role).toBe('d0$alice');
    expect(identity.expiresAt! - Date.now()).toBeGreaterThan(7100_000);
    expect(identity.expiresAt! - Date.now()).toBeLessThanOrEqual(7200_000);
  });

  test.each([
    [['token', 'Alice'], { JWT_SECRET: SECRET }, 'HC_CONFIG_INVALID'],
    [['token', 'alice', '--ttl', 'forever'], { JWT_SECRET: SECRET }, 'HC_CONFIG_INVALID'],
    [['token', 'alice'], {}, 'HC_CONFIG_MISSING'],
    [['token', 'alice'], { JWT_SECRET: 'too short' }, 'HC_CONFIG_INVALID'],
  ])('%j fails with one line and a code', async (args, env, errorCode) => {
    const { code, stdout, stderr } = await runCli(args, env);
    expect(code).toBe(1);
    expect(stdout).toBe('');
    expect(stderr.trim().split('\n')).toHaveLength(1);
    expect(stderr).toContain(`[${errorCode}]`);
    expect(stderr).not.toContain('too short');
  });
});
