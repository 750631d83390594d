import { afterAll, beforeAll, describe, expect, test } from 'vitest';
import type { RunningGraphQLServer } from '../../server/api/server.ts';
import { useTestDatabase } from '../support/database.ts';
import { createBilling } from '../support/jobs.ts';
import { graphql, startTestServer, subscribe, tokenFor, wsClient } from '../support/server.ts';

interface Answer {
  status: number;
  errors: Array<{ message: string; path?: unknown; extensions?: Record<string, unknown> }>;
}

/** A raw request to /graphql: its status and its errors (every answer here must be JSON). */
async function raw(server: { url: string }, init: RequestInit, query = ''): Promise<Answer> {
  const response = await fetch(`${server.url}/graphql${query}`, init);
  const text = await response.text();
  const body = JSON.parse(text) as { errors?: Answer['errors'] };
  return { status: response.status, errors: body.errors ?? [] };
}

/** The codes of a GraphQL answer's errors. */
function codes(answer: { errors?: Array<{ extensions?: Record<string, unknown> }> | undefined }): unknown[] {
  return (answer.errors ?? []).map((error) => error.extensions?.code);
}

const JSON_POST = { method: 'POST', headers: { 'content-type': 'application/json', accept: 'application/graphql-response+json' } };

/**
 * Every error a client receives carries an extensions.code that says what kind of trouble it is
 * (docs/errors.md, "In a GraphQL client"), including the errors GraphQL, grafast and grafserv
 * make themselves, and a value the client got wrong is never an internal error.
 */
describe('error codes a GraphQL client can act on', () => {
  const db = useTestDatabase();
  let server: RunningGraphQLServer;
  let alice: string;
  let carol: string;

  beforeAll(async () => {
    await createBilling(db());
    await db().addUser('alice', { scheduler: true, memberOf: ['billing'] });
    await db().addUser('carol'); // not a scheduler
    server = await startTestServer(db(), { maxRequestBytes: 2_000 });
    alice = await tokenFor('alice');
    carol = await tokenFor('carol');
  });
  afterAll(async () => {
    await server?.stop();
  });

  test('a document that does not parse or validate: HC_GRAPHQL_INVALID, nothing run', async () => {
    for (const query of [
      '{ jobs ',
      '{ nope }',
      '{ jobRuns(condition: { status: finished }) { nodes { id } } }',
      'query A { __typename } query B { __typename }',
      '{ jobs { nodes { runs { nodes { job { runs { nodes { job { runs { nodes { job { id } } } } } } } } } } } }',
    ]) {
      const answer = await graphql(server, query, {}, alice);
      expect([query, answer.status, codes(answer.body), answer.body.data]).toEqual([query, 200, ['HC_GRAPHQL_INVALID'], undefined]);
    }
    // With the GraphQL-over-HTTP media type the status says it too; a missing variable is the same kind.
    const strict = await raw(server, { ...JSON_POST, body: JSON.stringify({ query: 'query ($id: BigInt!) { job(id: $id) { id } }' }) });
    expect(strict).toMatchObject({ status: 400, errors: [{ extensions: { code: 'HC_GRAPHQL_INVALID' } }] });
    // Callers without a token still get no suggestions, and the code.
    const anonymous = await graphql(server, '{ jbos { totalCount } }');
    expect(anonymous.body.errors).toEqual([expect.objectContaining({ message: 'Cannot query field "jbos" on type "Query".', extensions: { code: 'HC_GRAPHQL_INVALID' } })]);
  });

  test('over a websocket too', async () => {
    const client = wsClient(server, alice);
    try {
      const subscription = subscribe(client, 'subscription { jobRunEvents { nope } }');
      await subscription.ended;
      expect(JSON.stringify(subscription.errors)).toContain('HC_GRAPHQL_INVALID');
    } finally {
      await client.dispose();
    }
  });

  test('a request /graphql does not take: HC_BAD_REQUEST with the HTTP status that says why', async () => {
    const cases: Array<[string, Answer['status'], RequestInit, string?]> = [
      ['not JSON', 400, { ...JSON_POST, body: '{not json' }],
      ['no query', 400, { ...JSON_POST, body: '{}' }],
      ['a batch', 400, { ...JSON_POST, body: JSON.stringify([{ query: '{ __typename }' }]) }],
      ['too large', 413, { ...JSON_POST, body: JSON.stringify({ query: `{ __typename } # ${'x'.repeat(3_000)}` }) }],
      ['plain text', 415, { method: 'POST', headers: { 'content-type': 'text/plain' }, body: '{ __typename }' }],
      ['GET', 405, { method: 'GET', headers: { accept: 'application/json' } }, `?query=${encodeURIComponent('{ __typename }')}`],
      ['no JSON accepted', 406, { ...JSON_POST, headers: { 'content-type': 'application/json', accept: 'application/xml' }, body: JSON.stringify({ query: '{ __typename }' }) }],
    ];
    for (const [name, status, init, query] of cases) {
      const answer = await raw(server, init, query);
      expect([name, answer.status, codes(answer)]).toEqual([name, status, ['HC_BAD_REQUEST']]);
    }
  });

  test('a value the client got wrong is HC_BAD_ARGUMENT with what was wrong, not an internal error', async () => {
    const cases: Array<[string, Record<string, unknown>, RegExp]> = [
      ['query ($id: BigInt!) { job(id: $id) { id } }', { id: 'abc' }, /invalid input syntax for type bigint: "abc"/],
      ['query ($id: BigInt!) { job(id: $id) { id } }', { id: '99999999999999999999999' }, /out of range for type bigint/],
      ['{ jobs(first: -1) { nodes { id } } }', {}, /^first, last and offset must not be negative$/],
      ['{ jobs(offset: -5) { nodes { id } } }', {}, /^first, last and offset must not be negative$/],
      ['{ jobs(after: "zzz") { nodes { id } } }', {}, /Invalid cursor/],
      [
        'mutation ($at: Datetime) { scheduleJob(input: { functionSignature: "billing.close_day(date)", arguments: ["2026-01-01"], runAt: $at }) { job { id } } }',
        { at: 'not a date' },
        /invalid input syntax for type timestamp with time zone: "not a date"/,
      ],
    ];
    for (const [query, variables, message] of cases) {
      const answer = await graphql(server, query, variables, alice);
      expect([query, codes(answer.body)]).toEqual([query, ['HC_BAD_ARGUMENT']]);
      expect(answer.body.errors?.[0]?.message).toMatch(message);
    }
  });

  test('hardcron\'s own refusals keep their codes: HC211, HC204, HC_AUTH_REQUIRED, HC_AUTH_EXPIRED', async () => {
    const missing = await graphql(server, 'mutation { pauseJob(input: { jobId: "999" }) { job { id } } }', {}, alice);
    expect(codes(missing.body)).toEqual(['HC211']);
    const notScheduler = await graphql(server, 'mutation { scheduleJob(input: { functionSignature: "billing.close_day(date)", arguments: ["2026-01-01"] }) { job { id } } }', {}, carol);
    expect(codes(notScheduler.body)).toEqual(['HC204']);
    const anonymous = await graphql(server, 'mutation { pauseJob(input: { jobId: "999" }) { job { id } } }');
    expect(codes(anonymous.body)).toEqual(['HC_AUTH_REQUIRED']);
    const expired = await graphql(server, '{ jobs { totalCount } }', {}, await tokenFor('alice', { iat: Math.floor(Date.now() / 1000) - 7200, exp: Math.floor(Date.now() / 1000) - 3600 }));
    expect([expired.status, codes(expired.body)]).toEqual([401, ['HC_AUTH_EXPIRED']]);
  });
});
