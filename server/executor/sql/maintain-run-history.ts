import type pg from 'pg';

/** One thing a pass of history upkeep did (code.maintain_run_history in sql/routines/code/retention.sql). */
export interface HistoryAction {
  action: 'opened' | 'created' | 'settled' | 'dropped' | 'empty' | 'truncated' | 'compacted' | 'kept' | 'busy';
  partitionName: string;
  rowsBefore: number | null;
  rowsKept: number | null;
}

/**
 * One pass of run history upkeep: opens the waiting partition when the current one is old
 * enough, creates the next one ahead, settles old partitions and applies retention. Returns
 * nothing when another executor's pass is under way.
 */
export async function maintainRunHistory(client: pg.ClientBase): Promise<HistoryAction[]> {
  const { rows } = await client.query<{ action: HistoryAction['action']; partition_name: string; rows_before: string | null; rows_kept: string | null }>(
    'select action, partition_name, rows_before, rows_kept from executor.maintain_run_history()',
  );
  return rows.map((row) => ({
    action: row.action,
    partitionName: row.partition_name,
    rowsBefore: row.rows_before === null ? null : Number(row.rows_before),
    rowsKept: row.rows_kept === null ? null : Number(row.rows_kept),
  }));
}
