import type pg from 'pg';

/** Announces the executor, or renews its lease. */
export async function renewLease(client: pg.ClientBase, executorId: string, leaseSeconds: number): Promise<void> {
  await client.query('select executor.renew_lease($1, $2)', [executorId, leaseSeconds]);
}

/** Leaves: runs still running under this id become lost at once. */
export async function releaseLease(client: pg.ClientBase, executorId: string): Promise<void> {
  await client.query('select executor.release($1)', [executorId]);
}
