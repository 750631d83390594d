import type pg from 'pg';

/**
 * Declares lost (and retries) the runs nobody is running: claimed more than `graceSeconds` ago
 * with their row held by no transaction, those of executors without a live lease, and, at an
 * executor's start, those recorded under its own id (`own`); with `only`, that claim of one run
 * alone (its id and claim token). Never waits on a lock: a run whose row a transaction holds is
 * being run.
 */
export async function sweepRuns(
  client: pg.ClientBase,
  graceSeconds: number,
  own: string | null = null,
  only: { readonly runId: string; readonly claimToken: string } | null = null,
): Promise<number> {
  const { rows } = await client.query<{ n: number }>('select executor.sweep_runs($1, $2, $3, $4) as n', [
    graceSeconds,
    own,
    only?.runId ?? null,
    only?.claimToken ?? null,
  ]);
  return rows[0]?.n ?? 0;
}
