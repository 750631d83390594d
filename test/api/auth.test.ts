import { KeyObject } from 'node:crypto';
import { createServer, type Server } from 'node:http';
import type { AddressInfo } from 'node:net';
import { exportJWK, exportSPKI, generateKeyPair, SignJWT, type JWK, type JWTHeaderParameters, type JWTPayload } from 'jose';
import { afterAll, beforeAll, describe, expect, test, vi } from 'vitest';
import type { GraphQLServerOptions, RunningGraphQLServer } from '../../server/api/server.ts';
import { ConfigError } from '../../server/errors.ts';
import { runCli } from '../support/cli.ts';
import { useTestDatabase } from '../support/database.ts';
import { countRows, createBilling, setLocalRole, transaction } from '../support/jobs.ts';
import { authenticatorUrl, data, graphql, operation, startTestServer, subscribe, TEST_JWT_SECRET, tokenFor, wsClient, type GraphQLResponse } from '../support/server.ts';

type SigningKey = Awaited<ReturnType<typeof generateKeyPair>>['privateKey'];
type Refusal = readonly [label: string, authorization: () => Promise<string>, code: string];

interface Backend { pid: number; started: string; state: string | null; state_change: string | null; query: string }
interface RoleRow { rolname: string; rolsuper: boolean; rolinherit: boolean; rolcanlogin: boolean; member_of: string[]; members: string[] }

const SCHEDULE = { functionSignature: 'billing.close_day(date)', arguments: ['2026-11-02'], schedule: '*/5 * * * *', name: 'should never exist' };
const SKEW_SECONDS = 30;
/** The default JWT_MAX_TTL: the longest lifetime of a token the server accepts. */
const MAX_TTL_SECONDS = 24 * 3600;
const CENTURY_SECONDS = 100 * 365 * 86400;

function now(): number {
  return Math.floor(Date.now() / 1000);
}

function base64url(value: unknown): string {
  return Buffer.from(JSON.stringify(value)).toString('base64url');
}

/** A token with `alg: none`: header and payload, and an empty signature. */
function unsignedToken(header: Record<string, unknown>, payload: JWTPayload): string {
  return `${base64url(header)}.${base64url(payload)}.`;
}

/** `token` with its payload changed and its header and signature kept. */
function tampered(token: string, change: (payload: JWTPayload) => JWTPayload): string {
  const [header, payload, signature] = token.split('.') as [string, string, string];
  const claims = JSON.parse(Buffer.from(payload, 'base64url').toString('utf8')) as JWTPayload;
  return `${header}.${base64url(change(claims))}.${signature}`;
}

/**
 * Signs `claims` (issued now and valid for an hour unless they say otherwise; `iat: undefined`
 * leaves `iat` out) with `key` under `header`.
 */
function sign(claims: JWTPayload, key: SigningKey | KeyObject | Uint8Array, header: JWTHeaderParameters): Promise<string> {
  return new SignJWT({ iat: now(), exp: now() + 3600, ...claims }).setProtectedHeader(header).sign(key);
}

function bytes(text: string): Uint8Array {
  return new TextEncoder().encode(text);
}

/** A GraphQL POST with exactly this Authorization header (none when undefined). */
async function post(
  server: { url: string },
  authorization: string | undefined,
  query: string,
  variables: Record<string, unknown> = {},
): Promise<GraphQLResponse> {
  const response = await fetch(`${server.url}/graphql`, {
    method: 'POST',
    headers: { 'content-type': 'application/json', accept: 'application/json', ...(authorization !== undefined && { authorization }) },
    body: JSON.stringify({ query, variables }),
  });
  const text = await response.text();
  return { status: response.status, body: JSON.parse(text) as GraphQLResponse['body'], headers: response.headers };
}

/** A 401 answered before GraphQL ran: one error with `code`, no data, a Bearer challenge. */
function expectRefused(response: GraphQLResponse, code: string): void {
  expect({ status: response.status, body: response.body }).toEqual({
    status: 401,
    body: { errors: [{ message: expect.any(String), extensions: { code } }] },
  });
  expect(response.headers.get('www-authenticate')).toBe('Bearer error="invalid_token"');
}

/**
 * Tokens over real HTTP against real servers (each logging in as $authenticator). Every refused
 * token is sent with a scheduleJob mutation that would succeed for its user, and each refusal
 * is checked three ways: the 401 and its code, the server's PostgreSQL backends untouched
 * (pg_stat_activity), and data.jobs, data.job_runs and the roles unchanged.
 */
describe('bearer tokens', () => {
  const db = useTestDatabase();
  let aliceJob: string;
  let rs: { privateKey: SigningKey; publicKey: SigningKey };
  let es: { privateKey: SigningKey; publicKey: SigningKey };
  let rsImpostor: { privateKey: SigningKey; publicKey: SigningKey };

  const alice = (): Promise<string> => tokenFor('alice');
  const bearer = async (token: Promise<string> | string): Promise<string> => `Bearer ${await token}`;

  beforeAll(async () => {
    await createBilling(db());
    await db().addUser('alice', { scheduler: true, memberOf: ['billing'] });
    await db().addUser('bob', { scheduler: true });
    const admin = db().admin;
    // Roles of this database that no token may become: granted to nobody.
    await admin.query(`create role ${admin.escapeIdentifier(db().role('y'))} nologin`);
    await admin.query(`create role ${admin.escapeIdentifier(db().role('stranger'))} nologin`);
    // A probe in schema api: who a GraphQL request runs as, and the claims it was given. PL/pgSQL,
    // so that EXECUTE is checked at every call (PostgreSQL would inline a SQL function into a
    // prepared statement's plan, which the pooled connection reuses for the next role).
    await transaction(db(), `${setLocalRole(db(), 'api')};
      create function api.request_identity() returns jsonb stable language plpgsql
        as $$ begin
          return jsonb_build_object('user', current_user::text,
                                    'claims', nullif(current_setting('request.jwt.claims', true), '')::jsonb);
        end $$;
      grant execute on function api.request_identity() to ${admin.escapeIdentifier(db().role('client'))}, ${admin.escapeIdentifier(db().role('anonymous'))}`);
    // alice's job, scheduled as alice (nothing runs it: no executor in this file).
    await transaction(db(), `${setLocalRole(db(), 'alice')};
      select api.schedule_job('billing.close_day(date)', '["2026-11-01"]', schedule => '0 3 * * *', name => 'close the day')`);
    aliceJob = (await admin.query<{ id: string }>('select id from data.jobs')).rows[0]!.id;
    rs = await generateKeyPair('RS256');
    es = await generateKeyPair('ES256');
    rsImpostor = await generateKeyPair('RS256');
  });

  async function backends(): Promise<Backend[]> {
    const { rows } = await db().admin.query<Backend>(
      `select pid, backend_start::text as started, state, state_change::text as state_change, query
         from pg_catalog.pg_stat_activity
        where datname = current_database() and application_name = 'hardcron server'
        order by pid`,
    );
    return rows;
  }

  /** The servers' backends once all of them are idle (there is at least one). */
  function idleBackends(): Promise<Backend[]> {
    return vi.waitFor(
      async () => {
        const rows = await backends();
        if (rows.length === 0 || rows.some((row) => row.state !== 'idle')) throw new Error(`backends not idle: ${JSON.stringify(rows)}`);
        return rows;
      },
      { timeout: 10_000, interval: 20 },
    );
  }

  /**
   * Runs `work` and proves it sent nothing to PostgreSQL: every backend of the servers is idle
   * before, and afterwards the same backends exist with the same state_change (any statement
   * would have changed it) and no new one appeared. `warmUp` runs valid requests first, so that
   * each pooled connection was just used and the pool's idle timeout (10 s) cannot close one
   * between the two looks.
   */
  async function expectNothingReachesPostgres(warmUp: () => Promise<unknown>, work: () => Promise<void>): Promise<void> {
    await warmUp();
    const before = await idleBackends();
    await work();
    expect(await backends()).toEqual(before);
  }

  async function stopServers(...servers: Array<RunningGraphQLServer | undefined>): Promise<void> {
    for (const server of servers) await server?.stop();
    // Stopping ends the pool: no backend of this database's servers is left.
    await vi.waitFor(
      async () => {
        const rows = await backends();
        if (rows.length > 0) throw new Error(`backends left: ${JSON.stringify(rows)}`);
      },
      { timeout: 10_000, interval: 20 },
    );
  }

  const jobsNow = async (): Promise<unknown[]> => (await db().admin.query('select * from data.jobs order by id')).rows;

  async function rolesNow(): Promise<RoleRow[]> {
    const { rows } = await db().admin.query<RoleRow>(
      `select r.rolname, r.rolsuper, r.rolinherit, r.rolcanlogin,
              array(select g.rolname::text from pg_catalog.pg_auth_members a join pg_catalog.pg_roles g on g.oid = a.roleid
                     where a.member = r.oid order by 1) as member_of,
              array(select m.rolname::text from pg_catalog.pg_auth_members a join pg_catalog.pg_roles m on m.oid = a.member
                     where a.roleid = r.oid order by 1) as members
         from pg_catalog.pg_roles r
        where starts_with(r.rolname, $1)
        order by r.rolname`,
      [`${db().name}$`],
    );
    return rows;
  }

  /** Only alice's job, as it was; no run. */
  async function expectNoTrace(jobsBefore: unknown[]): Promise<void> {
    expect(await jobsNow()).toEqual(jobsBefore);
    expect(jobsBefore).toHaveLength(1);
    expect(await countRows(db(), 'select from data.job_runs')).toBe(0);
  }

  async function myJobIds(server: { url: string }, token: string): Promise<string[]> {
    const { jobs } = await data<{ jobs: { totalCount: number; nodes: Array<{ id: string }> } }>(server, operation('my-jobs'), {}, token);
    expect(jobs.totalCount).toBe(jobs.nodes.length);
    return jobs.nodes.map((job) => job.id);
  }

  /** Tokens that fail before any key is asked about their user; all name alice (or turn bob into her). */
  const refusedTokens = (): Refusal[] => [
    ['expired an hour ago', () => bearer(tokenFor('alice', { exp: now() - 3600 })), 'HC_AUTH_EXPIRED'],
    [`expired 60 s ago (beyond the ${SKEW_SECONDS} s skew)`, () => bearer(tokenFor('alice', { exp: now() - 60 })), 'HC_AUTH_EXPIRED'],
    ['not valid for five more minutes (nbf)', () => bearer(tokenFor('alice', { nbf: now() + 300 })), 'HC_AUTH_NOT_YET_VALID'],
    ['alg none, no signature', async () => `Bearer ${unsignedToken({ alg: 'none' }, { role: 'alice', exp: now() + 3600 })}`, 'HC_AUTH_INVALID'],
    ['alg None, no signature', async () => `Bearer ${unsignedToken({ alg: 'None', typ: 'JWT' }, { role: 'alice', exp: now() + 3600 })}`, 'HC_AUTH_INVALID'],
    ['alg HS256, no signature', async () => `Bearer ${unsignedToken({ alg: 'HS256' }, { role: 'alice', exp: now() + 3600 })}`, 'HC_AUTH_INVALID'],
    ['a valid token with its signature cut off', async () => `Bearer ${(await alice()).replace(/[^.]+$/, '')}`, 'HC_AUTH_INVALID'],
    ['signed with another secret', () => bearer(tokenFor('alice', {}, 'another-secret-0123456789abcdef-0123456789')), 'HC_AUTH_INVALID'],
    ['bob\'s token with role changed to alice', async () => `Bearer ${tampered(await tokenFor('bob'), (claims) => ({ ...claims, role: 'alice' }))}`, 'HC_AUTH_INVALID'],
    ['an expired token given a later exp', async () => `Bearer ${tampered(await tokenFor('alice', { exp: now() - 3600 }), (claims) => ({ ...claims, exp: now() + 3600 }))}`, 'HC_AUTH_INVALID'],
    ['without exp', () => bearer(new SignJWT({ role: 'alice' }).setProtectedHeader({ alg: 'HS256' }).setIssuedAt().sign(bytes(TEST_JWT_SECRET))), 'HC_AUTH_INVALID'],
    ['valid for 100 years', () => bearer(tokenFor('alice', { exp: now() + CENTURY_SECONDS })), 'HC_AUTH_TOKEN_TOO_LONG'],
    [
      `issued for 24 h and ${SKEW_SECONDS + 1} s (just beyond the maximum and the skew)`,
      () => {
        const issued = now();
        return bearer(tokenFor('alice', { iat: issued, exp: issued + MAX_TTL_SECONDS + SKEW_SECONDS + 1 }));
      },
      'HC_AUTH_TOKEN_TOO_LONG',
    ],
    ['without iat, expiring in 100 years', () => bearer(tokenFor('alice', { iat: undefined, exp: now() + CENTURY_SECONDS })), 'HC_AUTH_TOKEN_TOO_LONG'],
    ['without iat, expiring in 25 h', () => bearer(tokenFor('alice', { iat: undefined, exp: now() + MAX_TTL_SECONDS + 3600 })), 'HC_AUTH_TOKEN_TOO_LONG'],
    [
      'issued for an hour that begins in 100 years (iat in the future)',
      () => bearer(tokenFor('alice', { iat: now() + CENTURY_SECONDS - 3600, exp: now() + CENTURY_SECONDS })),
      'HC_AUTH_TOKEN_TOO_LONG',
    ],
    [
      'issued two days ago for 49 h (an hour left)',
      () => {
        const issued = now() - 48 * 3600;
        return bearer(tokenFor('alice', { iat: issued, exp: issued + 49 * 3600 }));
      },
      'HC_AUTH_TOKEN_TOO_LONG',
    ],
    ['HS512 with the right secret', () => bearer(sign({ role: 'alice' }, bytes(TEST_JWT_SECRET), { alg: 'HS512' })), 'HC_AUTH_INVALID'],
    ['RS256 to a server with only the HS256 secret', () => bearer(sign({ role: 'alice' }, rs.privateKey, { alg: 'RS256', kid: 'rsa-1' })), 'HC_AUTH_INVALID'],
    ['ES256 to a server with only the HS256 secret', () => bearer(sign({ role: 'alice' }, es.privateKey, { alg: 'ES256', kid: 'ec-1' })), 'HC_AUTH_INVALID'],
    ['not a JWT', async () => 'Bearer not-a-jwt', 'HC_AUTH_INVALID'],
    ['three parts that are not base64url JSON', async () => 'Bearer a.b.c', 'HC_AUTH_INVALID'],
    ['scheme Basic', async () => `Basic ${Buffer.from('alice:secret').toString('base64')}`, 'HC_AUTH_INVALID'],
    ['scheme Token', async () => `Token ${await alice()}`, 'HC_AUTH_INVALID'],
    ['a token without a scheme', () => alice(), 'HC_AUTH_INVALID'],
    ['Bearer without a token', async () => 'Bearer', 'HC_AUTH_INVALID'],
    ['two bearer tokens', async () => `Bearer ${await alice()}, Bearer ${await alice()}`, 'HC_AUTH_INVALID'],
  ];

  /** Role claims refused as they are; `database` is this file's database (a placeholder while tests are collected). */
  const refusedRoles = (database = db().name): Array<readonly [label: string, role: unknown, code: string]> => [
    ...['mgr', 'data', 'code', 'api', 'client', 'job_scheduler', 'executor', 'authenticator', 'anonymous'].map(
      (role) => [`hardcron's own role ${role}`, role, 'HC_AUTH_ROLE'] as const,
    ),
    ['SQL in the role claim', `x"; drop role "${database}$y"; --`, 'HC_AUTH_ROLE'],
    ['a role claim with a second statement', 'alice; reset role', 'HC_AUTH_ROLE'],
    ['the full role name', `${database}$alice`, 'HC_AUTH_ROLE'],
    ['another database\'s role name', 'd_0_0000000000$alice', 'HC_AUTH_ROLE'],
    ['an array', ['alice'], 'HC_AUTH_ROLE'],
    ['a number', 42, 'HC_AUTH_ROLE'],
    ['null', null, 'HC_AUTH_ROLE'],
    ['an object', { nickname: 'alice' }, 'HC_AUTH_ROLE'],
    ['no role claim', undefined, 'HC_AUTH_ROLE'],
    ['upper case', 'Alice', 'HC_AUTH_ROLE'],
    ['an empty string', '', 'HC_AUTH_ROLE'],
    ['surrounding spaces', ' alice ', 'HC_AUTH_ROLE'],
    ['a NUL byte', 'alice\u0000', 'HC_AUTH_ROLE'],
    ['too long for <db>$ to fit in 63 bytes', 'a'.repeat(63 - database.length), 'HC_AUTH_ROLE'],
  ];

  describe('an HS256 server', () => {
    let server: RunningGraphQLServer;
    let rolesBefore: RoleRow[];
    let jobsBefore: unknown[];
    const warmUp = async (): Promise<void> => {
      expect(await myJobIds(server, await alice())).toEqual([aliceJob]);
    };

    beforeAll(async () => {
      // One pooled connection: each warm-up request uses (and refreshes) it.
      server = await startTestServer(db(), { poolSize: 1 });
      rolesBefore = await rolesNow();
      jobsBefore = await jobsNow();
    });
    afterAll(async () => {
      await stopServers(server);
    });

    test('without a token the request runs as $anonymous: no jobs, and a mutation is refused with HC_AUTH_REQUIRED, saying how to get a token', async () => {
      expect(await myJobIds(server, '')).toEqual([]);
      const refused = await graphql(server, operation('schedule-job'), SCHEDULE);
      expect(refused.status).toBe(200);
      expect(refused.body.errors?.map((error) => error.extensions?.code)).toEqual(['HC_AUTH_REQUIRED']);
      expect(refused.body.errors?.[0]?.message).toMatch(/^this needs a token, and the request had none: send the header "Authorization: Bearer <token>"; get a token with `hardcron token <nickname>`/);
      expect(refused.body.data).toEqual({ scheduleJob: null });
      await expectNoTrace(jobsBefore);
    });

    test('with a valid token alice sees her job, and bob does not', async () => {
      expect(await myJobIds(server, await alice())).toEqual([aliceJob]);
      expect(await myJobIds(server, await tokenFor('bob'))).toEqual([]);
      const { requestIdentity } = await data<{ requestIdentity: { user: string } }>(server, '{ requestIdentity }', {}, await alice());
      expect(requestIdentity.user).toBe(db().role('alice'));
    });

    test(`a token that expired 10 s ago or becomes valid in 10 s is accepted (${SKEW_SECONDS} s clock skew)`, async () => {
      expect(await myJobIds(server, await tokenFor('alice', { exp: now() - 10 }))).toEqual([aliceJob]);
      expect(await myJobIds(server, await tokenFor('alice', { nbf: now() + 10 }))).toEqual([aliceJob]);
    });

    test(`a token issued for the 24 h maximum (or up to ${SKEW_SECONDS} s more: clock skew) is accepted, as is one without iat expiring within it`, async () => {
      const issued = now();
      for (const claims of [
        { iat: issued, exp: issued + MAX_TTL_SECONDS },
        { iat: issued, exp: issued + MAX_TTL_SECONDS + SKEW_SECONDS },
        { iat: issued - 23 * 3600, exp: issued + 3600 },
        { iat: undefined, exp: issued + MAX_TTL_SECONDS - 3600 },
      ]) {
        expect(await myJobIds(server, await tokenFor('alice', claims)), JSON.stringify(claims)).toEqual([aliceJob]);
      }
    });

    test('a token valid for too long is refused with a message that says the maximum and how to get a shorter token', async () => {
      const response = await post(server, await bearer(tokenFor('alice', { exp: now() + CENTURY_SECONDS })), '{ requestIdentity }');
      expectRefused(response, 'HC_AUTH_TOKEN_TOO_LONG');
      expect(response.body.errors?.[0]?.message).toBe(
        'the token is valid for longer than the 24h this server accepts: get a shorter one (hardcron token <nickname> --ttl 24h, or a shorter token lifetime at your identity provider)',
      );
    });

    test('over a websocket whose connectionParams carry a token valid for 100 years, a query and a subscription are refused before PostgreSQL', async () => {
      const client = wsClient(server, await tokenFor('alice', { exp: now() + CENTURY_SECONDS }));
      try {
        await expectNothingReachesPostgres(warmUp, async () => {
          // A query first: it ends either way, so a token wrongly accepted fails here instead of
          // leaving a subscription open that would wait for events.
          const query = subscribe(client, '{ requestIdentity }');
          await query.ended;
          expect([query.events, JSON.stringify(query.errors)]).toEqual([[], expect.stringContaining('HC_AUTH_TOKEN_TOO_LONG')]);
          const subscription = subscribe(client, operation('job-run-events'));
          await subscription.ended;
          expect([subscription.events, JSON.stringify(subscription.errors)]).toEqual([[], expect.stringContaining('HC_AUTH_TOKEN_TOO_LONG')]);
        });
      } finally {
        await client.dispose();
      }
      await expectNoTrace(jobsBefore);
    });

    test.for(refusedTokens().map(([label], index) => [label, index] as const))('refused with 401 before PostgreSQL: %s', async ([label, index]) => {
      const [, authorization, code] = refusedTokens()[index]!;
      const header = await authorization();
      await expectNothingReachesPostgres(warmUp, async () => {
        const response = await post(server, header, operation('schedule-job'), SCHEDULE);
        expectRefused(response, code);
        expect(JSON.stringify(response.body), label).not.toContain('billing');
        expectRefused(await post(server, header, operation('my-jobs')), code);
      });
      await expectNoTrace(jobsBefore);
    });

    describe('role claims', () => {
      test.for(refusedRoles('d_collecting').map(([label], index) => [label, index] as const))('refused with 401 before PostgreSQL: %s', async ([, index]) => {
        const [, role, code] = refusedRoles()[index]!;
        const token = await tokenFor(role);
        await expectNothingReachesPostgres(warmUp, async () => {
          expectRefused(await post(server, `Bearer ${token}`, operation('schedule-job'), SCHEDULE), code);
        });
        await expectNoTrace(jobsBefore);
      });

      test('the longest nickname that fits is a well-formed claim, refused only because no such user exists', async () => {
        const token = await tokenFor('a'.repeat(63 - db().name.length - 1));
        expectRefused(await post(server, `Bearer ${token}`, operation('schedule-job'), SCHEDULE), 'HC_AUTH_UNKNOWN_USER');
        await expectNoTrace(jobsBefore);
      });

      test.for([
        ['a nickname with no role', 'nobody'],
        ['postgres (the cluster\'s superuser is no user of this database)', 'postgres'],
        ['a role of this database that is granted to nobody', 'stranger'],
        ['the role the SQL in a claim tried to drop', 'y'],
      ] as const)('refused with 401 HC_AUTH_UNKNOWN_USER: %s', async ([, role]) => {
        const response = await post(server, `Bearer ${await tokenFor(role)}`, operation('schedule-job'), SCHEDULE);
        expectRefused(response, 'HC_AUTH_UNKNOWN_USER');
        await expectNoTrace(jobsBefore);
      });

      // $billing is granted to alice, not to $authenticator: $authenticator reaches it only
      // through alice's grants (and SET ROLE would allow it), but it is no user.
      test('an owner role that $authenticator reaches only through alice\'s membership is no user either', async () => {
        const response = await post(server, `Bearer ${await tokenFor('billing')}`, '{ requestIdentity }');
        expectRefused(response, 'HC_AUTH_UNKNOWN_USER');
      });

      test('after all of them: the roles of this database and their grants are unchanged, $y still exists, no job and no run was added', async () => {
        expect(await rolesNow()).toEqual(rolesBefore);
        expect(rolesBefore.map((role) => role.rolname)).toContain(db().role('y'));
        await expectNoTrace(jobsBefore);
      });
    });

    test('request.jwt.claims carries the verified claims but decides nothing: bob "impersonating" alice is still bob', async () => {
      const claims = {
        impersonate: 'alice',
        sub: 'alice',
        'jwt.claims.role': 'alice',
        'request.jwt.claims': JSON.stringify({ role: 'alice' }),
        pgSettings: { role: db().role('alice') },
      };
      const bob = await tokenFor('bob', claims);
      const { requestIdentity } = await data<{ requestIdentity: { user: string; claims: Record<string, unknown> } }>(server, '{ requestIdentity }', {}, bob);
      expect(requestIdentity.user).toBe(db().role('bob'));
      expect(requestIdentity.claims).toMatchObject({ role: 'bob', ...claims });

      expect(await myJobIds(server, bob)).toEqual([]);
      const { job } = await data<{ job: unknown }>(server, operation('job-with-runs'), { id: aliceJob }, bob);
      expect(job).toBeNull();
      const pause = await graphql(server, operation('pause-job'), { id: aliceJob }, bob);
      expect(pause.body.errors?.map((error) => error.extensions?.code)).toEqual(['HC211']);
      const schedule = await graphql(server, operation('schedule-job'), SCHEDULE, bob);
      expect(schedule.body.errors?.map((error) => error.extensions?.code)).toEqual(['HC203']); // bob is no member of $billing
      await expectNoTrace(jobsBefore);

      // Without a token there are no claims at all.
      const anonymous = await data<{ requestIdentity: { user: string; claims: unknown } }>(server, '{ requestIdentity }');
      expect(anonymous.requestIdentity).toEqual({ user: db().role('anonymous'), claims: null });
    });
  });

  test('nothing reaches PostgreSQL for any refused token: the server\'s idle backends stay as they were, and no new one opens', async () => {
    // A fresh server with the default pool, warmed up by concurrent requests (several connections).
    const server = await startTestServer(db());
    try {
      const jobsBefore = await jobsNow();
      const rolesBefore = await rolesNow();
      await Promise.all([1, 2, 3, 4].map(async () => expect(await myJobIds(server, await alice())).toEqual([aliceJob])));
      const before = await idleBackends();
      expect(before.length).toBeGreaterThan(0);
      const requests = [
        ...refusedTokens().map(([label, authorization, code]) => ({ label, authorization, code })),
        ...refusedRoles()
          .filter(([, , code]) => code === 'HC_AUTH_ROLE')
          .map(([label, role, code]) => ({ label, authorization: () => bearer(tokenFor(role)), code })),
      ];
      for (const { label, authorization, code } of requests) {
        const response = await post(server, await authorization(), operation('schedule-job'), SCHEDULE);
        expect(response.body.errors?.[0]?.extensions?.code, label).toBe(code);
        expectRefused(response, code);
      }
      // The same backends, untouched since the warm-up, and no other.
      expect(await backends()).toEqual(before);
      await expectNoTrace(jobsBefore);
      expect(await rolesNow()).toEqual(rolesBefore);
    } finally {
      await stopServers(server);
    }
  });

  describe('a JSON Web Key Set (RS256 and ES256)', () => {
    let jwks: Server;
    let jwksUrl: string;
    let jwksRequests = 0;
    let jwksOnly: RunningGraphQLServer;
    let both: RunningGraphQLServer;
    let jobsBefore: unknown[];

    const rsToken = (claims: JWTPayload = { role: 'alice' }): Promise<string> => sign(claims, rs.privateKey, { alg: 'RS256', kid: 'rsa-1' });
    const esToken = (claims: JWTPayload = { role: 'alice' }): Promise<string> => sign(claims, es.privateKey, { alg: 'ES256', kid: 'ec-1' });
    const warmUp = async (): Promise<void> => {
      expect(await myJobIds(jwksOnly, await rsToken())).toEqual([aliceJob]);
      expect(await myJobIds(both, await rsToken())).toEqual([aliceJob]);
    };

    beforeAll(async () => {
      const keys: JWK[] = [
        { ...(await exportJWK(rs.publicKey)), kid: 'rsa-1', alg: 'RS256', use: 'sig' },
        { ...(await exportJWK(es.publicKey)), kid: 'ec-1', alg: 'ES256', use: 'sig' },
      ];
      jwks = createServer((_req, res) => {
        jwksRequests += 1;
        res.writeHead(200, { 'content-type': 'application/json' });
        res.end(JSON.stringify({ keys }));
      });
      await new Promise<void>((resolve) => jwks.listen(0, '127.0.0.1', resolve));
      jwksUrl = `http://127.0.0.1:${(jwks.address() as AddressInfo).port}/.well-known/jwks.json`;
      jwksOnly = await startTestServer(db(), { auth: { jwksUrl }, poolSize: 1 });
      both = await startTestServer(db(), { auth: { jwksUrl, secret: TEST_JWT_SECRET }, poolSize: 1 });
      jobsBefore = await jobsNow();
    });
    afterAll(async () => {
      await stopServers(jwksOnly, both);
      jwks?.closeAllConnections();
      await new Promise<void>((resolve) => (jwks ? jwks.close(() => resolve()) : resolve()));
    });

    test('RS256 and ES256 tokens signed by the set\'s keys work: alice sees her job, bob does not', async () => {
      for (const server of [jwksOnly, both]) {
        expect(await myJobIds(server, await rsToken())).toEqual([aliceJob]);
        expect(await myJobIds(server, await esToken())).toEqual([aliceJob]);
        expect(await myJobIds(server, await esToken({ role: 'bob' }))).toEqual([]);
      }
      expect(jwksRequests).toBeGreaterThan(0);
    });

    test('with both a secret and a key set, HS256 tokens work too; with the key set only, they are refused', async () => {
      expect(await myJobIds(both, await alice())).toEqual([aliceJob]);
      await expectNothingReachesPostgres(warmUp, async () => {
        expectRefused(await post(jwksOnly, await bearer(alice()), operation('schedule-job'), SCHEDULE), 'HC_AUTH_INVALID');
      });
      await expectNoTrace(jobsBefore);
    });

    const forged = (): Refusal[] => [
      ['signed by another RSA key under the same kid', () => bearer(sign({ role: 'alice' }, rsImpostor.privateKey, { alg: 'RS256', kid: 'rsa-1' })), 'HC_AUTH_INVALID'],
      ['signed by another RSA key without a kid', () => bearer(sign({ role: 'alice' }, rsImpostor.privateKey, { alg: 'RS256' })), 'HC_AUTH_INVALID'],
      ['signed by another RSA key under an unknown kid', () => bearer(sign({ role: 'alice' }, rsImpostor.privateKey, { alg: 'RS256', kid: 'rsa-2' })), 'HC_AUTH_INVALID'],
      ['RS256 naming the EC key\'s kid', () => bearer(sign({ role: 'alice' }, rs.privateKey, { alg: 'RS256', kid: 'ec-1' })), 'HC_AUTH_INVALID'],
      ['PS256 with the set\'s RSA key', () => bearer(sign({ role: 'alice' }, KeyObject.from(rs.privateKey), { alg: 'PS256', kid: 'rsa-1' })), 'HC_AUTH_INVALID'],
      [
        'HS256 whose HMAC key is the RSA public key (PEM): key confusion',
        async () => bearer(sign({ role: 'alice' }, bytes(await exportSPKI(rs.publicKey)), { alg: 'HS256', kid: 'rsa-1' })),
        'HC_AUTH_INVALID',
      ],
      ['alg none under the RSA key\'s kid', async () => `Bearer ${unsignedToken({ alg: 'none', kid: 'rsa-1' }, { role: 'alice', exp: now() + 3600 })}`, 'HC_AUTH_INVALID'],
      ['an expired RS256 token', () => bearer(rsToken({ role: 'alice', exp: now() - 3600 })), 'HC_AUTH_EXPIRED'],
      ['an RS256 token without exp', () => bearer(new SignJWT({ role: 'alice' }).setProtectedHeader({ alg: 'RS256', kid: 'rsa-1' }).sign(rs.privateKey)), 'HC_AUTH_INVALID'],
      ['an RS256 token with role changed', async () => `Bearer ${tampered(await rsToken({ role: 'bob' }), (claims) => ({ ...claims, role: 'alice' }))}`, 'HC_AUTH_INVALID'],
      ['an ES256 token naming $mgr', () => bearer(esToken({ role: 'mgr' })), 'HC_AUTH_ROLE'],
      ['an RS256 token valid for 100 years', () => bearer(rsToken({ role: 'alice', exp: now() + CENTURY_SECONDS })), 'HC_AUTH_TOKEN_TOO_LONG'],
      ['an ES256 token without iat, expiring in 25 h', () => bearer(esToken({ role: 'alice', iat: undefined, exp: now() + MAX_TTL_SECONDS + 3600 })), 'HC_AUTH_TOKEN_TOO_LONG'],
    ];

    test('RS256 and ES256 tokens issued for the 24 h maximum, or without iat expiring within it, are accepted', async () => {
      const issued = now();
      for (const server of [jwksOnly, both]) {
        expect(await myJobIds(server, await rsToken({ role: 'alice', iat: issued, exp: issued + MAX_TTL_SECONDS }))).toEqual([aliceJob]);
        expect(await myJobIds(server, await esToken({ role: 'alice', iat: undefined, exp: issued + MAX_TTL_SECONDS - 3600 }))).toEqual([aliceJob]);
      }
    });

    test.for(forged().map(([label], index) => [label, index] as const))('refused by both servers before PostgreSQL: %s', async ([, index]) => {
      const [, authorization, code] = forged()[index]!;
      const header = await authorization();
      await expectNothingReachesPostgres(warmUp, async () => {
        expectRefused(await post(jwksOnly, header, operation('schedule-job'), SCHEDULE), code);
        expectRefused(await post(both, header, operation('schedule-job'), SCHEDULE), code);
      });
      await expectNoTrace(jobsBefore);
    });
  });

  describe('audience and issuer', () => {
    let server: RunningGraphQLServer;
    let jobsBefore: unknown[];
    const right = { aud: 'hardcron', iss: 'https://issuer.test' };
    const warmUp = async (): Promise<void> => {
      expect(await myJobIds(server, await tokenFor('alice', right))).toEqual([aliceJob]);
    };

    beforeAll(async () => {
      server = await startTestServer(db(), { auth: { secret: TEST_JWT_SECRET, audience: 'hardcron', issuer: 'https://issuer.test' }, poolSize: 1 });
      jobsBefore = await jobsNow();
    });
    afterAll(async () => {
      await stopServers(server);
    });

    test('tokens with the right aud and iss are accepted (aud may be a list that includes it)', async () => {
      expect(await myJobIds(server, await tokenFor('alice', right))).toEqual([aliceJob]);
      expect(await myJobIds(server, await tokenFor('alice', { ...right, aud: ['other', 'hardcron'] }))).toEqual([aliceJob]);
      expect(await myJobIds(server, await tokenFor('bob', right))).toEqual([]);
    });

    test.for([
      ['another audience', { ...right, aud: 'other' }],
      ['a list of other audiences', { ...right, aud: ['other', 'hardcron-test'] }],
      ['no audience', { iss: right.iss }],
      ['another issuer', { ...right, iss: 'https://evil.test' }],
      ['the issuer with a trailing slash', { ...right, iss: 'https://issuer.test/' }],
      ['no issuer', { aud: right.aud }],
    ] as const)('refused with 401 HC_AUTH_CLAIM before PostgreSQL: %s', async ([, claims]) => {
      const token = await tokenFor('alice', claims as JWTPayload);
      await expectNothingReachesPostgres(warmUp, async () => {
        expectRefused(await post(server, `Bearer ${token}`, operation('schedule-job'), SCHEDULE), 'HC_AUTH_CLAIM');
      });
      await expectNoTrace(jobsBefore);
    });
  });

  describe('a server with a shorter maximum lifetime (2 h)', () => {
    let server: RunningGraphQLServer;
    let defaultServer: RunningGraphQLServer;
    let jobsBefore: unknown[];
    const warmUp = async (): Promise<void> => {
      expect(await myJobIds(server, await alice())).toEqual([aliceJob]);
      expect(await myJobIds(defaultServer, await alice())).toEqual([aliceJob]);
    };

    beforeAll(async () => {
      server = await startTestServer(db(), { auth: { secret: TEST_JWT_SECRET, maxTtlSeconds: 2 * 3600 }, poolSize: 1 });
      defaultServer = await startTestServer(db(), { poolSize: 1 });
      jobsBefore = await jobsNow();
    });
    afterAll(async () => {
      await stopServers(server, defaultServer);
    });

    test('accepts a token issued for 2 h, and refuses one issued for 3 h (which the default 24 h accepts) before PostgreSQL, naming 2h', async () => {
      expect(await myJobIds(server, await tokenFor('alice', { exp: now() + 2 * 3600 }))).toEqual([aliceJob]);
      const threeHours = await tokenFor('alice', { exp: now() + 3 * 3600 });
      expect(await myJobIds(defaultServer, threeHours)).toEqual([aliceJob]);
      await expectNothingReachesPostgres(warmUp, async () => {
        const response = await post(server, `Bearer ${threeHours}`, operation('schedule-job'), SCHEDULE);
        expectRefused(response, 'HC_AUTH_TOKEN_TOO_LONG');
        expect(response.body.errors?.[0]?.message).toContain('the 2h this server accepts');
        expect(response.body.errors?.[0]?.message).toContain('--ttl 2h');
      });
      await expectNoTrace(jobsBefore);
    });
  });

  describe('start-up refusals', () => {
    /** What starting a server with `options` throws (a server that does start is stopped, and the test fails). */
    async function startupError(options: Partial<GraphQLServerOptions>): Promise<unknown> {
      let server: RunningGraphQLServer;
      try {
        server = await startTestServer(db(), options);
      } catch (error) {
        // The refused server closed its pool: it left no connection behind.
        await stopServers();
        return error;
      }
      await stopServers(server);
      throw new Error(`the server started with ${JSON.stringify(options)}`);
    }

    async function expectStarts(options: Partial<GraphQLServerOptions>): Promise<void> {
      const server = await startTestServer(db(), options);
      await stopServers(server);
    }

    test('an HS256 secret shorter than 32 bytes is refused with HC_CONFIG_INVALID; 32 bytes are enough', async () => {
      const short = 'x'.repeat(31);
      const error = await startupError({ auth: { secret: short } });
      expect(error).toBeInstanceOf(ConfigError);
      expect(error).toMatchObject({ code: 'HC_CONFIG_INVALID', message: expect.stringMatching(/JWT_SECRET must be at least 32 bytes/) });
      expect((error as Error).message).not.toContain(short);
      // 16 characters of two bytes each are 32 bytes: counted in bytes, not characters.
      await expectStarts({ auth: { secret: 'é'.repeat(16) } });
      expect(await startupError({ auth: { secret: 'é'.repeat(15) + 'x' } })).toMatchObject({ code: 'HC_CONFIG_INVALID' });
      await expectStarts({ auth: { secret: 'x'.repeat(32) } });
    });

    test('neither a secret nor a key set is refused with HC_CONFIG_MISSING', async () => {
      const error = await startupError({ auth: {} });
      expect(error).toBeInstanceOf(ConfigError);
      expect(error).toMatchObject({ code: 'HC_CONFIG_MISSING' });
    });

    test('a clock tolerance above 30 s (or negative, or fractional) is refused with HC_CONFIG_INVALID; 30 s is allowed', async () => {
      for (const clockToleranceSeconds of [31, 3600, -1, 1.5]) {
        const error = await startupError({ auth: { secret: TEST_JWT_SECRET, clockToleranceSeconds } });
        expect(error, String(clockToleranceSeconds)).toBeInstanceOf(ConfigError);
        expect(error, String(clockToleranceSeconds)).toMatchObject({ code: 'HC_CONFIG_INVALID' });
      }
      await expectStarts({ auth: { secret: TEST_JWT_SECRET, clockToleranceSeconds: 30 } });
    });

    test('a maximum token lifetime that is not a positive whole number of seconds is refused with HC_CONFIG_INVALID', async () => {
      for (const maxTtlSeconds of [0, -3600, 1.5]) {
        const error = await startupError({ auth: { secret: TEST_JWT_SECRET, maxTtlSeconds } });
        expect(error, String(maxTtlSeconds)).toBeInstanceOf(ConfigError);
        expect(error, String(maxTtlSeconds)).toMatchObject({ code: 'HC_CONFIG_INVALID', message: expect.stringContaining('JWT_MAX_TTL') });
      }
    });

    test('a key set URL that is not http(s) is refused with HC_CONFIG_INVALID', async () => {
      for (const jwksUrl of ['file:///etc/passwd', 'not a url']) {
        const error = await startupError({ auth: { jwksUrl } });
        expect(error, jwksUrl).toBeInstanceOf(ConfigError);
        expect(error, jwksUrl).toMatchObject({ code: 'HC_CONFIG_INVALID' });
      }
    });

    test('a superuser login is refused with HC_SUPERUSER_REFUSED, and another role than $authenticator with HC_CONFIG_INVALID', async () => {
      const superuser = await startupError({ connectionString: db().adminUrl });
      expect(superuser).toBeInstanceOf(ConfigError);
      expect(superuser).toMatchObject({ code: 'HC_SUPERUSER_REFUSED' });

      const admin = db().admin;
      await admin.query(`alter role ${admin.escapeIdentifier(db().role('alice'))} password 'alice-password-1'`);
      const user = await startupError({ connectionString: db().urlFor(db().role('alice'), 'alice-password-1') });
      expect(user).toBeInstanceOf(ConfigError);
      expect(user).toMatchObject({ code: 'HC_CONFIG_INVALID', message: expect.stringContaining(db().role('authenticator')) });
    });

    test('hardcron server with a short JWT_SECRET exits 1 with one line naming the code, no stack trace and no secret', async () => {
      const secret = 'short-but-secret-0123';
      const url = await authenticatorUrl(db());
      const password = decodeURIComponent(new URL(url).password);
      const result = await runCli(['server'], { SERVER_DATABASE_URL: url, JWT_SECRET: secret, PORT: '0' });
      expect(result).toEqual({ code: 1, stdout: '', stderr: 'hardcron: JWT_SECRET must be at least 32 bytes long [HC_CONFIG_INVALID]\n' });
      for (const leak of [secret, password]) {
        expect(result.stdout + result.stderr).not.toContain(leak);
      }
      await stopServers();

      const missing = await runCli(['server'], { SERVER_DATABASE_URL: url, PORT: '0' });
      expect(missing).toMatchObject({ code: 1, stdout: '', stderr: expect.stringMatching(/^hardcron: JWT_SECRET or JWKS_URL is not set[^\n]*\[HC_CONFIG_MISSING\]\n$/) });
      expect(missing.stderr).not.toContain(password);
      await stopServers();
    });
  });
});
