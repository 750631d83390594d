import type pg from 'pg';

/**
 * Ends whatever transaction a failed batch left open on the connection, so that the same
 * connection can take the next statement instead of being replaced.
 */
export async function rollback(client: pg.ClientBase): Promise<void> {
  await client.query('rollback');
}
