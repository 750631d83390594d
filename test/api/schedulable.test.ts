import { afterAll, beforeAll, describe, expect, test } from 'vitest';
import type { RunningGraphQLServer } from '../../server/api/server.ts';
import { useTestDatabase } from '../support/database.ts';
import { countRows, createBilling, createOwner, scheduleJob } from '../support/jobs.ts';
import { data, graphql, startTestServer, tokenFor } from '../support/server.ts';

interface SchedulableFields {
  functionSignature: string;
  functionOwner: string;
  argumentNames: Array<string | null>;
  argumentTypes: string[];
  argumentDefaults: number;
}

const SCHEDULABLE = `query Schedulable {
  schedulableFunctions(orderBy: FUNCTION_SIGNATURE_ASC) {
    totalCount
    nodes { functionSignature functionOwner argumentNames argumentTypes argumentDefaults }
  }
}`;

const ONE_SCHEDULABLE = `query OneSchedulable($signature: String!) {
  schedulableFunction(functionSignature: $signature) { functionSignature argumentTypes }
}`;

const CANCEL_RUN = `mutation CancelRun($id: BigInt!) {
  cancelRun(input: { runId: $id }) { jobRun { id status job { id } } }
}`;

/**
 * alice (scheduler, member of $billing) asks what she may schedule and cancels a run through
 * GraphQL; bob (scheduler, member of $reports) sees only his own functions, and cancelling
 * alice's run is for him what cancelling a missing run is.
 */
describe('schedulableFunctions and cancelRun through GraphQL, as the token\'s user', () => {
  const db = useTestDatabase();
  let server: RunningGraphQLServer;
  let alice: string;
  let bob: string;

  beforeAll(async () => {
    await createBilling(db());
    await createOwner(db(), 'reports', `
      create function reports.weekly(week integer, detailed boolean default false) returns void
        security definer set search_path = pg_catalog, pg_temp language sql as $$ select $$;
      create function reports.unsafe() returns void security definer language sql as $$ select $$`);
    await db().addUser('alice', { scheduler: true, memberOf: ['billing'] });
    await db().addUser('bob', { scheduler: true, memberOf: ['reports'] });
    server = await startTestServer(db());
    alice = await tokenFor('alice');
    bob = await tokenFor('bob');
  });
  afterAll(async () => {
    await server?.stop();
  });

  const ownFunctions = (nodes: SchedulableFields[]): SchedulableFields[] => nodes.filter((node) => !node.functionSignature.startsWith('frames.'));

  test('each user lists the functions they may schedule, with their parameters', async () => {
    const forAlice = await data<{ schedulableFunctions: { totalCount: number; nodes: SchedulableFields[] } }>(server, SCHEDULABLE, {}, alice);
    expect(ownFunctions(forAlice.schedulableFunctions.nodes)).toEqual([
      { functionSignature: 'billing.close_day(date)', functionOwner: db().role('billing'), argumentNames: ['day'], argumentTypes: ['date'], argumentDefaults: 0 },
    ]);
    const forBob = await data<{ schedulableFunctions: { nodes: SchedulableFields[] } }>(server, SCHEDULABLE, {}, bob);
    expect(ownFunctions(forBob.schedulableFunctions.nodes)).toEqual([
      { functionSignature: 'reports.weekly(integer,boolean)', functionOwner: db().role('reports'), argumentNames: ['week', 'detailed'],
        argumentTypes: ['integer', 'boolean'], argumentDefaults: 1 },
    ]);
    // The one row by its signature: bob's function is no row of alice's.
    const mine = await data<{ schedulableFunction: unknown }>(server, ONE_SCHEDULABLE, { signature: 'billing.close_day(date)' }, alice);
    expect(mine.schedulableFunction).toEqual({ functionSignature: 'billing.close_day(date)', argumentTypes: ['date'] });
    const bobs = await data<{ schedulableFunction: unknown }>(server, ONE_SCHEDULABLE, { signature: 'reports.weekly(integer,boolean)' }, alice);
    expect(bobs.schedulableFunction).toBeNull();
  });

  test('without a token nothing is schedulable, and the list is read-only', async () => {
    const anonymous = await data<{ schedulableFunctions: { totalCount: number } }>(server, SCHEDULABLE);
    expect(anonymous.schedulableFunctions.totalCount).toBe(0);
    const mutation = await graphql(server, 'mutation { createSchedulableFunction(input: {}) { clientMutationId } }', {}, alice);
    expect(mutation.body.errors?.[0]?.message).toMatch(/createSchedulableFunction/);
  });

  test('alice cancels her running run; bob\'s attempt on it answers as for a missing run; a finished run answers HC217', async () => {
    const job = await scheduleJob(await db().login('alice'), 'billing.close_day(date)', ['2026-11-01']);
    // A run as a claim leaves it, with no executor to start it: the request waits for one.
    const { rows } = await db().admin.query<{ id: string }>(
      `insert into data.job_runs (job_id, owner, function_owner, scheduled_for, status)
       values ($1, $2, $3, now(), 'running') returning id`, [job.id, db().role('alice'), db().role('billing')]);
    const runId = (rows[0] as { id: string }).id;

    const foreign = await graphql(server, CANCEL_RUN, { id: runId }, bob);
    const missing = await graphql(server, CANCEL_RUN, { id: '999999999' }, bob);
    expect(foreign.body.errors?.[0]?.extensions?.code).toBe('HC211');
    const shape = (body: typeof foreign.body, id: string) => body.errors?.map((e) => [e.message.replace(id, '<id>'), e.extensions]);
    expect(shape(foreign.body, runId)).toEqual(shape(missing.body, '999999999'));
    expect(await countRows(db(), 'select from data.cancel_requests')).toBe(0);

    const cancelled = await data<{ cancelRun: { jobRun: { id: string; status: string; job: { id: string } } } }>(server, CANCEL_RUN, { id: runId }, alice);
    expect(cancelled.cancelRun.jobRun).toEqual({ id: runId, status: 'running', job: { id: job.id } });
    expect(await countRows(db(), 'select from data.cancel_requests where run_id = $1', [runId])).toBe(1);

    await db().admin.query(`update data.job_runs set status = 'cancelled', finished_at = now() where id = $1`, [runId]);
    const finished = await graphql(server, CANCEL_RUN, { id: runId }, alice);
    expect(finished.body.errors?.[0]).toMatchObject({ message: `run ${runId} is not running: it is cancelled`, extensions: { code: 'HC217' } });
  });

  test('without a token cancelRun is refused', async () => {
    const refused = await graphql(server, CANCEL_RUN, { id: '1' });
    expect(refused.body.errors?.[0]?.extensions?.code).toBe('HC_AUTH_REQUIRED');
  });
});
