import type pg from 'pg';
import { afterEach, beforeAll, describe, expect, test, vi } from 'vitest';
import type { RunningGraphQLServer } from '../../server/api/server.ts';
import { useTestDatabase } from '../support/database.ts';
import { createBilling } from '../support/jobs.ts';
import { failIfAnyoneWaits, heldAdvisoryLocks, holdOldAdvisoryKeys, waitForLockWaiters } from '../support/locks.ts';
import { data, graphql, operation, startTestServer, subscribe, tokenFor, wsClient, type GraphQLResponse } from '../support/server.ts';

interface GraphQLErrorLike {
  message: string;
  extensions?: Record<string, unknown>;
}

const SERVER_SESSIONS = `a.application_name = 'hardcron server'`;
const SCHEDULE = { functionSignature: 'billing.close_day(date)', arguments: ['2026-11-01'], schedule: '0 3 * * *' };

/**
 * What one user can take from the server, attacked as that user over real connections: advisory
 * keys stall nobody, a lock another user holds costs a request its lock timeout (HC_LOCK_TIMEOUT),
 * a statement that runs long its statement timeout (HC_TIMEOUT), and a user whose requests all
 * block holds its share of the pool only, while other users' requests go through.
 */
describe('limits of the GraphQL server', () => {
  const db = useTestDatabase();
  let alice: string;
  let bob: string;
  let mallory: string;
  let malloryPsql: pg.Client;
  let server: RunningGraphQLServer | undefined;

  beforeAll(async () => {
    await createBilling(db());
    await db().addUser('alice', { scheduler: true, memberOf: ['billing'] });
    await db().addUser('bob', { scheduler: true, memberOf: ['billing'] });
    // Mallory, like bob, may schedule billing's functions, and (as a member of their owner) alter them.
    await db().addUser('mallory', { scheduler: true, memberOf: ['billing'] });
    alice = await tokenFor('alice');
    bob = await tokenFor('bob');
    mallory = await tokenFor('mallory');
    malloryPsql = await db().login('mallory');
  });

  afterEach(async () => {
    await malloryPsql.query('rollback');
    await malloryPsql.query('select pg_advisory_unlock_all()');
    await server?.stop();
    server = undefined;
  });

  const scheduleAsBob = (on: RunningGraphQLServer): Promise<GraphQLResponse<{ scheduleJob: { job: { owner: string } } | null }>> =>
    graphql(on, operation('schedule-job'), SCHEDULE, bob);

  const jobsOfBob = async (): Promise<number> =>
    (await db().admin.query<{ n: number }>('select count(*)::int as n from data.jobs where owner = $1', [db().role('bob')])).rows[0]?.n ?? -1;

  test('mallory holds every advisory key hardcron used, in her own psql session: bob\'s scheduleJob does not wait for them', async () => {
    server = await startTestServer(db());
    const keys = await holdOldAdvisoryKeys(malloryPsql, ['alice', 'bob', 'mallory'].map((nickname) => db().role(nickname)));

    // If a session of the server is ever seen waiting for a lock, the test fails right there.
    const watch = failIfAnyoneWaits(db(), SERVER_SESSIONS);
    try {
      const response = await Promise.race([scheduleAsBob(server), watch.failed]);
      expect(response.body.errors).toBeUndefined();
      expect(response.body.data?.scheduleJob?.job.owner).toBe(db().role('bob'));
    } finally {
      watch.stop();
    }
    expect(await heldAdvisoryLocks(db(), malloryPsql)).toBe(keys); // she held them throughout
  });

  /** Mallory, a member of the function's owner, alters it in an open transaction: its pg_proc row stays locked. */
  async function malloryLocksTheFunction(): Promise<void> {
    await malloryPsql.query('begin');
    await malloryPsql.query('alter function billing.close_day(date) security definer');
  }

  test('a lock bob\'s mutation needs, held by another user, fails it with HC_LOCK_TIMEOUT instead of holding a connection for as long as she likes', async () => {
    server = await startTestServer(db(), { lockTimeoutMs: 200, statementTimeoutMs: 120_000, poolSize: 2 });
    const before = await jobsOfBob();
    await malloryLocksTheFunction();
    const response = await scheduleAsBob(server);
    expect(response.body.data?.scheduleJob ?? null).toBeNull();
    expect(response.body.errors?.[0]?.extensions?.code).toBe('HC_LOCK_TIMEOUT');
    expect(response.body.errors?.[0]?.message).toMatch(/waited longer than 200 ms for a lock that another transaction holds/);
    expect(await jobsOfBob()).toBe(before);
  });

  test('a statement that runs longer than the statement timeout (here: waiting for that lock) fails with HC_TIMEOUT', async () => {
    server = await startTestServer(db(), { statementTimeoutMs: 200, lockTimeoutMs: 120_000, poolSize: 2 });
    const before = await jobsOfBob();
    await malloryLocksTheFunction();
    const response = await scheduleAsBob(server);
    expect(response.body.data?.scheduleJob ?? null).toBeNull();
    expect(response.body.errors?.[0]?.extensions?.code).toBe('HC_TIMEOUT');
    expect(response.body.errors?.[0]?.message).toMatch(/ran longer than the 200 ms a statement may take/);
    expect(await jobsOfBob()).toBe(before);
  });

  test('mallory\'s requests, all blocked on her own row lock, hold her share of the pool only: alice\'s { jobs } goes through meanwhile; past her queue, HC_BUSY', async () => {
    // A pool of 4: mallory's share is 1 connection, and 2 more of her requests may wait for it.
    // The timeouts are long, so her blocked requests stay blocked while alice asks.
    server = await startTestServer(db(), { poolSize: 4, queuedPerUser: 2, lockTimeoutMs: 120_000, statementTimeoutMs: 120_000 });
    const running = server;
    const { scheduleJob } = await data<{ scheduleJob: { job: { id: string } } }>(running, operation('schedule-job'), SCHEDULE, mallory);
    const jobId = scheduleJob.job.id;
    await malloryPsql.query('begin');
    await malloryPsql.query('select * from api.pause_job($1)', [jobId]); // her job's row stays locked

    // Six pauses of that job, three over HTTP and three over a websocket: all the same user.
    const outcomes: Array<GraphQLErrorLike[] | 'ok'> = [];
    const settle = (errors: readonly GraphQLErrorLike[] | undefined): void => {
      outcomes.push(errors && errors.length > 0 ? [...errors] : 'ok');
    };
    const http = [1, 2, 3].map(() => graphql(running, operation('pause-job'), { id: jobId }, mallory).then((r) => settle(r.body.errors)));
    const ws = wsClient(running, mallory);
    try {
      const subscriptions = [1, 2, 3].map(() => subscribe<unknown>(ws, operation('pause-job'), { id: jobId }));
      const overWs = subscriptions.map((s) => s.ended.then(() => settle(s.errors as GraphQLErrorLike[])));

      // One of them runs (and waits for her lock), two wait in her line, three are refused.
      await waitForLockWaiters(db(), SERVER_SESSIONS);
      await vi.waitFor(() => expect(outcomes).toHaveLength(3), { timeout: 20_000, interval: 20 });
      for (const outcome of outcomes) {
        expect(outcome).not.toBe('ok');
        expect((outcome as GraphQLErrorLike[])[0]?.extensions?.code).toBe('HC_BUSY');
        expect((outcome as GraphQLErrorLike[])[0]?.message).toMatch(/too many requests of yours are running at once/);
      }

      // Alice is another user: her query gets a connection while mallory's requests are still blocked.
      const { jobs } = await data<{ jobs: { totalCount: number } }>(running, '{ jobs { totalCount } }', {}, alice);
      expect(jobs.totalCount).toBeGreaterThanOrEqual(0);
      expect(outcomes).toHaveLength(3);
      await waitForLockWaiters(db(), SERVER_SESSIONS); // still there

      // Mallory lets go: her three remaining requests complete.
      await malloryPsql.query('commit');
      await Promise.all([...http, ...overWs]);
      expect(outcomes.filter((outcome) => outcome === 'ok')).toHaveLength(3);
    } finally {
      await ws.dispose();
    }
  });
});
