import type pg from 'pg';

export interface ClaimedRun {
  readonly runId: string;
  readonly jobId: string;
  readonly timeoutMs: number;
  /** The role the run runs as: its owner, whose share of the executor's connections it uses. */
  readonly owner: string;
  /**
   * Names this claim of the run: every later step passes it with the run id, since after a
   * failover the new primary may give the same id to another run.
   */
  readonly claimToken: string;
}

/**
 * Claims up to `max` due occurrences in one short transaction (FOR UPDATE SKIP LOCKED in SQL),
 * giving each owner no more than its room: `room` maps the owners with runs on this executor to
 * how many more they may start, and any other owner may start `perOwner`.
 */
export async function claimRuns(
  client: pg.ClientBase,
  executorId: string,
  max: number,
  room: ReadonlyMap<string, number>,
  perOwner: number,
): Promise<ClaimedRun[]> {
  const { rows } = await client.query<{ run_id: string; job_id: string; timeout_ms: number; owner: string; claim_token: string }>(
    'select run_id, job_id, timeout_ms, owner, claim_token from executor.claim_runs($1, $2, $3::text[], $4::int4[], $5)',
    [executorId, max, [...room.keys()], [...room.values()], perOwner],
  );
  return rows.map((row) => ({ runId: row.run_id, jobId: row.job_id, timeoutMs: row.timeout_ms, owner: row.owner, claimToken: row.claim_token }));
}
