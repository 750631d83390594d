import type pg from 'pg';

/**
 * Milliseconds until the earliest due occurrence by the database's clock (0 if one is due now),
 * or null when nothing is scheduled.
 */
export async function msUntilNextDue(client: pg.ClientBase): Promise<number | null> {
  // Two instants as epoch seconds, subtracted here: the statement calls no operator.
  const { rows } = await client.query<{ due: number | null; now: number }>(
    `select pg_catalog.date_part('epoch'::text, executor.next_due_at()) as due,
            pg_catalog.date_part('epoch'::text, pg_catalog.clock_timestamp()) as now`,
  );
  const row = rows[0];
  if (!row || row.due === null) return null;
  return Math.max(0, (row.due - row.now) * 1000);
}
