/**
 * Helpers for the threat tests (test/sql/threats-*.test.ts). Not a test file itself.
 *
 * The attacks run over real logins as the roles that would attempt them; the admin (superuser)
 * client only sets the scene, moves time (makes a job due) and inspects what happened.
 */
import type pg from 'pg';
import type { TestDatabase } from './database.ts';
import { setLocalRole, transaction, type JobRow } from './jobs.ts';

export { createNoteOwner, createOwnerRole, failureOf, setLocalRole, transaction, type Failure, type JobRow } from './jobs.ts';

/** What code.check_eligibility says about a stored job. */
export interface Verdict {
  reason: string | null;
  rule: number | null;
  message: string | null;
  function_oid: number | null;
  function_owner: string | null;
}

/** A run record as data.job_runs holds it. */
export interface RunRow {
  id: string;
  job_id: string;
  owner: string;
  function_owner: string;
  status: string;
  reject_reason: string | null;
  rows_returned: string | null;
  rows_affected: string | null;
  error_sqlstate: string | null;
  error_message: string | null;
  error_detail: string | null;
  error_hint: string | null;
  error_context: string | null;
}

/** Runs `sql` as the admin, in a transaction, with `set local role` to the local role $<nickname>. */
export async function asRole(db: TestDatabase, nickname: string, sql: string): Promise<void> {
  await transaction(db, `${setLocalRole(db, nickname)}; ${sql}`);
}

/** Schedules a one-off job a day away as `client` (nothing runs unless a test makes it due). */
export async function schedule(client: pg.Client, signature: string, args: unknown[] = [], name: string | null = null): Promise<JobRow> {
  const { rows } = await client.query<JobRow>(
    `select * from api.schedule_job($1, $2::jsonb, run_at => now() + interval '1 day', name => $3)`,
    [signature, JSON.stringify(args), name],
  );
  const job = rows[0];
  if (!job) throw new Error(`schedule_job returned no row for ${signature}`);
  return job;
}

/** The eligibility check the executor runs (code.start_run), evaluated now, as the admin, for a stored job. */
export async function verdictOf(db: TestDatabase, jobId: string): Promise<Verdict> {
  const { rows } = await db.admin.query<Verdict>(
    `select (code.check_eligibility(j.owner, j.function_signature, j.arguments)).* from data.jobs j where j.id = $1`,
    [jobId],
  );
  const verdict = rows[0];
  if (!verdict) throw new Error(`job ${jobId} is not in data.jobs`);
  return verdict;
}

export const reasonOf = ({ reason, rule }: Verdict): { reason: string | null; rule: number | null } => ({ reason, rule });

const executorSessions = new WeakMap<TestDatabase, Promise<pg.Client>>();

/** A login session as $executor (one per test database, unless `fresh`). */
export function executorSession(db: TestDatabase, fresh = false): Promise<pg.Client> {
  if (fresh) {
    const session = db.login('executor');
    executorSessions.set(db, session);
    return session;
  }
  let session = executorSessions.get(db);
  if (!session) {
    session = db.login('executor');
    executorSessions.set(db, session);
  }
  return session;
}

const EXECUTOR_ID = 'threat-tests';

/**
 * Makes the jobs due (the admin moves their extra occurrence to now) and runs everything due the
 * way the executor process does, over an $executor login: renew the lease, claim, then each run in
 * a transaction of its own with executor.run. Returns the newest run of each job, by job id order.
 */
export async function executeNow(db: TestDatabase, jobIds: string[], session?: pg.Client): Promise<RunRow[]> {
  await db.admin.query('update data.jobs set extra_run_at = now() where id = any($1::bigint[])', [jobIds]);
  const executor = session ?? (await executorSession(db));
  await executor.query('select executor.renew_lease($1, 60)', [EXECUTOR_ID]);
  const { rows: claimed } = await executor.query<{ run_id: string }>('select run_id from executor.claim_runs($1, 1000)', [EXECUTOR_ID]);
  for (const { run_id } of claimed) {
    await executor.query('begin');
    try {
      await executor.query('select * from executor.run($1, $2)', [run_id, EXECUTOR_ID]);
      await executor.query('commit');
    } catch (error) {
      await executor.query('rollback');
      throw error;
    }
  }
  const { rows } = await db.admin.query<RunRow>(
    `select distinct on (job_id) * from data.job_runs where job_id = any($1::bigint[]) order by job_id, id desc`,
    [jobIds],
  );
  return rows;
}

/** The outcome of a run, without what differs between any two runs (ids, times, job). */
export function outcomeOf(run: RunRow): Omit<RunRow, 'id' | 'job_id'> {
  const { id: _id, job_id: _job, ...rest } = run;
  const outcome: Record<string, unknown> = { ...rest };
  for (const key of ['scheduled_for', 'started_at', 'finished_at', 'executor_id']) delete outcome[key];
  return outcome as Omit<RunRow, 'id' | 'job_id'>;
}

export async function count(db: TestDatabase, sql: string, params: unknown[] = []): Promise<number> {
  const { rows } = await db.admin.query<{ n: number }>(`select count(*)::int as n from (${sql}) x`, params);
  return rows[0]?.n ?? -1;
}

/** Starts collecting the NOTICE (and other non-error) messages a session receives. */
export function collectNotices(client: pg.Client): string[] {
  const notices: string[] = [];
  client.on('notice', (notice: { message?: string }) => notices.push(notice.message ?? ''));
  return notices;
}

export async function serverVersionNum(db: TestDatabase): Promise<number> {
  const { rows } = await db.admin.query<{ v: number }>(`select current_setting('server_version_num')::int as v`);
  return rows[0]?.v ?? 0;
}

/** Every field of a PostgreSQL error that a client receives (node-postgres' DatabaseError). */
export interface FullError {
  code: string | undefined;
  severity: string | undefined;
  message: string;
  detail: string | undefined;
  hint: string | undefined;
  where: string | undefined;
  schema: string | undefined;
  table: string | undefined;
  column: string | undefined;
  dataType: string | undefined;
  constraint: string | undefined;
  internalQuery: string | undefined;
  routine: string | undefined;
}

/** Runs a statement expected to fail; returns every field of the error (or throws if it worked). */
export async function fullErrorOf(client: pg.Client, sql: string, params: unknown[] = []): Promise<FullError> {
  try {
    await client.query(sql, params);
  } catch (caught) {
    const e = caught as Partial<FullError> & { message: string };
    return {
      code: e.code,
      severity: e.severity,
      message: e.message,
      detail: e.detail,
      hint: e.hint,
      where: e.where,
      schema: e.schema,
      table: e.table,
      column: e.column,
      dataType: e.dataType,
      constraint: e.constraint,
      internalQuery: e.internalQuery,
      routine: e.routine,
    };
  }
  throw new Error(`expected to fail: ${sql}`);
}
