import type pg from 'pg';

/**
 * Milliseconds until the earliest due occurrence by the database's clock (0 if one is due now),
 * or null when nothing is scheduled.
 */
export async function msUntilNextDue(client: pg.ClientBase): Promise<number | null> {
  const { rows } = await client.query<{ wait_ms: number | null }>(
    'select greatest(0, extract(epoch from executor.next_due_at() - clock_timestamp()) * 1000)::float8 as wait_ms',
  );
  return rows[0]?.wait_ms ?? null;
}
