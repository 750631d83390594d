import type pg from 'pg';

/**
 * The readiness probe (/readyz): a statement that touches nothing, so it answers exactly when
 * the server accepts statements on this connection.
 */
export async function ping(client: pg.ClientBase): Promise<void> {
  await client.query('select 1');
}
