import { afterAll, beforeAll, describe, expect, test } from 'vitest';
import type { RunningGraphQLServer } from '../../server/api/server.ts';
import { useTestDatabase } from '../support/database.ts';
import { createBilling } from '../support/jobs.ts';
import { data, graphql, operation, startTestServer, tokenFor } from '../support/server.ts';

/** The labels of an enum type of schema api, in their order. */
async function enumLabels(db: ReturnType<ReturnType<typeof useTestDatabase>>, type: string): Promise<string[]> {
  const { rows } = await db.admin.query<{ label: string }>(
    `select e.enumlabel as label from pg_catalog.pg_enum e where e.enumtypid = $1::regtype order by e.enumsortorder`,
    [`api.${type}`],
  );
  return rows.map((row) => row.label);
}

/** The values a check constraint of data.job_runs on `column` alone allows (its quoted text literals). */
async function allowedValues(db: ReturnType<ReturnType<typeof useTestDatabase>>, column: string): Promise<string[]> {
  const { rows } = await db.admin.query<{ definition: string }>(
    `select pg_catalog.pg_get_constraintdef(c.oid) as definition
       from pg_catalog.pg_constraint c
      where c.conrelid = 'data.job_runs'::regclass and c.contype = 'c'
        and c.conkey = array[(select a.attnum from pg_catalog.pg_attribute a
                               where a.attrelid = 'data.job_runs'::regclass and a.attname = $1::name)]`,
    [column],
  );
  expect(rows, `one check constraint on data.job_runs.${column}`).toHaveLength(1);
  return [...(rows[0]?.definition ?? '').matchAll(/'([^']*)'::text/g)].map((match) => match[1] as string);
}

interface RunFields {
  id: string;
  status: string;
  trigger: string | null;
  rejectReason: string | null;
  latenessMs: number | null;
  durationMs: number | null;
}

const RUN_FIELDS = 'id status trigger rejectReason latenessMs durationMs';

/**
 * The API's closed sets as GraphQL enums (JobRunStatus, JobRunTrigger, JobRunRejectReason,
 * JobOverlapPolicy, JobMissedPolicy) with the labels of the SQL API, usable in conditions, and
 * durationMs beside latenessMs. The runs are written by hand as the admin, with known times, so
 * that every value is exact and nothing waits on the executor.
 */
describe('enums and durations through GraphQL', () => {
  const db = useTestDatabase();
  let server: RunningGraphQLServer;
  let alice: string;
  let bob: string;
  let jobId: string;
  /** Run ids by what they are. */
  const runs: Record<'succeeded' | 'failed' | 'running' | 'rejected' | 'missed', string> = { succeeded: '', failed: '', running: '', rejected: '', missed: '' };

  beforeAll(async () => {
    await createBilling(db());
    await db().addUser('alice', { scheduler: true, memberOf: ['billing'] });
    await db().addUser('bob', { scheduler: true });
    server = await startTestServer(db());
    alice = await tokenFor('alice');
    bob = await tokenFor('bob');
    const { scheduleJob } = await data<{ scheduleJob: { job: { id: string } } }>(server, operation('schedule-job'), {
      functionSignature: 'billing.close_day(date)',
      arguments: ['2026-11-01'],
      schedule: '0 3 * * *',
      name: 'typed',
      options: { overlap: 'queue', missed: 'all' },
    }, alice);
    jobId = scheduleJob.job.id;
    const insert = async (columns: string, values: string): Promise<string> => {
      const { rows } = await db().admin.query<{ id: string }>(
        `insert into data.job_runs (job_id, owner, function_owner, attempt, ${columns})
         values ($1, $2, $3, 1, ${values}) returning id::text`,
        [jobId, db().role('alice'), db().role('billing')],
      );
      return rows[0]!.id;
    };
    // Scheduled at 10:00:00; each run's start and end are whole milliseconds apart.
    runs.missed = await insert('scheduled_for, status, finished_at, missed_before',
      `'2026-11-01 09:00:00+00', 'missed', '2026-11-01 10:00:00.5+00', '2026-11-01 10:00:00+00'`);
    runs.succeeded = await insert('scheduled_for, status, trigger, started_at, finished_at',
      `'2026-11-01 10:00:00+00', 'succeeded', 'schedule', '2026-11-01 10:00:00.25+00', '2026-11-01 10:00:01.75+00'`);
    runs.failed = await insert('scheduled_for, status, trigger, started_at, finished_at, error_sqlstate',
      `'2026-11-01 11:00:00+00', 'failed', 'run_now', '2026-11-01 11:00:02+00', '2026-11-01 11:00:02.004+00', '22012'`);
    runs.rejected = await insert('scheduled_for, status, trigger, started_at, finished_at, reject_reason',
      `'2026-11-01 12:00:00+00', 'rejected', 'retry', '2026-11-01 12:00:00+00', '2026-11-01 12:00:00+00', 'function_not_eligible'`);
    // The newest run is still running: its start is recorded when it ends.
    runs.running = await insert('scheduled_for, status, trigger', `'2026-11-01 13:00:00+00', 'running', 'catch_up'`);
  });
  afterAll(async () => {
    await server?.stop();
  });

  test('each enum has exactly the values its table allows, in the same order', async () => {
    expect(await enumLabels(db(), 'job_run_status')).toEqual(await allowedValues(db(), 'status'));
    expect(await enumLabels(db(), 'job_run_trigger')).toEqual(await allowedValues(db(), 'trigger'));
    expect(await enumLabels(db(), 'job_run_reject_reason')).toEqual(await allowedValues(db(), 'reject_reason'));
    expect(await enumLabels(db(), 'job_run_status')).toEqual(['running', 'succeeded', 'failed', 'rejected', 'timed_out', 'skipped', 'lost', 'cancelled', 'missed']);
  });

  test('the GraphQL enums carry the SQL labels', async () => {
    const { __schema } = await data<{ __schema: { types: Array<{ name: string; enumValues: Array<{ name: string }> | null }> } }>(
      server,
      '{ __schema { types { name enumValues { name } } } }',
    );
    const values = (name: string): string[] | undefined => __schema.types.find((type) => type.name === name)?.enumValues?.map((value) => value.name);
    expect(values('JobRunStatus')).toEqual(await enumLabels(db(), 'job_run_status'));
    expect(values('JobRunTrigger')).toEqual(await enumLabels(db(), 'job_run_trigger'));
    expect(values('JobRunRejectReason')).toEqual(await enumLabels(db(), 'job_run_reject_reason'));
    expect(values('JobOverlapPolicy')).toEqual(['skip', 'queue', 'allow']);
    expect(values('JobMissedPolicy')).toEqual(['latest', 'all', 'none']);
  });

  test('every overlap and missed value is an option scheduling accepts, read back as the typed fields', async () => {
    for (const overlap of await enumLabels(db(), 'job_overlap_policy')) {
      for (const missed of await enumLabels(db(), 'job_missed_policy')) {
        const { updateJob } = await data<{ updateJob: { job: { options: Record<string, unknown>; overlap: string; missed: string } } }>(
          server,
          'mutation ($id: BigInt!, $options: JSON) { updateJob(input: { jobId: $id, options: $options }) { job { options overlap missed } } }',
          { id: jobId, options: { overlap, missed } },
          alice,
        );
        expect(updateJob.job).toMatchObject({ overlap, missed, options: { overlap, missed } });
      }
    }
    // Back to what the job was scheduled with.
    await data(server, operation('update-job'), { id: jobId, options: { overlap: 'queue', missed: 'all' } }, alice);
  });

  test('runs show status, trigger and reject reason as enums, and their lateness and duration in ms', async () => {
    const { job } = await data<{ job: { overlap: string; missed: string; lastStatus: string; runs: { nodes: RunFields[] } } }>(
      server,
      `query ($id: BigInt!) { job(id: $id) { overlap missed lastStatus runs(orderBy: ID_ASC) { nodes { ${RUN_FIELDS} } } } }`,
      { id: jobId },
      alice,
    );
    expect(job).toEqual({
      overlap: 'queue',
      missed: 'all',
      lastStatus: 'running',
      runs: {
        nodes: [
          { id: runs.missed, status: 'missed', trigger: null, rejectReason: null, latenessMs: null, durationMs: null },
          { id: runs.succeeded, status: 'succeeded', trigger: 'schedule', rejectReason: null, latenessMs: 250, durationMs: 1500 },
          { id: runs.failed, status: 'failed', trigger: 'run_now', rejectReason: null, latenessMs: 2000, durationMs: 4 },
          { id: runs.rejected, status: 'rejected', trigger: 'retry', rejectReason: 'function_not_eligible', latenessMs: 0, durationMs: 0 },
          { id: runs.running, status: 'running', trigger: 'catch_up', rejectReason: null, latenessMs: null, durationMs: null },
        ],
      },
    });
  });

  test('conditions take the enums, as literals and as variables', async () => {
    const byStatus = await data<{ jobRuns: { nodes: Array<{ id: string }> } }>(server, '{ jobRuns(condition: { status: failed }) { nodes { id } } }', {}, alice);
    expect(byStatus.jobRuns.nodes).toEqual([{ id: runs.failed }]);
    const byVariable = await data<{ jobRuns: { nodes: Array<{ id: string }> } }>(
      server,
      'query ($status: JobRunStatus, $trigger: JobRunTrigger) { jobRuns(condition: { status: $status, trigger: $trigger }, orderBy: ID_ASC) { nodes { id } } }',
      { status: 'rejected', trigger: 'retry' },
      alice,
    );
    expect(byVariable.jobRuns.nodes).toEqual([{ id: runs.rejected }]);
    const ofJob = await data<{ job: { runs: { nodes: Array<{ id: string }> } } }>(
      server,
      'query ($id: BigInt!) { job(id: $id) { runs(condition: { rejectReason: function_not_eligible }) { nodes { id } } } }',
      { id: jobId },
      alice,
    );
    expect(ofJob.job.runs.nodes).toEqual([{ id: runs.rejected }]);
    const jobs = await data<{ running: { nodes: Array<{ id: string }> }; idle: { nodes: unknown[] }; queued: { nodes: Array<{ id: string }> } }>(
      server,
      `{ running: jobs(condition: { lastStatus: running }) { nodes { id } }
         idle: jobs(condition: { lastStatus: succeeded }) { nodes { id } }
         queued: jobs(condition: { overlap: queue, missed: all }) { nodes { id } } }`,
      {},
      alice,
    );
    expect(jobs).toEqual({ running: { nodes: [{ id: jobId }] }, idle: { nodes: [] }, queued: { nodes: [{ id: jobId }] } });
  });

  test('ordering by status follows the enum (running, succeeded, failed, rejected, …, missed), not the alphabet', async () => {
    const { jobRuns } = await data<{ jobRuns: { nodes: Array<{ status: string }> } }>(server, '{ jobRuns(orderBy: [STATUS_ASC]) { nodes { status } } }', {}, alice);
    expect(jobRuns.nodes.map((run) => run.status)).toEqual(['running', 'succeeded', 'failed', 'rejected', 'missed']);
  });

  test('a value outside the enum is refused by GraphQL before anything runs', async () => {
    const refused = await graphql(server, '{ jobRuns(condition: { status: finished }) { nodes { id } } }', {}, alice);
    expect(refused.body.data).toBeUndefined();
    expect(refused.body.errors?.[0]?.message).toMatch(/Value "finished" does not exist in "JobRunStatus" enum/);
    const asVariable = await graphql(server, 'query ($s: JobRunStatus) { jobRuns(condition: { status: $s }) { nodes { id } } }', { s: 'FAILED' }, alice);
    expect(asVariable.body.data).toBeUndefined();
    expect(asVariable.body.errors?.[0]?.message).toMatch(/JobRunStatus/);
  });

  test('bob, who may not see the job, finds no run by any condition', async () => {
    const { jobRuns } = await data<{ jobRuns: { totalCount: number } }>(server, '{ jobRuns(condition: { status: failed }) { totalCount } }', {}, bob);
    expect(jobRuns.totalCount).toBe(0);
  });
});
