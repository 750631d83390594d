import type pg from 'pg';

/**
 * Cancels the statement running on each of the given backends (the executor's own worker
 * connections whose batch overran the timeouts of all its runs): a safety net behind the
 * server's statement_timeout, which leaves the connection itself usable.
 */
export async function cancelBackends(client: pg.ClientBase, pids: readonly number[]): Promise<void> {
  await client.query('select pg_catalog.pg_cancel_backend(pid) from pg_catalog.unnest($1::int[]) pid', [pids]);
}
