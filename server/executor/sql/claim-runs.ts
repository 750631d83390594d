import type pg from 'pg';

export interface ClaimedRun {
  readonly runId: string;
  readonly jobId: string;
  readonly timeoutMs: number;
}

/** Claims up to `max` due occurrences in one short transaction (FOR UPDATE SKIP LOCKED in SQL). */
export async function claimRuns(client: pg.ClientBase, executorId: string, max: number): Promise<ClaimedRun[]> {
  const { rows } = await client.query<{ run_id: string; job_id: string; timeout_ms: number }>(
    'select run_id, job_id, timeout_ms from executor.claim_runs($1, $2)',
    [executorId, max],
  );
  return rows.map((row) => ({ runId: row.run_id, jobId: row.job_id, timeoutMs: row.timeout_ms }));
}
