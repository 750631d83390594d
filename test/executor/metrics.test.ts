import type pg from 'pg';
import { afterAll, beforeAll, describe, expect, test } from 'vitest';
import { eventually, freePort, spawnHardcron, type HardcronProcess } from '../support/child.ts';
import { useTestDatabase } from '../support/database.ts';
import { executorUrl, finishedRuns, runNow } from '../support/executor.ts';
import { createOwner } from '../support/jobs.ts';
import { sampleValue, scrape, type Exposition } from '../support/prometheus.ts';

const RUNS = 3;

/** The executor process (`hardcron executor --http-port`) and its /metrics. */
describe('the executor\'s /metrics', { timeout: 90_000 }, () => {
  const db = useTestDatabase();
  let alice: pg.Client;
  let executor: HardcronProcess | undefined;
  let metricsUrl: string;

  beforeAll(async () => {
    await createOwner(db(), 'jobs', `
      create table jobs.effects (note text);
      create function jobs.note(note text) returns void security definer set search_path = pg_catalog, pg_temp
        language sql as $$ insert into jobs.effects (note) values (note) $$`);
    await db().addUser('alice', { scheduler: true, memberOf: ['jobs'] });
    alice = await db().login('alice');
    executor = spawnHardcron(['executor', '--http-port', String(await freePort()), '--poll-ms', '100'], { EXECUTOR_DATABASE_URL: await executorUrl(db()) });
    const listening = await executor.waitForLog('executor health and metrics listening');
    metricsUrl = `${listening.url as string}/metrics`;
  }, 90_000);

  afterAll(async () => {
    await executor?.kill();
  });

  const succeeded = (metrics: Exposition): number => sampleValue(metrics, 'hardcron_runs_total', { status: 'succeeded' }) ?? 0;
  const count = (metrics: Exposition, name: string): number => {
    const value = sampleValue(metrics, name);
    if (value === undefined) throw new Error(`${name} is missing`);
    return value;
  };

  test('parses as Prometheus text, with the executor\'s metric families', async () => {
    const metrics = await scrape(metricsUrl);
    expect(Object.fromEntries(metrics.types)).toMatchObject({
      hardcron_runs_total: 'counter',
      hardcron_run_lateness_seconds: 'histogram',
      hardcron_run_duration_seconds: 'histogram',
      hardcron_claim_batch_size: 'histogram',
      hardcron_executor_open_connections: 'gauge',
      hardcron_executor_busy_connections: 'gauge',
      hardcron_due_backlog: 'gauge',
    });
    expect(sampleValue(metrics, 'hardcron_due_backlog')).toBe(0);
    // The control connection and one per worker (2 by default).
    expect(sampleValue(metrics, 'hardcron_executor_open_connections')).toBeGreaterThanOrEqual(1);
  });

  test('after runs, hardcron_runs_total{status="succeeded"} grew by exactly the runs that succeeded', async () => {
    const before = await scrape(metricsUrl);
    const succeededBefore = succeeded(before);
    expect(succeededBefore).toBe(0); // absent or 0: nothing ran yet
    const latenessBefore = count(before, 'hardcron_run_lateness_seconds_count');
    const durationBefore = count(before, 'hardcron_run_duration_seconds_count');
    const claimsBefore = count(before, 'hardcron_claim_batch_size_count');

    const jobIds: string[] = [];
    for (let i = 0; i < RUNS; i++) jobIds.push(await runNow(alice, 'jobs.note(text)', [`run ${i}`]));
    for (const jobId of jobIds) await finishedRuns(db(), jobId);
    const { rows } = await db().admin.query<{ status: string; n: number }>(
      'select status, count(*)::int as n from data.job_runs where job_id = any($1::bigint[]) group by status',
      [jobIds],
    );
    expect(rows).toEqual([{ status: 'succeeded', n: RUNS }]);

    // The executor counts a run once its batch has committed: wait for the count to arrive.
    const after = await eventually('the succeeded runs in /metrics', async () => {
      const metrics = await scrape(metricsUrl);
      return succeeded(metrics) >= succeededBefore + RUNS ? metrics : undefined;
    }, 20_000);
    expect(succeeded(after) - succeededBefore).toBe(RUNS);
    expect(sampleValue(after, 'hardcron_runs_total', { status: 'failed' }) ?? 0).toBe(0);
    expect(count(after, 'hardcron_run_lateness_seconds_count') - latenessBefore).toBe(RUNS);
    expect(count(after, 'hardcron_run_duration_seconds_count') - durationBefore).toBe(RUNS);
    expect(count(after, 'hardcron_claim_batch_size_count')).toBeGreaterThan(claimsBefore);
    expect(sampleValue(after, 'hardcron_due_backlog')).toBe(0);
    expect(sampleValue(after, 'hardcron_executor_open_connections')).toBeGreaterThanOrEqual(1);
  });
});
