import { afterAll, beforeAll, describe, expect, test } from 'vitest';
import type { Executor } from '../../server/executor/executor.ts';
import type { RunningGraphQLServer } from '../../server/api/server.ts';
import { useTestDatabase } from '../support/database.ts';
import { finishedRuns, startExecutor } from '../support/executor.ts';
import { createOwner } from '../support/jobs.ts';
import { data, operation, startTestServer, subscribe, tokenFor, wsClient } from '../support/server.ts';

interface RunEvent { jobRunEvents: { id: string; jobId: string; status: string } }

/**
 * Run events over graphql-ws: fed by the executor's NOTIFYs, each re-read through api.job_runs
 * as the subscriber. alice's and bob's jobs run while both are subscribed; forged NOTIFYs on the
 * channel fool nobody; an expired token ends the subscription.
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

  /** A one-off job of `token`'s user, due in a second; returns its id. */
  async function scheduleSoon(token: string, note: string): Promise<string> {
    const { scheduleJob } = await data<{ scheduleJob: { job: { id: string } } }>(server, operation('schedule-job'), {
      functionSignature: token === bob ? 'chores.slow(text)' : 'work.slow(text)',
      arguments: [note],
      runAt: new Date(Date.now() + 1000).toISOString(),
    }, token);
    return scheduleJob.job.id;
  }

  test('alice receives running then succeeded for her job; bob, subscribed to everything, receives only his own', async () => {
    const aliceClient = wsClient(server, alice);
    const bobClient = wsClient(server, bob);
    try {
      const aliceJob = await scheduleSoon(alice, 'alice');
      const aliceEvents = subscribe<RunEvent>(aliceClient, operation('job-run-events'), { jobId: aliceJob });
      const bobEvents = subscribe<RunEvent>(bobClient, operation('job-run-events'));
      await aliceEvents.waitForEvents(2);
      expect(aliceEvents.events.map((e) => [e.jobRunEvents.jobId, e.jobRunEvents.status])).toEqual([
        [aliceJob, 'running'],
        [aliceJob, 'succeeded'],
      ]);

      // bob's job runs after alice's: its events come after hers on the same channel, so had
      // bob been sent alice's, they would be in his list before his own.
      const bobJob = await scheduleSoon(bob, 'bob');
      await bobEvents.waitForEvents(2);
      expect(bobEvents.events.map((e) => [e.jobRunEvents.jobId, e.jobRunEvents.status])).toEqual([
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

  test('forged NOTIFYs on the event channel deliver nothing new, and the subscription carries on', async () => {
    const aliceClient = wsClient(server, alice);
    const bobClient = wsClient(server, bob);
    try {
      const aliceJob = await scheduleSoon(alice, 'first');
      const [run] = await finishedRuns(db(), aliceJob);
      const aliceEvents = subscribe<RunEvent>(aliceClient, operation('job-run-events'));
      const bobEvents = subscribe<RunEvent>(bobClient, operation('job-run-events'));
      // A job (or anyone) can NOTIFY any channel: a real id with a false status, garbage, ids
      // out of range. alice gets her run as it really is (succeeded), once; bob gets nothing.
      const forged = [
        JSON.stringify({ run_id: Number(run?.id), job_id: Number(aliceJob), status: 'failed' }),
        JSON.stringify({ run_id: '99999999999999999999', status: 'running' }),
        JSON.stringify({ run_id: -1 }),
        'not json',
        JSON.stringify({ run_id: { nested: true } }),
      ];
      await new Promise((resolve) => setTimeout(resolve, 500)); // let both subscriptions start listening
      for (const payload of forged) await db().admin.query(`select pg_notify('hardcron_run_events', $1)`, [payload]);
      await aliceEvents.waitForEvents(1);
      expect(aliceEvents.events.map((e) => [e.jobRunEvents.id, e.jobRunEvents.status])).toEqual([[run?.id, 'succeeded']]);

      // Both subscriptions survived the garbage: bob's next real run reaches him, and only it.
      const bobJob = await scheduleSoon(bob, 'after the forgeries');
      await bobEvents.waitForEvents(2);
      expect(bobEvents.events.map((e) => e.jobRunEvents.jobId)).toEqual([bobJob, bobJob]);
      expect(aliceEvents.events).toHaveLength(1);
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

  test('a bad token in connectionParams is refused, and an anonymous subscriber sees no runs', async () => {
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
    const aliceClient = wsClient(server, alice);
    try {
      const anonymous = subscribe<RunEvent>(anonymousClient, operation('job-run-events'));
      const aliceEvents = subscribe<RunEvent>(aliceClient, operation('job-run-events'));
      await new Promise((resolve) => setTimeout(resolve, 500));
      const job = await scheduleSoon(alice, 'watched by nobody else');
      await aliceEvents.waitForEvents(2);
      expect(aliceEvents.events.map((e) => e.jobRunEvents.jobId)).toEqual([job, job]);
      expect(anonymous.events).toEqual([]);
      anonymous.stop();
      aliceEvents.stop();
    } finally {
      await anonymousClient.dispose();
      await aliceClient.dispose();
    }
  });
});
