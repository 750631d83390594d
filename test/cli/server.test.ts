import { randomBytes } from 'node:crypto';
import { afterAll, beforeAll, describe, expect, test } from 'vitest';
import { connectionRefused, freePort, spawnHardcron, type HardcronProcess } from '../support/child.ts';
import { runCli, type CliResult } from '../support/cli.ts';
import { useTestDatabase } from '../support/database.ts';
import { executorUrl } from '../support/executor.ts';
import { sampleValue, scrape, sumOf } from '../support/prometheus.ts';
import { authenticatorUrl, data, graphql, tokenFor } from '../support/server.ts';

const SECRET = `server-cli-${randomBytes(16).toString('hex')}`;

function expectOneLineFailure(result: CliResult, code: string): void {
  expect(result.code).toBe(1);
  expect(result.stdout).toBe('');
  expect(result.stderr).toMatch(new RegExp(`^hardcron: [^\\n]+ \\[${code}\\]\\n$`));
}

describe('hardcron server', { timeout: 60_000 }, () => {
  const db = useTestDatabase();
  const spawned: HardcronProcess[] = [];

  beforeAll(async () => {
    await db().addUser('alice');
  });

  afterAll(async () => {
    await Promise.all(spawned.map((server) => server.kill()));
  });

  test('serves GraphQL, /healthz, /readyz and /metrics as $authenticator, refuses tokens longer than JWT_MAX_TTL, and exits 0 on SIGTERM', { timeout: 90_000 }, async () => {
    const port = await freePort();
    const url = await authenticatorUrl(db());
    const server = spawnHardcron(['server'], { SERVER_DATABASE_URL: url, JWT_SECRET: SECRET, PORT: String(port), JWT_MAX_TTL: '2h' });
    spawned.push(server);
    expect(await server.waitForLog('GraphQL server listening')).toMatchObject({ name: 'hardcron-server', url: `http://127.0.0.1:${port}`, database: db().name });
    const base = `http://127.0.0.1:${port}`;

    const healthz = await fetch(`${base}/healthz`);
    expect([healthz.status, await healthz.json()]).toEqual([200, { status: 'ok' }]);
    const readyz = await fetch(`${base}/readyz`);
    expect([readyz.status, await readyz.json()]).toEqual([200, { status: 'ready' }]);

    const before = await scrape(`${base}/metrics`);
    expect(before.types.get('hardcron_http_requests_total')).toBe('counter');
    expect(sampleValue(before, 'hardcron_http_requests_total', { method: 'GET', route: '/healthz', status: '200' })).toBe(1);
    expect(sampleValue(before, 'hardcron_http_requests_total', { method: 'GET', route: '/readyz', status: '200' })).toBe(1);
    const graphqlBefore = sumOf(before, 'hardcron_http_requests_total', { route: '/graphql' });

    const { jobs } = await data<{ jobs: { totalCount: number } }>({ url: base }, '{ jobs { totalCount } }', {}, await tokenFor('alice', {}, SECRET));
    expect(jobs.totalCount).toBe(0);

    const after = await scrape(`${base}/metrics`);
    expect(sumOf(after, 'hardcron_http_requests_total', { route: '/graphql' })).toBe(graphqlBefore + 1);
    expect(sampleValue(after, 'hardcron_http_requests_total', { method: 'POST', route: '/graphql', status: '200' })).toBe(
      (sampleValue(before, 'hardcron_http_requests_total', { method: 'POST', route: '/graphql', status: '200' }) ?? 0) + 1,
    );
    expect(sumOf(after, 'hardcron_http_request_duration_seconds_count', { route: '/graphql' })).toBe(
      sumOf(before, 'hardcron_http_request_duration_seconds_count', { route: '/graphql' }) + 1,
    );
    expect(sampleValue(after, 'hardcron_server_pool_connections', { state: 'total' })).toBeGreaterThanOrEqual(1);

    // JWT_MAX_TTL reaches the server: a token issued for 3 h (the default 24 h would accept it) is refused.
    const tooLong = await graphql({ url: base }, '{ jobs { totalCount } }', {}, await tokenFor('alice', { exp: Math.floor(Date.now() / 1000) + 3 * 3600 }, SECRET));
    expect([tooLong.status, tooLong.body.errors?.[0]?.extensions?.code]).toEqual([401, 'HC_AUTH_TOKEN_TOO_LONG']);

    server.signal('SIGTERM');
    expect(await server.exited).toEqual({ code: 0, signal: null });
    expect(await connectionRefused(port)).toBe(true);
    expect(server.output).not.toContain(SECRET);
    expect(server.output).not.toContain(decodeURIComponent(new URL(url).password));
  });

  describe('refuses to start, with one line and a code, printing no secret', () => {
    test('without SERVER_DATABASE_URL: HC_CONFIG_MISSING', async () => {
      const result = await runCli(['server'], { JWT_SECRET: SECRET });
      expectOneLineFailure(result, 'HC_CONFIG_MISSING');
      expect(result.stderr).toContain('SERVER_DATABASE_URL is not set');
      expect(result.stderr).not.toContain(SECRET);
    });

    test('with a superuser URL: HC_SUPERUSER_REFUSED', async () => {
      const result = await runCli(['server'], { SERVER_DATABASE_URL: db().adminUrl, JWT_SECRET: SECRET, PORT: String(await freePort()) });
      expectOneLineFailure(result, 'HC_SUPERUSER_REFUSED');
      expect(result.stderr).not.toContain(SECRET);
      const password = decodeURIComponent(new URL(db().adminUrl).password);
      if (password) expect(result.stderr).not.toContain(password);
    });

    test('with a JWT_SECRET shorter than 32 bytes: HC_CONFIG_INVALID', async () => {
      const short = 'short-jwt-secret-value';
      const result = await runCli(['server'], { SERVER_DATABASE_URL: await authenticatorUrl(db()), JWT_SECRET: short, PORT: String(await freePort()) });
      expectOneLineFailure(result, 'HC_CONFIG_INVALID');
      expect(result.stderr).toContain('JWT_SECRET');
      expect(result.stderr).not.toContain(short);
    });

    test('without JWT_SECRET or JWKS_URL: HC_CONFIG_MISSING', async () => {
      const result = await runCli(['server'], { SERVER_DATABASE_URL: await authenticatorUrl(db()), PORT: String(await freePort()) });
      expectOneLineFailure(result, 'HC_CONFIG_MISSING');
      expect(result.stderr).toContain('JWT_SECRET or JWKS_URL is not set');
    });

    test('logging in as another role than $authenticator: HC_CONFIG_INVALID', async () => {
      const url = await executorUrl(db());
      const result = await runCli(['server'], { SERVER_DATABASE_URL: url, JWT_SECRET: SECRET, PORT: String(await freePort()) });
      expectOneLineFailure(result, 'HC_CONFIG_INVALID');
      expect(result.stderr).toContain(`must log in as ${db().role('authenticator')}`);
      expect(result.stderr).not.toContain(decodeURIComponent(new URL(url).password));
    });
  });
});
