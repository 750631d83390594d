import { randomBytes } from 'node:crypto';
import { pino } from 'pino';
import type pg from 'pg';
import { Executor } from '../../server/executor/executor.ts';
import type { ExecutorOptions } from '../../server/executor/options.ts';
import type { TestDatabase } from './database.ts';

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

export interface RunRecord {
  id: string;
  job_id: string;
  status: string;
  attempt: number;
  scheduled_for: Date;
  started_at: Date | null;
  finished_at: Date | null;
  rows_returned: string | null;
  rows_affected: string | null;
  error_sqlstate: string | null;
  error_message: string | null;
  error_detail: string | null;
  error_hint: string | null;
  error_context: string | null;
  reject_reason: string | null;
}

/** Waits until the job has `count` finished runs and returns its runs, oldest first. */
export async function finishedRuns(db: TestDatabase, jobId: string, count = 1): Promise<RunRecord[]> {
  await waitFor(db, `select count(*) >= $2 as done from data.job_runs where job_id = $1 and status <> 'running'`, [jobId, count]);
  return (await db.admin.query<RunRecord>('select * from data.job_runs where job_id = $1 order by id', [jobId])).rows;
}

/** Schedules a job as `client` and asks for a run now; returns the job id. */
export async function runNow(client: pg.Client, signature: string, args: unknown[] = [], options: object = {}): Promise<string> {
  const { rows } = await client.query<{ id: string }>(
    `select id from api.schedule_job($1, $2, run_at => now() + interval '1 hour', options => $3)`,
    [signature, JSON.stringify(args), JSON.stringify(options)],
  );
  const id = rows[0]?.id as string;
  await client.query('select api.run_job_now($1)', [id]);
  return id;
}

/** The newest run event id (as admin; '0' for an empty log): pass it as `after` to receive only what follows. */
export async function newestEventId(db: TestDatabase): Promise<string> {
  return (await db.admin.query<{ id: string }>('select coalesce(max(id), 0)::text as id from data.job_run_events')).rows[0]?.id ?? '0';
}
