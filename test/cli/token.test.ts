import { existsSync } from 'node:fs';
import { mkdtemp, rm, writeFile } from 'node:fs/promises';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { decodeJwt } from 'jose';
import { afterAll, beforeAll, describe, expect, test } from 'vitest';
import { createTokenVerifier } from '../../server/api/auth.ts';
import { runCli } from '../support/cli.ts';

const SECRET = 'cli-test-secret-0123456789abcdef0123';
/** A data directory with no secrets.json: the token command finds no secret there. */
const NO_DATA_DIR = join(tmpdir(), 'hardcron-token-no-data-dir');

describe('hardcron token', () => {
  test('prints a token the server accepts for the nickname, expiring after --ttl', async () => {
    const { code, stdout, stderr } = await runCli(['token', 'alice', '--ttl', '2h'], { JWT_SECRET: SECRET });
    expect([code, stderr]).toEqual([0, '']);
    const identity = await createTokenVerifier({ secret: SECRET }, 'd0')(`Bearer ${stdout.trim()}`);
    expect(identity.role).toBe('d0$alice');
    expect(identity.expiresAt! - Date.now()).toBeGreaterThan(7100_000);
    expect(identity.expiresAt! - Date.now()).toBeLessThanOrEqual(7200_000);
  });

  test('the token carries iat and exp, exactly --ttl apart (1h without --ttl)', async () => {
    for (const [args, seconds] of [[['--ttl', '90m'], 5400], [[], 3600]] as const) {
      const { code, stdout, stderr } = await runCli(['token', 'alice', ...args], { JWT_SECRET: SECRET });
      expect([code, stderr]).toEqual([0, '']);
      const { iat, exp } = decodeJwt(stdout.trim());
      expect(typeof iat, String(args)).toBe('number');
      expect(exp! - iat!, String(args)).toBe(seconds);
    }
  });

  test('--ttl 25h is refused with one line naming the 24h maximum and JWT_MAX_TTL', async () => {
    const result = await runCli(['token', 'alice', '--ttl', '25h'], { JWT_SECRET: SECRET });
    expect(result).toEqual({
      code: 1,
      stdout: '',
      stderr: 'hardcron: --ttl 25h is longer than the 24h the server accepts (JWT_MAX_TTL): give a shorter --ttl, or raise JWT_MAX_TTL for the server and here [HC_CONFIG_INVALID]\n',
    });
  });

  test('with JWT_MAX_TTL=48h, --ttl 25h is accepted: a server with that maximum accepts the token, one with the default refuses it', async () => {
    const { code, stdout, stderr } = await runCli(['token', 'alice', '--ttl', '25h'], { JWT_SECRET: SECRET, JWT_MAX_TTL: '48h' });
    expect([code, stderr]).toEqual([0, '']);
    const { iat, exp } = decodeJwt(stdout.trim());
    expect(exp! - iat!).toBe(25 * 3600);
    const identity = await createTokenVerifier({ secret: SECRET, maxTtlSeconds: 48 * 3600 }, 'd0')(`Bearer ${stdout.trim()}`);
    expect(identity.role).toBe('d0$alice');
    await expect(createTokenVerifier({ secret: SECRET }, 'd0')(`Bearer ${stdout.trim()}`)).rejects.toMatchObject({ code: 'HC_AUTH_TOKEN_TOO_LONG' });
  });

  test('with JWT_MAX_TTL=30m and no --ttl, the token is valid for 30m (the default 1h would be refused)', async () => {
    const { code, stdout, stderr } = await runCli(['token', 'alice'], { JWT_SECRET: SECRET, JWT_MAX_TTL: '30m' });
    expect([code, stderr]).toEqual([0, '']);
    const { iat, exp } = decodeJwt(stdout.trim());
    expect(exp! - iat!).toBe(1800);
    expect((await runCli(['token', 'alice', '--ttl', '31m'], { JWT_SECRET: SECRET, JWT_MAX_TTL: '30m' })).stderr).toContain('longer than the 30m');
  });

  test.each([
    [['token', 'Alice'], { JWT_SECRET: SECRET }, 'HC_CONFIG_INVALID'],
    [['token', 'alice', '--ttl', 'forever'], { JWT_SECRET: SECRET }, 'HC_CONFIG_INVALID'],
    [['token', 'alice', '--ttl', '25h'], { JWT_SECRET: SECRET }, 'HC_CONFIG_INVALID'],
    [['token', 'alice', '--ttl', '2h'], { JWT_SECRET: SECRET, JWT_MAX_TTL: '1h' }, 'HC_CONFIG_INVALID'],
    [['token', 'alice'], { JWT_SECRET: SECRET, JWT_MAX_TTL: 'too short' }, 'HC_CONFIG_INVALID'],
    [['token', 'alice'], { HARDCRON_DATA_DIR: NO_DATA_DIR }, 'HC_CONFIG_MISSING'],
    [['token', 'alice'], { JWT_SECRET: 'too short' }, 'HC_CONFIG_INVALID'],
  ])('%j fails with one line and a code', async (args, env, errorCode) => {
    const { code, stdout, stderr } = await runCli(args, env);
    expect(code).toBe(1);
    expect(stdout).toBe('');
    expect(stderr.trim().split('\n')).toHaveLength(1);
    expect(stderr).toContain(`[${errorCode}]`);
    expect(stderr).not.toContain('too short');
  });

  describe('without JWT_SECRET, with the secrets hardcron start keeps', () => {
    const kept = { jwtSecret: 'kept-jwt-secret-0123456789abcdef0123456', authenticatorPassword: 'a'.repeat(32), executorPassword: 'e'.repeat(32) };
    let dataDir: string;

    beforeAll(async () => {
      dataDir = await mkdtemp(join(tmpdir(), 'hardcron-token-'));
      await writeFile(join(dataDir, 'secrets.json'), JSON.stringify(kept), { mode: 0o600 });
    });
    afterAll(async () => {
      await rm(dataDir, { recursive: true, force: true });
    });

    test('signs with HARDCRON_DATA_DIR/secrets.json: the server of that data directory accepts the token', async () => {
      const { code, stdout, stderr } = await runCli(['token', 'alice'], { HARDCRON_DATA_DIR: dataDir });
      expect([code, stderr]).toEqual([0, '']);
      const identity = await createTokenVerifier({ secret: kept.jwtSecret }, 'd0')(`Bearer ${stdout.trim()}`);
      expect(identity.role).toBe('d0$alice');
      await expect(createTokenVerifier({ secret: SECRET }, 'd0')(`Bearer ${stdout.trim()}`)).rejects.toBeInstanceOf(Error);
    });

    test('JWT_SECRET wins over the kept secret (as it does in hardcron start)', async () => {
      const { code, stdout } = await runCli(['token', 'alice'], { HARDCRON_DATA_DIR: dataDir, JWT_SECRET: SECRET });
      expect(code).toBe(0);
      expect((await createTokenVerifier({ secret: SECRET }, 'd0')(`Bearer ${stdout.trim()}`)).role).toBe('d0$alice');
      await expect(createTokenVerifier({ secret: kept.jwtSecret }, 'd0')(`Bearer ${stdout.trim()}`)).rejects.toBeInstanceOf(Error);
    });

    test('a data directory without secrets.json is refused with the error naming both, and no secret is made', async () => {
      const { code, stderr } = await runCli(['token', 'alice'], { HARDCRON_DATA_DIR: NO_DATA_DIR });
      expect(code).toBe(1);
      expect(stderr).toContain('JWT_SECRET is not set and there is no');
      expect(stderr).toContain('[HC_CONFIG_MISSING]');
      expect(existsSync(NO_DATA_DIR)).toBe(false);
    });
  });
});
