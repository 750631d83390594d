import type pg from 'pg';
import type { ClaimedRun } from './claim-runs.ts';

export interface RunOutcome {
  readonly runId: string;
  readonly jobId: string;
  readonly status: string;
  readonly latenessMs: number;
  readonly durationMs: number;
}

const UUID = /^[0-9a-f]{8}-[0-9a-f]{4}-[0-9a-f]{4}-[0-9a-f]{4}-[0-9a-f]{12}$/;

interface RunRow {
  job_id: string;
  status: string;
  lateness_ms: number;
  duration_ms: number;
}

/**
 * Runs one claimed run as one transaction in one round trip: the two statements of one simple
 * query form an implicit transaction, so the run's statement_timeout holds for it alone, its
 * checks, call, effects and record commit together, and an error rolls all of it back with
 * nothing left open. Only the run id (a bigint from the database), its claim token (a uuid from
 * the database) and the executor id (quoted) are put into the text.
 */
export async function runOne(client: pg.ClientBase, executorId: string, run: ClaimedRun): Promise<RunOutcome> {
  if (!/^[0-9]+$/.test(run.runId)) throw new Error(`not a run id: ${run.runId}`);
  if (!UUID.test(run.claimToken)) throw new Error(`not a claim token: ${run.claimToken}`);
  const results = (await client.query(
    `set local statement_timeout = ${Math.max(1, Math.floor(run.timeoutMs))};
     select job_id, status, lateness_ms, duration_ms
       from executor.run(${run.runId}, ${client.escapeLiteral(executorId)}, '${run.claimToken}'::uuid)`,
  )) as unknown as pg.QueryResult<RunRow>[];
  const row = results[1]?.rows[0];
  if (!row) throw new Error(`executor.run returned nothing for run ${run.runId}`);
  return { runId: run.runId, jobId: row.job_id, status: row.status, latenessMs: row.lateness_ms, durationMs: row.duration_ms };
}

/**
 * Records the end of a run whose transaction failed outside the job's own error handling (its
 * effects were rolled back with it): `cancelled` if its job was paused or unscheduled, else
 * `failed`. Only a run still `running` is recorded. Returns the status recorded.
 */
export async function recordInterruptedRun(
  client: pg.ClientBase,
  run: ClaimedRun,
  startedAt: Date,
  error: { code?: string; message: string },
): Promise<string> {
  const { rows } = await client.query<{ status: string }>('select executor.finish_interrupted($1, $2, $3, $4, $5) as status', [
    run.runId,
    run.claimToken,
    startedAt,
    error.code && /^[0-9A-Z]{5}$/.test(error.code) ? error.code : '08006',
    error.message,
  ]);
  return rows[0]?.status ?? 'failed';
}
