/**
 * Helpers for the threat tests (test/sql/threats-*.test.ts). Not a test file itself.
 *
 * The attacks run over real logins as the roles that would attempt them; the admin (superuser)
 * client only sets the scene, moves time (makes a job due) and inspects what happened.
 */
import type pg from 'pg';
import type { TestDatabase } from './database.ts';
import { setLocalRole, transaction, type RunRow } from './jobs.ts';

/** What code.check_eligibility says about a stored job. */
export interface Verdict {
  reason: string | null;
  rule: number | null;
  message: string | null;
  function_oid: number | null;
  function_owner: string | null;
}

/** Runs `sql` as the admin, in a transaction, with `set local role` to the local role $<nickname>. */
export async function asRole(db: TestDatabase, nickname: string, sql: string): Promise<void> {
  await transaction(db, `${setLocalRole(db, nickname)}; ${sql}`);
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
  const { rows: claimed } = await executor.query<{ run_id: string; claim_token: string }>(
    'select run_id, claim_token from executor.claim_runs($1, 1000)',
    [EXECUTOR_ID],
  );
  for (const { run_id, claim_token } of claimed) {
    await executor.query('begin');
    try {
      await executor.query('select * from executor.run($1, $2, $3)', [run_id, EXECUTOR_ID, claim_token]);
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

/** What differs between any two runs of the same outcome. */
type RunIdentity = 'id' | 'job_id' | 'scheduled_for' | 'started_at' | 'finished_at' | 'executor_id';

/** The outcome of a run, without what differs between any two runs (ids, times, job). */
export function outcomeOf(run: RunRow): Omit<RunRow, RunIdentity> {
  const { id: _id, job_id: _job, scheduled_for: _for, started_at: _started, finished_at: _finished, executor_id: _executor, ...rest } = run;
  // Which claim it was is identity too (a random token per claim).
  const { claim_token: _claim, ...outcome } = rest as typeof rest & { claim_token?: string };
  return outcome;
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
