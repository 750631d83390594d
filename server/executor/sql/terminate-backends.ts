import type pg from 'pg';

/**
 * Terminates the given backends (the executor's own worker connections, still running batches
 * when the shutdown grace period is over): their transactions roll back, so their runs become
 * lost and are retried, rather than finishing after the executor has left.
 */
export async function terminateBackends(client: pg.ClientBase, pids: readonly number[]): Promise<void> {
  await client.query('select pg_catalog.pg_terminate_backend(pid) from pg_catalog.unnest($1::int[]) pid', [pids]);
}
