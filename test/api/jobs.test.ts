import { afterAll, beforeAll, describe, expect, test } from 'vitest';
import type { RunningGraphQLServer } from '../../server/api/server.ts';
import { useTestDatabase } from '../support/database.ts';
import { countRows, createBilling } from '../support/jobs.ts';
import { data, graphql, operation, startTestServer, tokenFor } from '../support/server.ts';

interface JobFields { id: string; name: string; owner: string; functionSignature: string; schedule: string | null; enabled: boolean; nextRunAt: string | null }

/**
 * alice (scheduler, member of $billing) manages her jobs through GraphQL; bob (scheduler, no
 * billing) sees none of them, and each of his attempts on alice's job looks like a missing job.
 */
describe('jobs through GraphQL, as the token\'s user', () => {
  const db = useTestDatabase();
  let server: RunningGraphQLServer;
  let alice: string;
  let bob: string;
  let jobId: string;

  beforeAll(async () => {
    await createBilling(db());
    await db().addUser('alice', { scheduler: true, memberOf: ['billing'] });
    await db().addUser('bob', { scheduler: true });
    server = await startTestServer(db());
    alice = await tokenFor('alice');
    bob = await tokenFor('bob');
  });
  afterAll(async () => {
    await server?.stop();
  });

  test('alice schedules a job with scheduleJob and sees it in jobs and job(id)', async () => {
    const { scheduleJob } = await data<{ scheduleJob: { job: JobFields } }>(server, operation('schedule-job'), {
      functionSignature: 'billing.close_day(date)',
      arguments: ['2026-11-01'],
      schedule: '0 3 * * *',
      name: 'close the day',
      timeZone: 'Europe/Amsterdam',
    }, alice);
    expect(scheduleJob.job).toMatchObject({
      name: 'close the day',
      owner: db().role('alice'), // a job runs as the user who scheduled it
      functionSignature: 'billing.close_day(date)',
      schedule: '0 3 * * *',
      enabled: true,
    });
    expect(scheduleJob.job.nextRunAt).not.toBeNull();
    jobId = scheduleJob.job.id;

    const { jobs } = await data<{ jobs: { totalCount: number; nodes: JobFields[] } }>(server, operation('my-jobs'), {}, alice);
    expect(jobs.totalCount).toBe(1);
    expect(jobs.nodes.map((j) => j.id)).toEqual([jobId]);

    const { job } = await data<{ job: JobFields & { arguments: unknown; runs: { nodes: unknown[] } } }>(server, operation('job-with-runs'), { id: jobId }, alice);
    expect(job).toMatchObject({ id: jobId, arguments: ['2026-11-01'], runs: { nodes: [] } });
  });

  test('the job exists in the database as alice\'s, with nothing else created', async () => {
    const { rows } = await db().admin.query('select owner, function_owner from data.jobs');
    expect(rows).toEqual([{ owner: db().role('alice'), function_owner: db().role('billing') }]);
  });

  test('bob sees an empty list and null for alice\'s job', async () => {
    const { jobs } = await data<{ jobs: { totalCount: number; nodes: unknown[] } }>(server, operation('my-jobs'), {}, bob);
    expect(jobs).toMatchObject({ totalCount: 0, nodes: [] });
    const { job } = await data<{ job: unknown }>(server, operation('job-with-runs'), { id: jobId }, bob);
    expect(job).toBeNull();
  });

  test('every mutation of bob\'s on alice\'s job is "not found", exactly as for a job that does not exist', async () => {
    const mutations: Array<[string, Record<string, unknown>]> = [
      ['update-job', { name: 'mine now' }],
      ['pause-job', {}],
      ['resume-job', {}],
      ['run-job-now', {}],
      ['unschedule-job', {}],
    ];
    for (const [name, variables] of mutations) {
      const foreign = await graphql(server, operation(name), { id: jobId, ...variables }, bob);
      const missing = await graphql(server, operation(name), { id: '999999999', ...variables }, bob);
      expect(foreign.body.errors?.[0]?.extensions?.code, name).toBe('HC211');
      const shape = (body: typeof foreign.body, id: string) => body.errors?.map((e) => [e.message.replace(id, '<id>'), e.extensions]);
      expect(shape(foreign.body, jobId)).toEqual(shape(missing.body, '999999999'));
      expect(JSON.stringify(foreign.body)).not.toContain('billing');
    }
    const { rows } = await db().admin.query('select name, enabled, extra_run_at from data.jobs where id = $1', [jobId]);
    expect(rows).toEqual([{ name: 'close the day', enabled: true, extra_run_at: null }]);
  });

  test('alice pauses, resumes, runs now, updates and unschedules her job', async () => {
    const paused = await data<{ pauseJob: { job: JobFields } }>(server, operation('pause-job'), { id: jobId }, alice);
    expect(paused.pauseJob.job).toMatchObject({ id: jobId, enabled: false, nextRunAt: null });
    const resumed = await data<{ resumeJob: { job: JobFields } }>(server, operation('resume-job'), { id: jobId }, alice);
    expect(resumed.resumeJob.job.enabled).toBe(true);
    const now = await data<{ runJobNow: { job: JobFields } }>(server, operation('run-job-now'), { id: jobId }, alice);
    expect(Date.parse(now.runJobNow.job.nextRunAt ?? '')).toBeLessThanOrEqual(Date.now() + 1000);
    const updated = await data<{ updateJob: { job: JobFields } }>(server, operation('update-job'), { id: jobId, schedule: '*/5 * * * *' }, alice);
    expect(updated.updateJob.job.schedule).toBe('*/5 * * * *');
    const gone = await data<{ unscheduleJob: { unscheduled: boolean } }>(server, operation('unschedule-job'), { id: jobId }, alice);
    expect(gone.unscheduleJob.unscheduled).toBe(true);
    expect(await countRows(db(), 'select from data.jobs')).toBe(0);
  });

  test('a scheduling error reaches the client with hardcron\'s message and code, and leaves nothing', async () => {
    const day = { functionSignature: 'billing.close_day(date)', arguments: ['2026-11-01'] };
    const bad = await graphql(server, operation('schedule-job'), { ...day, schedule: '61 * * * *' }, alice);
    expect(bad.status).toBe(200);
    expect(bad.body.errors?.[0]?.extensions?.code).toBe('HC206');
    expect(bad.body.errors?.[0]?.message).toMatch(/minute/i);
    const foreignFunction = await graphql(server, operation('schedule-job'), { ...day, schedule: '* * * * *' }, bob);
    expect(foreignFunction.body.errors?.[0]?.extensions?.code).toBe('HC203'); // bob is no member of $billing
    expect(await countRows(db(), 'select from data.jobs')).toBe(0);
  });

  test('without a token, the request runs as $anonymous: no jobs, and mutations are refused', async () => {
    const { jobs } = await data<{ jobs: { totalCount: number } }>(server, operation('my-jobs'));
    expect(jobs.totalCount).toBe(0);
    const refused = await graphql(server, operation('schedule-job'), { functionSignature: 'billing.close_day(date)', arguments: ['2026-11-01'], schedule: '* * * * *' });
    expect(refused.body.errors?.[0]?.extensions?.code).toBe('HC_AUTH_REQUIRED');
    expect(refused.body.errors?.[0]?.message).toMatch(/needs a token.*hardcron token/);
    expect(await countRows(db(), 'select from data.jobs')).toBe(0);
  });
});
