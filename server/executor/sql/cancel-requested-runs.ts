import type pg from 'pg';

/** The channel notified when runs are asked to stop (their job paused or unscheduled). */
export const RUNS_CANCELLED_CHANNEL = 'hardcron_runs_cancelled';

/** Subscribes the connection to RUNS_CANCELLED_CHANNEL; the payload is empty and never read. */
export async function listenRunsCancelled(client: pg.ClientBase): Promise<void> {
  await client.query(`listen ${RUNS_CANCELLED_CHANNEL}`);
}

/**
 * Cancels the backends running this executor's runs that were asked to stop, found by the
 * transaction that holds each run (not by a connection, which may have moved on). Returns how
 * many were signalled; each records its run `cancelled`.
 */
export async function cancelRequestedRuns(client: pg.ClientBase, executorId: string): Promise<number> {
  const { rows } = await client.query<{ n: number }>('select executor.cancel_requested_runs($1) as n', [executorId]);
  return rows[0]?.n ?? 0;
}
