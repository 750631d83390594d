import { afterAll, beforeAll, describe, expect, test } from 'vitest';
import type { Executor } from '../../server/executor/executor.ts';
import type { RunningGraphQLServer } from '../../server/api/server.ts';
import { useTestDatabase } from '../support/database.ts';
import { finishedRuns, newestEventId, startExecutor } from '../support/executor.ts';
import { createOwner } from '../support/jobs.ts';
import { data, operation, startTestServer, subscribe, tokenFor, wsClient } from '../support/server.ts';

interface RunEvent {
  jobRunEvents: { id: string; runId: string; jobId: string; status: string; at: string; run: { attempt: number } | null };
}

/**
 * Run events over graphql-ws: each subscription reads the event log through api.job_run_events
 * as its subscriber, woken by the executor's (empty) NOTIFYs. alice's and bob's jobs run while
 * both are subscribed; forged NOTIFYs on the channel deliver nothing; an expired token ends the
 * subscription; subscribing needs a token. Subscriptions pass `after` (the newest event id when
 * the test starts) so that what they receive does not depend on when the server has set them up.
 */
describe('jobRunEvents subscriptions', () => {
  const db = useTestDatabase();
  let server: RunningGraphQLServer;
  let executor: Executor;
  let alice: string;
  let bob: string;

  beforeAll(async () => {
    await createOwner(db(), 'work', `
      create table work.done (note text, by_role text default current_user);
      create function work.slow(note text) returns void security definer set search_path = pg_catalog, pg_temp
        language sql as $$ insert into work.done (note) values (note); select pg_sleep(0.3) $$;`);
    // bob's own owner role: members of a function's owner see the jobs calling it.
    await createOwner(db(), 'chores', `
      create function chores.slow(note text) returns void security definer set search_path = pg_catalog, pg_temp
        language sql as $$ select pg_sleep(0.3) $$;`);
    await db().addUser('alice', { scheduler: true, memberOf: ['work'] });
    await db().addUser('bob', { scheduler: true, memberOf: ['chores'] });
    server = await startTestServer(db());
    executor = await startExecutor(db());
    alice = await tokenFor('alice');
    bob = await tokenFor('bob');
  });
  afterAll(async () => {
    await executor?.stop();
    await server?.stop();
  });

  /**
   * A one-off job of `token`'s user, due at once (neither schedule nor runAt: a runAt a second
   * ahead was in the past by the time a busy machine checked it); returns its id. Subscriptions
   * read from `after`, so a run that starts before they subscribe still reaches them.
   */
  async function scheduleNow(token: string, note: string): Promise<string> {
    const { scheduleJob } = await data<{ scheduleJob: { job: { id: string } } }>(server, operation('schedule-job'), {
      functionSignature: token === bob ? 'chores.slow(text)' : 'work.slow(text)',
      arguments: [note],
    }, token);
    return scheduleJob.job.id;
  }

  const statuses = (subscription: { events: RunEvent[] }): string[][] =>
    subscription.events.map((e) => [e.jobRunEvents.jobId, e.jobRunEvents.status]);

  test('alice receives running then succeeded for her job; bob, subscribed to everything, receives only his own', async () => {
    const aliceClient = wsClient(server, alice);
    const bobClient = wsClient(server, bob);
    try {
      const after = await newestEventId(db());
      const aliceJob = await scheduleNow(alice, 'alice');
      const aliceEvents = subscribe<RunEvent>(aliceClient, operation('job-run-events'), { jobId: aliceJob, after });
      const bobEvents = subscribe<RunEvent>(bobClient, operation('job-run-events'), { after });
      await aliceEvents.waitForEvents(2);
      expect(statuses(aliceEvents)).toEqual([
        [aliceJob, 'running'],
        [aliceJob, 'succeeded'],
      ]);
      // The event's own status and time, and its run as it is now (through api.job_runs).
      const [running, succeeded] = aliceEvents.events.map((e) => e.jobRunEvents);
      expect(running?.runId).toBe(succeeded?.runId);
      expect(Number(running?.id)).toBeLessThan(Number(succeeded?.id));
      expect(Date.parse(running?.at ?? '')).toBeLessThanOrEqual(Date.parse(succeeded?.at ?? ''));
      expect(succeeded?.run).toEqual(expect.objectContaining({ attempt: 1 }));

      // bob's job runs after alice's: its events come after hers in the log, so had bob been
      // sent alice's, they would be in his list before his own.
      const bobJob = await scheduleNow(bob, 'bob');
      await bobEvents.waitForEvents(2);
      expect(statuses(bobEvents)).toEqual([
        [bobJob, 'running'],
        [bobJob, 'succeeded'],
      ]);
      expect(aliceEvents.events).toHaveLength(2);
      expect(aliceEvents.errors).toEqual([]);
      expect(bobEvents.errors).toEqual([]);
      aliceEvents.stop();
      bobEvents.stop();
    } finally {
      await aliceClient.dispose();
      await bobClient.dispose();
    }
  });

  test('forged NOTIFYs on the event channel deliver nothing, and the subscription carries on', async () => {
    const aliceClient = wsClient(server, alice);
    const bobClient = wsClient(server, bob);
    try {
      const firstJob = await scheduleNow(alice, 'first');
      const [run] = await finishedRuns(db(), firstJob);
      const after = await newestEventId(db());
      const aliceEvents = subscribe<RunEvent>(aliceClient, operation('job-run-events'), { after });
      const bobEvents = subscribe<RunEvent>(bobClient, operation('job-run-events'), { after });
      // Anyone can NOTIFY any channel: the old payload naming a real run with a false status,
      // garbage, ids out of range. A notification only makes the server look at the log.
      const forged = [
        JSON.stringify({ run_id: Number(run?.id), job_id: Number(firstJob), status: 'failed' }),
        JSON.stringify({ run_id: '99999999999999999999', status: 'running' }),
        JSON.stringify({ run_id: -1 }),
        'not json',
        '',
      ];
      for (const payload of forged) await db().admin.query(`select pg_notify('hardcron_run_events', $1)`, [payload]);

      // Both subscriptions survived the forgeries: bob's next real run reaches him, and only it;
      // alice receives her next run, not the first one again.
      const bobJob = await scheduleNow(bob, 'after the forgeries');
      await bobEvents.waitForEvents(2);
      expect(statuses(bobEvents)).toEqual([
        [bobJob, 'running'],
        [bobJob, 'succeeded'],
      ]);
      const secondJob = await scheduleNow(alice, 'second');
      await aliceEvents.waitForEvents(2);
      expect(statuses(aliceEvents)).toEqual([
        [secondJob, 'running'],
        [secondJob, 'succeeded'],
      ]);
      expect(bobEvents.events).toHaveLength(2);
      expect([...aliceEvents.errors, ...bobEvents.errors]).toEqual([]);
      aliceEvents.stop();
      bobEvents.stop();
    } finally {
      await aliceClient.dispose();
      await bobClient.dispose();
    }
  });

  test('a subscription ends when its token expires, and delivers nothing after', async () => {
    const shortLived = await tokenFor('alice', { exp: Math.floor(Date.now() / 1000) + 3 });
    const client = wsClient(server, shortLived);
    try {
      const events = subscribe<RunEvent>(client, operation('job-run-events'));
      await events.ended;
      expect(events.events).toEqual([]);
      // Still within the 30 s clock skew the server tolerates: accepted, but it ends at once.
      const lateClient = wsClient(server, shortLived);
      try {
        const late = subscribe<RunEvent>(lateClient, operation('job-run-events'));
        await late.ended;
        expect([late.events, late.errors]).toEqual([[], []]);
      } finally {
        await lateClient.dispose();
      }
      // Expired beyond the skew: refused.
      const expired = await tokenFor('alice', { exp: Math.floor(Date.now() / 1000) - 60 });
      const expiredClient = wsClient(server, expired);
      try {
        const refused = subscribe<RunEvent>(expiredClient, operation('job-run-events'));
        await refused.ended;
        expect(JSON.stringify(refused.errors)).toContain('expired');
      } finally {
        await expiredClient.dispose();
      }
    } finally {
      await client.dispose();
    }
  });

  test('a bad token in connectionParams is refused, and so is a subscriber without a token', async () => {
    const forged = `${alice.slice(0, -4)}AAAA`;
    const badClient = wsClient(server, forged);
    try {
      const bad = subscribe<RunEvent>(badClient, operation('job-run-events'));
      await bad.ended;
      expect(JSON.stringify(bad.errors)).toMatch(/invalid|signature|token/i);
    } finally {
      await badClient.dispose();
    }

    const anonymousClient = wsClient(server);
    try {
      const anonymous = subscribe<RunEvent>(anonymousClient, operation('job-run-events'), { after: '0' });
      await anonymous.ended;
      expect(anonymous.events).toEqual([]);
      expect(anonymous.errors).toEqual([
        expect.objectContaining({ message: expect.stringMatching(/need a token/), extensions: { code: 'HC_AUTH_REQUIRED' } }),
      ]);
    } finally {
      await anonymousClient.dispose();
    }
  });

  test.each([
    [{ jobId: 'abc' }, 'jobId'],
    [{ after: '-1' }, 'after'],
    [{ after: '99999999999999999999' }, 'after'],
  ])('arguments that are not ids are refused with HC_BAD_ARGUMENT: %j', async (variables, name) => {
    const client = wsClient(server, alice);
    try {
      const refused = subscribe<RunEvent>(client, operation('job-run-events'), variables);
      await refused.ended;
      expect(refused.events).toEqual([]);
      expect(refused.errors).toEqual([
        expect.objectContaining({ message: expect.stringContaining(`${name} must be an id`), extensions: { code: 'HC_BAD_ARGUMENT' } }),
      ]);
    } finally {
      await client.dispose();
    }
  });
});
