import { Writable } from 'node:stream';
import { afterAll, beforeAll, describe, expect, test } from 'vitest';
import { pino } from 'pino';
import type { RunningGraphQLServer } from '../../server/api/server.ts';
import { useTestDatabase } from '../support/database.ts';
import { waitFor } from '../support/executor.ts';
import { countRows, createBilling } from '../support/jobs.ts';
import { graphql, operation, startTestServer, tokenFor } from '../support/server.ts';

/** Snapshot of the server's database sessions: a request that reaches PostgreSQL changes one. */
async function serverSessions(server: RunningGraphQLServer, admin: { query: (sql: string) => Promise<{ rows: unknown[] }> }): Promise<string> {
  const { rows } = await admin.query(`select pid, state, state_change from pg_stat_activity where application_name = 'hardcron server' and datname = current_database() order by pid`);
  return JSON.stringify(rows);
}

/**
 * Denial-of-service guards (GraphQL Armor rules, request size, no batches) refuse before anything
 * reaches PostgreSQL; callers without a token get no field suggestions; internal errors are
 * masked and logged with the request id.
 */
describe('guards of the GraphQL server', () => {
  const db = useTestDatabase();
  let server: RunningGraphQLServer;
  let alice: string;
  const logLines: string[] = [];

  beforeAll(async () => {
    await createBilling(db());
    await db().addUser('alice', { scheduler: true, memberOf: ['billing'] });
    const sink = new Writable({
      write(chunk: Buffer, _encoding, done) {
        logLines.push(chunk.toString());
        done();
      },
    });
    server = await startTestServer(db(), { logger: pino({ level: 'info' }, sink) });
    alice = await tokenFor('alice');
    // Warm the pool and the user cache, so that the refused requests below have nothing to do.
    await graphql(server, operation('my-jobs'), {}, alice);
  });
  afterAll(async () => {
    await server?.stop();
  });

  /** Sends `request`, and asserts that no session of the server's changed meanwhile. */
  async function withoutDatabase<T>(request: () => Promise<T>): Promise<T> {
    // Earlier requests are over once every session of the server is idle.
    await waitFor(db(), `select coalesce(bool_and(state = 'idle'), true) as done from pg_stat_activity
                          where application_name = 'hardcron server' and datname = current_database()`);
    const before = await serverSessions(server, db().admin);
    const result = await request();
    // A window in which work that the request set off after answering would show; it cannot make
    // the test fail on a slow machine, only miss such work.
    await new Promise((resolve) => setTimeout(resolve, 200));
    expect(await serverSessions(server, db().admin)).toBe(before);
    return result;
  }

  /** The HTTP status of an ordinary validation error: the guards' refusals must look the same. */
  async function validationStatus(): Promise<number> {
    return (await graphql(server, '{ jobs { nope } }', {}, alice)).status;
  }

  test('a query 50 levels deep is refused before reaching PostgreSQL', async () => {
    let query = 'id';
    for (let level = 0; level < 30; level++) query = level % 2 === 0 ? `job { ${query} }` : `runs { nodes { ${query} } }`;
    query = `{ jobs { nodes { runs { nodes { ${query} } } } } }`;
    expect(query.split('{').length - 1).toBeGreaterThanOrEqual(50);
    const response = await withoutDatabase(() => graphql(server, query, {}, alice));
    expect(response.status).toBe(await validationStatus());
    expect(response.body.data ?? null).toBeNull();
    expect(response.body.errors?.map((e) => e.message).join(' ')).toMatch(/depth/i);
  });

  test('a query with 1,000 aliases is refused before reaching PostgreSQL', async () => {
    const query = `{ ${Array.from({ length: 1000 }, (_, i) => `a${i}: jobs { totalCount }`).join(' ')} }`;
    const response = await withoutDatabase(() => graphql(server, query, {}, alice));
    expect(response.status).toBe(await validationStatus());
    expect(response.body.data ?? null).toBeNull();
    expect(response.body.errors?.map((e) => e.message).join(' ')).toMatch(/alias/i);
  });

  test('an expensive query (cost) is refused before reaching PostgreSQL', async () => {
    const fields = 'id name owner functionSignature arguments schedule runAt timeZone options enabled nextRunAt lastRunAt lastStatus createdAt updatedAt';
    const runFields = 'id jobId owner scheduledFor startedAt finishedAt status attempt rowsReturned rowsAffected errorSqlstate errorMessage errorDetail errorHint errorContext rejectReason executorId';
    const query = `{ ${Array.from({ length: 19 }, (_, i) => `a${i}: jobs { nodes { ${fields} runs { nodes { ${runFields} job { ${fields} runs { nodes { ${runFields} job { ${fields} } } } } } } } }`).join(' ')} }`;
    const response = await withoutDatabase(() => graphql(server, query, {}, alice));
    expect(response.status).toBe(await validationStatus());
    expect(response.body.data ?? null).toBeNull();
    expect(response.body.errors?.map((e) => e.message).join(' ')).toMatch(/cost/i);
  });

  test('what a frontend asks for is within the limits: 20 jobs, every field, with their 5 recent runs, every field', async () => {
    const fields = 'id name owner functionSignature arguments schedule runAt timeZone options enabled nextRunAt lastRunAt lastStatus createdAt updatedAt';
    const runFields = 'id jobId owner scheduledFor startedAt finishedAt status attempt rowsReturned rowsAffected errorSqlstate errorMessage errorDetail errorHint errorContext rejectReason executorId';
    const response = await graphql(server, `{ jobs(first: 20) { totalCount nodes { ${fields} runs(first: 5) { nodes { ${runFields} } } } } }`, {}, alice);
    expect(response.body.errors).toBeUndefined();
    expect(response.status).toBe(200);
  });

  test('batches (a JSON array of operations) and oversized bodies are refused before reaching PostgreSQL', async () => {
    const batch = await withoutDatabase(() =>
      fetch(`${server.url}/graphql`, {
        method: 'POST',
        headers: { 'content-type': 'application/json', authorization: `Bearer ${alice}` },
        body: JSON.stringify([{ query: '{ jobs { totalCount } }' }, { query: '{ jobs { totalCount } }' }]),
      }),
    );
    expect(batch.status).toBeGreaterThanOrEqual(400);
    const big = await withoutDatabase(() =>
      fetch(`${server.url}/graphql`, {
        method: 'POST',
        headers: { 'content-type': 'application/json', authorization: `Bearer ${alice}` },
        body: JSON.stringify({ query: `{ jobs { totalCount } } # ${'x'.repeat(200_000)}` }),
      }),
    );
    expect(big.status).toBe(413);
  });

  test('no field suggestions for callers without a token; a user gets them', async () => {
    const anonymous = await graphql(server, '{ jbos { totalCount } }');
    expect(anonymous.body.errors?.[0]?.message).toBe('Cannot query field "jbos" on type "Query".');
    const user = await graphql(server, '{ jbos { totalCount } }', {}, alice);
    expect(user.body.errors?.[0]?.message).toMatch(/Did you mean "jobs"/);
    // The anonymous answer is the same after a user's (the validation cache is shared).
    const again = await graphql(server, '{ jbos { totalCount } }');
    expect(again.body.errors?.[0]?.message).not.toMatch(/Did you mean/);
  });

  test('an internal error is masked for the client and logged with the request id', async () => {
    // Sabotage (as superuser): a trigger that fails with an internal-looking error and details.
    await db().admin.query(`
      create function data.sabotage() returns trigger language plpgsql as $$
      begin raise exception 'secret detail of table data.jobs' using errcode = 'XX000'; end $$;
      create trigger sabotage before insert on data.jobs for each row execute function data.sabotage();`);
    try {
      const response = await graphql(server, operation('schedule-job'), {
        functionSignature: 'billing.close_day(date)', arguments: ['2026-11-01'], schedule: '0 3 * * *',
      }, alice);
      const requestId = response.headers.get('x-request-id');
      expect(requestId).toMatch(/^[0-9a-f-]{36}$/);
      const error = response.body.errors?.[0];
      expect(error?.message).toBe(`internal error (request id ${requestId})`);
      expect(error?.extensions).toEqual({ code: 'HC_INTERNAL', requestId });
      expect(JSON.stringify(response.body)).not.toMatch(/secret|data\.jobs|XX000|stack/);
      const logged = logLines.map((line) => JSON.parse(line) as { requestId?: string; err?: { message?: string } }).find((line) => line.requestId === requestId);
      expect(logged?.err?.message).toContain('secret detail of table data.jobs');
      expect(await countRows(db(), 'select from data.jobs')).toBe(0);
    } finally {
      await db().admin.query('drop trigger sabotage on data.jobs; drop function data.sabotage()');
    }
  });
});
