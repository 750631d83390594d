import { randomBytes } from 'node:crypto';
import { pino } from 'pino';
import type pg from 'pg';
import { Executor } from '../../server/executor/executor.ts';
import type { ExecutorOptions } from '../../server/executor/options.ts';
import type { TestDatabase } from './database.ts';
import { scheduleJob, type RunRow } from './jobs.ts';

/** The URL that logs in as the database's $executor (with a fresh password). */
export async function executorUrl(db: TestDatabase): Promise<string> {
  const password = randomBytes(12).toString('hex');
  await db.admin.query(`alter role ${db.admin.escapeIdentifier(db.role('executor'))} password ${db.admin.escapeLiteral(password)}`);
  return db.urlFor(db.role('executor'), password);
}

/**
 * Starts an in-process executor on the test database (or on `options.connectionString` when
 * given, with `db` null); stop it with `stop()`.
 */
export async function startExecutor(db: TestDatabase | null, options: Partial<ExecutorOptions> = {}): Promise<Executor> {
  const executor = new Executor({
    pollIntervalMs: 100,
    // TEST_EXECUTOR_LISTEN=false runs every executor test polling only, as on engines without
    // LISTEN/NOTIFY (CI does, once more after the full suite).
    listen: process.env.TEST_EXECUTOR_LISTEN !== 'false',
    logger: pino({ level: process.env.TEST_LOG_LEVEL ?? 'silent' }),
    ...options,
    connectionString: options.connectionString ?? (db ? await executorUrl(db) : ''),
  });
  await executor.start();
  return executor;
}

/** Polls (as admin) until `sql` returns a row whose `done` is true; fails after `timeoutMs`. */
export async function waitFor(db: TestDatabase, sql: string, params: unknown[] = [], timeoutMs = 20_000): Promise<void> {
  const deadline = Date.now() + timeoutMs;
  for (;;) {
    const { rows } = await db.admin.query<{ done: boolean }>(sql, params);
    if (rows[0]?.done) return;
    if (Date.now() > deadline) throw new Error(`timed out waiting for: ${sql}`);
    await new Promise((resolve) => setTimeout(resolve, 50));
  }
}

/** Waits until the job has `count` finished runs and returns its runs, oldest first. */
export async function finishedRuns(db: TestDatabase, jobId: string, count = 1): Promise<RunRow[]> {
  await waitFor(db, `select count(*) >= $2 as done from data.job_runs where job_id = $1 and status <> 'running'`, [jobId, count]);
  return (await db.admin.query<RunRow>('select * from data.job_runs where job_id = $1 order by id', [jobId])).rows;
}

/** Schedules a one-off job an hour away as `client` (scheduleJob) and asks for a run now; returns the job id. */
export async function runNow(client: pg.Client, signature: string, args: unknown[] = [], options: object = {}): Promise<string> {
  const { id } = await scheduleJob(client, signature, args, { runIn: '1 hour', options });
  await client.query('select api.run_job_now($1)', [id]);
  return id;
}

/**
 * Returns once the executor has made a claim after this moment: a sentinel job of `client`'s,
 * due now, has finished. Whatever was due before it has had its chance to run, so "nothing else
 * ran" is checked against the executor's progress, not against a time. Returns the sentinel's
 * job id.
 */
export async function afterNextClaim(db: TestDatabase, client: pg.Client, signature: string): Promise<string> {
  const sentinel = await runNow(client, signature);
  await finishedRuns(db, sentinel, 1);
  return sentinel;
}

/** The newest run event id (as admin; '0' for an empty log): pass it as `after` to receive only what follows. */
export async function newestEventId(db: TestDatabase): Promise<string> {
  return (await db.admin.query<{ id: string }>('select coalesce(max(id), 0)::text as id from data.job_run_events')).rows[0]?.id ?? '0';
}
