import { spawn, type ChildProcess } from 'node:child_process';
import { fileURLToPath } from 'node:url';
import { afterAll, beforeAll, describe, expect, test } from 'vitest';
import type pg from 'pg';
import type { Executor } from '../../server/executor/executor.ts';
import { createOwner } from '../support/jobs.ts';
import { useTestDatabase, type TestDatabase } from '../support/database.ts';
import { executorUrl, startExecutor, waitFor } from '../support/executor.ts';

const BIN = fileURLToPath(new URL('../../bin/hardcron.js', import.meta.url));

/**
 * Owner role $once with once.touch(job_id): a primary key makes a second execution fail loudly.
 * `seconds` makes each run take that long, so that a batch is long enough to be killed midway.
 */
async function setUp(db: TestDatabase, seconds = 0): Promise<pg.Client> {
  await createOwner(db, 'once', `
    create table once.touched (job_id bigint primary key, by_session text default session_user);
    create function once.touch(job_id bigint) returns void security definer set search_path = pg_catalog, pg_temp
      language sql as $$ insert into once.touched (job_id) values (job_id); select pg_sleep(${seconds}) $$`);
  await db.addUser('alice', { scheduler: true, memberOf: ['once'] });
  return db.login('alice');
}

/** `count` one-off jobs, each calling once.touch(<its own id>), all due now. */
async function dueJobs(db: TestDatabase, alice: pg.Client, count: number, options: object = {}): Promise<void> {
  const { rows } = await alice.query<{ id: string }>(
    `select (api.update_job(j.id, arguments => jsonb_build_array(j.id))).id
       from (select (api.schedule_job('once.touch(bigint)', '[0]', run_at => now() + interval '1 day', options => $2)).id
               from generate_series(1, $1)) j`,
    [count, JSON.stringify(options)],
  );
  await db.admin.query(`update data.jobs set extra_run_at = now() where id = any($1::bigint[])`, [rows.map((row) => row.id)]);
}

async function assertEachJobRanOnce(db: TestDatabase, count: number): Promise<void> {
  const { rows } = await db.admin.query(`
    select (select count(*)::int from once.touched) as touched,
           (select count(*)::int from data.job_runs where status = 'succeeded') as succeeded,
           (select count(*)::int from (select job_id from data.job_runs where status = 'succeeded'
                                        group by job_id having count(*) > 1) twice) as twice,
           (select count(*)::int from data.job_runs where status in ('failed', 'running')) as bad`);
  expect(rows[0]).toEqual({ touched: count, succeeded: count, twice: 0, bad: 0 });
}

describe('exactly one terminal run per occurrence', () => {
  const db = useTestDatabase();
  let alice: pg.Client;
  const executors: Executor[] = [];

  beforeAll(async () => {
    alice = await setUp(db());
  });

  afterAll(async () => {
    await Promise.all(executors.map((executor) => executor.stop()));
  });

  test('three executors against 2,000 due occurrences: each runs exactly once', async () => {
    const connectionString = await executorUrl(db());
    executors.push(
      ...(await Promise.all(
        [0, 1, 2].map((i) => startExecutor(db(), { connectionString, concurrency: 2, batchSize: 50, executorId: `x${i}` })),
      )),
    );
    await dueJobs(db(), alice, 2000);
    // A state, waited for: on 2 busy cores, polling only, this takes 35–65 s (claims contend for
    // the same rows, and each plans over the history's partitions), so the ceiling is generous.
    await waitFor(db(), `select count(*) = 2000 as done from data.job_runs where status <> 'running'`, [], 240_000);
    await assertEachJobRanOnce(db(), 2000);
    // They really competed for the same occurrences.
    const { rows } = await db().admin.query<{ executor_id: string }>('select distinct executor_id from data.job_runs order by 1');
    expect(rows.length).toBeGreaterThanOrEqual(2);
  }, 300_000);
});

describe('an executor killed with SIGKILL mid-run', () => {
  const db = useTestDatabase();
  let alice: pg.Client;
  let survivor: Executor | undefined;

  beforeAll(async () => {
    // Each run takes longer than the server needs to notice a dead client (a quarter second), so
    // kills land inside runs: those are rolled back and declared lost. (A run that completes
    // before the server notices commits, as it would for a client that stayed.)
    alice = await setUp(db(), 0.4);
  });

  afterAll(async () => {
    await survivor?.stop();
  });

  function spawnExecutor(url: string, id: string): ChildProcess {
    return spawn(process.execPath, [BIN, 'executor', '--id', id, '--concurrency', '4', '--max-runs-per-owner', '4'], {
      env: { PATH: process.env.PATH, EXECUTOR_DATABASE_URL: url, HARDCRON_EXECUTOR_LEASE_SECONDS: '2', LOG_LEVEL: 'warn' },
      stdio: 'ignore',
    });
  }

  test('five times, at different moments: nothing lost, nothing committed twice, lost runs retried', async () => {
    const url = await executorUrl(db());
    const total = 5 * 40;
    for (let round = 0; round < 5; round++) {
      await dueJobs(db(), alice, 40, { retry_delay_seconds: 0.1 });
      const child = spawnExecutor(url, `doomed-${round}`);
      // Let it get going, then kill it at a different point of its work each round.
      await waitFor(db(), `select count(*) >= $1 as done from data.job_runs where executor_id = $2`, [4 + round * 3, `doomed-${round}`]);
      child.kill('SIGKILL');
      await new Promise((resolve) => child.once('exit', resolve));
    }
    survivor = await startExecutor(db(), { concurrency: 4, maxRunsPerOwner: 4, executorId: 'survivor', leaseSeconds: 2 });
    await waitFor(db(), `select count(*) = $1 as done from once.touched`, [total], 60_000);
    await waitFor(db(), `select count(*) = 0 as done from data.job_runs where status = 'running'`, [], 30_000);

    const { rows } = await db().admin.query(`
      select (select count(*)::int from once.touched) as touched,
             (select count(*)::int from (select job_id from data.job_runs where status = 'succeeded'
                                          group by job_id having count(*) > 1) twice) as twice,
             (select count(*)::int from data.job_runs where status = 'failed') as failed,
             (select count(*)::int from data.job_runs where status = 'lost') as lost,
             (select count(*)::int from data.job_runs r where r.status = 'lost' and not exists (
                select from data.job_runs s where s.job_id = r.job_id and s.status = 'succeeded' and s.attempt > r.attempt)) as lost_not_retried`);
    expect(rows[0]).toMatchObject({ touched: total, twice: 0, failed: 0, lost_not_retried: 0 });
    expect(rows[0].lost).toBeGreaterThan(0);
  }, 120_000);
});

describe('an executor stopped with SIGTERM', () => {
  const db = useTestDatabase();

  test('finishes its batch, releases its lease and exits 0', async () => {
    const alice = await setUp(db());
    const url = await executorUrl(db());
    await dueJobs(db(), alice, 200);
    const child = spawn(process.execPath, [BIN, 'executor', '--id', 'polite', '--batch-size', '10'], {
      env: { PATH: process.env.PATH, EXECUTOR_DATABASE_URL: url, LOG_LEVEL: 'warn' },
      stdio: 'ignore',
    });
    await waitFor(db(), `select count(*) >= 20 as done from data.job_runs where executor_id = 'polite'`);
    const exited = new Promise<number | null>((resolve) => child.once('exit', (code) => resolve(code)));
    child.kill('SIGTERM');
    expect(await exited).toBe(0);
    const { rows } = await db().admin.query(`
      select (select count(*)::int from data.executors where id = 'polite') as leases,
             (select count(*)::int from data.job_runs where status = 'running') as running,
             (select count(*)::int from data.job_runs where status = 'succeeded') as succeeded,
             (select count(*)::int from once.touched) as touched`);
    expect(rows[0]).toMatchObject({ leases: 0, running: 0 });
    expect(rows[0].succeeded).toBe(rows[0].touched);
  }, 60_000);
});
