import { pino } from 'pino';
import { afterAll, describe, expect, test } from 'vitest';
import { startGraphQLServer, type RunningGraphQLServer } from '../../server/api/server.ts';
import { eventually, freePort, spawnHardcron, type HardcronProcess } from '../support/child.ts';
import { useTestDatabase } from '../support/database.ts';
import { executorUrl } from '../support/executor.ts';
import { authenticatorUrl, TEST_JWT_SECRET } from '../support/server.ts';
import { hostAndPort, startTcpProxy, throughProxy, type TcpProxy } from '../support/tcp-proxy.ts';
import { status, untilStatus as untilStatusOf } from '../support/http.ts';

const DEADLINE_MS = 60_000;

const untilStatus = (url: string, wanted: number): Promise<unknown> => untilStatusOf(url, wanted, DEADLINE_MS, 200);

/**
 * PostgreSQL goes away and comes back: a TCP proxy between the process and the shared test
 * cluster drops every connection and refuses new ones, then listens again on the same port.
 */
describe('/readyz follows the database', { timeout: 3 * DEADLINE_MS }, () => {
  const db = useTestDatabase();
  const proxies: TcpProxy[] = [];
  const spawned: HardcronProcess[] = [];
  let server: RunningGraphQLServer | undefined;

  afterAll(async () => {
    await server?.stop().catch(() => {});
    await Promise.all(spawned.map((executor) => executor.kill()));
    await Promise.all(proxies.map((proxy) => proxy.close()));
  });

  test('the GraphQL server: ready, unready while PostgreSQL is away, ready again when it returns', async () => {
    const url = await authenticatorUrl(db());
    const proxy = await startTcpProxy(hostAndPort(url));
    proxies.push(proxy);
    // startTestServer would give $authenticator a new password of its own: the same server,
    // started directly with the URL through the proxy.
    server = await startGraphQLServer({
      connectionString: throughProxy(url, proxy),
      auth: { secret: TEST_JWT_SECRET },
      logger: pino({ level: process.env.TEST_LOG_LEVEL ?? 'silent' }),
      port: 0,
    });
    const readyz = `${server.url}/readyz`;
    expect(await status(readyz)).toEqual({ status: 200, body: { status: 'ready' } });

    await proxy.down();
    expect(await untilStatus(readyz, 503)).toEqual({ status: 'unready', code: 'HC_DATABASE_UNAVAILABLE' });
    expect(await status(`${server.url}/healthz`)).toEqual({ status: 200, body: { status: 'ok' } });

    await proxy.up();
    expect(await untilStatus(readyz, 200)).toEqual({ status: 'ready' });
    expect(proxy.accepted).toBeGreaterThan(1); // it connected again through the proxy
  });

  test('the executor (--http-port): ready, unready while PostgreSQL is away, ready again when it has reconnected', async () => {
    const url = await executorUrl(db());
    const proxy = await startTcpProxy(hostAndPort(url));
    proxies.push(proxy);
    const executor = spawnHardcron(['executor', '--http-port', String(await freePort())], { EXECUTOR_DATABASE_URL: throughProxy(url, proxy) });
    spawned.push(executor);
    const base = (await executor.waitForLog('executor health and metrics listening', DEADLINE_MS)).url as string;

    expect(await status(`${base}/healthz`)).toEqual({ status: 200, body: { status: 'ok' } });
    expect(await status(`${base}/readyz`)).toEqual({ status: 200, body: { status: 'ready' } });

    await proxy.down();
    expect(await untilStatus(`${base}/readyz`, 503)).toEqual({ status: 'unready' });
    expect(await status(`${base}/healthz`)).toEqual({ status: 200, body: { status: 'ok' } });
    const acceptedWhileUp = proxy.accepted;

    await proxy.up();
    expect(await untilStatus(`${base}/readyz`, 200)).toEqual({ status: 'ready' });
    expect(proxy.accepted).toBeGreaterThan(acceptedWhileUp);
    expect(executor.running).toBe(true);

    executor.signal('SIGTERM');
    expect(await executor.exited).toEqual({ code: 0, signal: null });
  });
});
