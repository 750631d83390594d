import type pg from 'pg';

/**
 * One notification on the run event channel (executor.announce_run_events in
 * sql/routines/executor/run_events.sql), sent after run and claim transactions committed: they
 * log their events without notifying, so that their commits can share disk flushes.
 */
export async function announceRunEvents(client: pg.ClientBase): Promise<void> {
  await client.query('select executor.announce_run_events()');
}
