import type pg from 'pg';

/**
 * Occurrences due and not yet claimed (executor.due_backlog), for the backlog gauge: how far the
 * executors are behind. As float8, so that it arrives as a number rather than a bigint string.
 */
export async function dueBacklog(client: pg.ClientBase): Promise<number | null> {
  const { rows } = await client.query<{ n: number }>('select executor.due_backlog()::float8 as n');
  return rows[0]?.n ?? null;
}
