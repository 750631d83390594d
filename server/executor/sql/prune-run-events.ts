import type pg from 'pg';
import type { Logger } from '../../logger.ts';

/** Events one statement deletes at most: each statement stays short, whatever the backlog. */
export const PRUNE_CHUNK = 10_000;
/** Statements per call: up to 100,000 events per lease renewal (every 10 s by default). */
const MAX_CHUNKS = 10;

/**
 * Deletes run events logged more than an hour ago (code.prune_run_events in sql/routines/code/run_events.sql), oldest
 * first, one chunk per statement, until a chunk is not full or MAX_CHUNKS are done. Runs beside
 * the lease renewal on the control connection. Never rejects: a failure is logged and the next
 * renewal tries again. Returns how many events it deleted.
 */
export async function pruneRunEvents(client: pg.ClientBase | undefined, logger: Logger): Promise<number> {
  if (!client) return 0; // the control connection is being replaced: next time
  let deleted = 0;
  try {
    for (let chunk = 0; chunk < MAX_CHUNKS; chunk++) {
      const { rows } = await client.query<{ n: number }>('select executor.prune_run_events($1::integer) as n', [PRUNE_CHUNK]);
      const n = rows[0]?.n ?? 0;
      deleted += n;
      if (n < PRUNE_CHUNK) break;
    }
  } catch (error) {
    const { code, message } = error as { code?: string; message?: string };
    logger.warn({ err: { code, message: message ?? String(error) } }, 'pruning run events failed; the next lease renewal tries again');
  }
  return deleted;
}
