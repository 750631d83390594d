import type pg from 'pg';
import type { ClaimedRun } from './claim-runs.ts';

export interface RunOutcome {
  readonly runId: string;
  readonly jobId: string;
  readonly status: string;
  readonly latenessMs: number;
  readonly durationMs: number;
}

interface RunRow {
  job_id: string;
  status: string;
  lateness_ms: number;
  duration_ms: number;
}

/**
 * Runs claimed runs in one transaction, one round trip: each run is its own statement, so the
 * server's statement_timeout applies to each run separately, and each run's effects and record
 * share a subtransaction inside executor.run(). Simple-query protocol, so nothing but run ids
 * (bigints from the database) and the executor id (quoted) is put into the text.
 */
export async function runBatch(client: pg.ClientBase, executorId: string, runs: readonly ClaimedRun[]): Promise<RunOutcome[]> {
  const id = client.escapeLiteral(executorId);
  const statements = ['begin'];
  for (const run of runs) {
    if (!/^[0-9]+$/.test(run.runId)) throw new Error(`not a run id: ${run.runId}`);
    statements.push(
      `set local statement_timeout = ${Math.max(1, Math.floor(run.timeoutMs))}`,
      `select job_id, status, lateness_ms, duration_ms from executor.run(${run.runId}, ${id})`,
    );
  }
  statements.push('commit');
  const results = (await client.query(statements.join(';\n'))) as unknown as pg.QueryResult<RunRow>[];
  const outcomes: RunOutcome[] = [];
  runs.forEach((run, i) => {
    const row = results[2 + 2 * i]?.rows[0];
    if (row) {
      outcomes.push({ runId: run.runId, jobId: row.job_id, status: row.status, latenessMs: row.lateness_ms, durationMs: row.duration_ms });
    }
  });
  return outcomes;
}

/** Records the end of a run that took its connection down with it (e.g. it killed its own backend). */
export async function recordCrashedRun(client: pg.ClientBase, runId: string, error: { code?: string; message: string }): Promise<void> {
  await client.query(
    `select executor.finish_run($1, 'failed', null, error_sqlstate => $2, error_message => $3)`,
    [runId, error.code && /^[0-9A-Z]{5}$/.test(error.code) ? error.code : '08006', error.message],
  );
}
