import { afterAll, beforeAll, describe, expect, test } from 'vitest';
import { serverConfig, startConfig } from '../../server/config.ts';
import { ConfigError } from '../../server/errors.ts';
import type { RunningGraphQLServer } from '../../server/api/server.ts';
import { useTestDatabase } from '../support/database.ts';
import { createBilling } from '../support/jobs.ts';
import { startTestServer, tokenFor } from '../support/server.ts';

const APP = 'https://app.example.com';
const DEV = 'http://localhost:5173';
const STRANGER = 'https://evil.example.net';
const QUERY = JSON.stringify({ query: '{ jobs { totalCount } }' });

/** The access-control-* headers of an answer, by lower-case name. */
function corsHeaders(headers: Headers): Record<string, string> {
  return Object.fromEntries([...headers.entries()].filter(([name]) => name.startsWith('access-control-')));
}

/** A GraphQL POST as a page at `origin` sends it (Node's fetch lets a test set Origin; a browser sets it itself). */
function post(server: { url: string }, origin: string | null, token = ''): Promise<Response> {
  return fetch(`${server.url}/graphql`, {
    method: 'POST',
    headers: {
      'content-type': 'application/json',
      accept: 'application/json',
      ...(origin && { origin }),
      ...(token && { authorization: `Bearer ${token}` }),
    },
    body: QUERY,
  });
}

/** The preflight a browser sends before that POST (Authorization and Content-Type are not "simple"). */
function preflight(server: { url: string }, origin: string): Promise<Response> {
  return fetch(`${server.url}/graphql`, {
    method: 'OPTIONS',
    headers: { origin, 'access-control-request-method': 'POST', 'access-control-request-headers': 'authorization,content-type' },
  });
}

/** The HC_CONFIG_INVALID message for CORS_ORIGINS=`value`. */
function refusal(value: string): string {
  try {
    serverConfig({ SERVER_DATABASE_URL: 'postgres://d0%24authenticator:pw@localhost/d0', JWT_SECRET: 'x'.repeat(32), CORS_ORIGINS: value }, {});
  } catch (error) {
    expect(error).toBeInstanceOf(ConfigError);
    expect((error as ConfigError).code).toBe('HC_CONFIG_INVALID');
    return (error as ConfigError).message;
  }
  throw new Error(`CORS_ORIGINS=${value} was accepted`);
}

/**
 * CORS on /graphql: off by default; with CORS_ORIGINS, exactly the listed origins may call it from a
 * browser (preflight answered, Access-Control-Allow-Origin naming the origin, never credentials),
 * and any other origin's preflight is refused. Real servers over HTTP; the answers' headers are
 * what a browser decides by.
 */
describe('CORS', () => {
  const db = useTestDatabase();
  let plain: RunningGraphQLServer;
  let open: RunningGraphQLServer;
  let alice: string;

  beforeAll(async () => {
    await createBilling(db());
    await db().addUser('alice', { scheduler: true, memberOf: ['billing'] });
    alice = await tokenFor('alice');
    plain = await startTestServer(db());
    open = await startTestServer(db(), { corsOrigins: [APP, DEV] });
  });
  afterAll(async () => {
    await plain?.stop();
    await open?.stop();
  });

  test('by default there are no CORS headers: a page of another origin cannot read the answer, nor pass a preflight', async () => {
    const answer = await post(plain, APP, alice);
    expect(answer.status).toBe(200);
    expect(corsHeaders(answer.headers)).toEqual({});
    expect(corsHeaders((await preflight(plain, APP)).headers)).toEqual({});
  });

  test('an allowed origin\'s preflight is answered 204 with the methods and headers GraphQL needs, and no credentials', async () => {
    const answer = await preflight(open, APP);
    expect(answer.status).toBe(204);
    expect(corsHeaders(answer.headers)).toEqual({
      'access-control-allow-origin': APP,
      'access-control-allow-methods': 'GET, POST',
      'access-control-allow-headers': 'Authorization, Content-Type',
      'access-control-max-age': '600',
    });
    expect(answer.headers.get('vary')).toMatch(/\bOrigin\b/);
  });

  test('an allowed origin\'s request gets Access-Control-Allow-Origin naming it, and may read the request id', async () => {
    for (const origin of [APP, DEV]) {
      const answer = await post(open, origin, alice);
      expect(answer.status).toBe(200);
      expect(await answer.json()).toEqual({ data: { jobs: { totalCount: 0 } } });
      expect(corsHeaders(answer.headers)).toEqual({ 'access-control-allow-origin': origin, 'access-control-expose-headers': 'X-Request-Id' });
      expect(answer.headers.get('vary')).toMatch(/\bOrigin\b/);
      expect(answer.headers.get('x-request-id')).toMatch(/^[0-9a-f-]{36}$/);
    }
  });

  test('a refused token\'s 401 carries the CORS headers too, so the page can read HC_AUTH_EXPIRED and sign in again', async () => {
    const expired = await tokenFor('alice', { iat: Math.floor(Date.now() / 1000) - 7200, exp: Math.floor(Date.now() / 1000) - 3600 });
    const answer = await post(open, APP, expired);
    expect(answer.status).toBe(401);
    expect(answer.headers.get('access-control-allow-origin')).toBe(APP);
    expect(((await answer.json()) as { errors: Array<{ extensions: { code: string } }> }).errors[0]?.extensions.code).toBe('HC_AUTH_EXPIRED');
  });

  test('another origin\'s preflight is refused (403, HC_CORS_ORIGIN, no CORS headers), and its requests get no CORS headers', async () => {
    for (const origin of [STRANGER, 'null', `${APP}.evil.example.net`, 'http://app.example.com', `${APP}:8443`]) {
      const refused = await preflight(open, origin);
      expect(refused.status).toBe(403);
      expect(corsHeaders(refused.headers)).toEqual({});
      expect(((await refused.json()) as { errors: Array<{ extensions: { code: string } }> }).errors[0]?.extensions.code).toBe('HC_CORS_ORIGIN');
      const answer = await post(open, origin, alice);
      expect(corsHeaders(answer.headers)).toEqual({});
      expect(answer.headers.get('vary')).toMatch(/\bOrigin\b/);
    }
    // Without an Origin (curl, a server) nothing changes.
    const direct = await post(open, null, alice);
    expect(direct.status).toBe(200);
    expect(corsHeaders(direct.headers)).toEqual({});
  });

  test('only /graphql is shared: GraphiQL and the health endpoints get no CORS headers', async () => {
    for (const path of ['/', '/healthz', '/readyz']) {
      const answer = await fetch(`${open.url}${path}`, { headers: { origin: APP } });
      expect([path, corsHeaders(answer.headers)]).toEqual([path, {}]);
    }
  });

  test('CORS_ORIGINS takes exact origins, with spaces after the commas if you like', () => {
    const config = serverConfig({ SERVER_DATABASE_URL: 'postgres://d0%24authenticator:pw@localhost/d0', JWT_SECRET: 'x'.repeat(32), CORS_ORIGINS: `${APP}, ${DEV}` }, {});
    expect(config.server.corsOrigins).toEqual([APP, DEV]);
    expect(serverConfig({ SERVER_DATABASE_URL: 'postgres://d0%24authenticator:pw@localhost/d0', JWT_SECRET: 'x'.repeat(32) }, {}).server.corsOrigins).toBeUndefined();
    // hardcron start passes it to its server too: a frontend in development may call the demo.
    expect(startConfig({ CORS_ORIGINS: DEV }).server.corsOrigins).toEqual([DEV]);
  });

  test('a bad CORS_ORIGINS is HC_CONFIG_INVALID saying what is wrong, by position, never repeating the value', () => {
    const cases: Array<[string, RegExp]> = [
      ['*', /^CORS_ORIGINS must list exact origins.*entry 1 has a wildcard/],
      [`${APP},https://*.example.com`, /entry 2 has a wildcard/],
      [`${APP}/`, /entry 1 is not written as a browser sends it/],
      [`${APP}/graphql`, /entry 1 is not written as a browser sends it/],
      ['https://App.example.com', /entry 1 is not written as a browser sends it/],
      ['https://app.example.com:443', /entry 1 is not written as a browser sends it/],
      ['app.example.com', /entry 1 is not a URL/],
      ['null', /entry 1 is not a URL/],
      ['ftp://app.example.com', /entry 1 is not http or https/],
      [`${APP},,${DEV}`, /entry 2 is empty/],
      [' ', /entry 1 is empty/],
    ];
    for (const [value, expected] of cases) {
      const message = refusal(value);
      expect([value, message]).toEqual([value, expect.stringMatching(expected)]);
      if (value.trim().length > 1) expect(message).not.toContain(value.trim());
    }
  });

  test('a program passing bad corsOrigins to the server is refused the same way, before anything connects', async () => {
    await expect(startTestServer(db(), { corsOrigins: ['*'] })).rejects.toMatchObject({ code: 'HC_CONFIG_INVALID', message: expect.stringMatching(/^corsOrigins must list exact origins/) });
  });
});
