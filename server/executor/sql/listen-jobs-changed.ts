import type pg from 'pg';

/** The channel notified when jobs change (a new due time may be earlier than a worker's sleep). */
export const JOBS_CHANGED_CHANNEL = 'hardcron_jobs_changed';

/**
 * Subscribes the connection to JOBS_CHANGED_CHANNEL, so that idle workers can be woken at once
 * instead of at their next poll. The notification's payload is not read: it only means "look".
 */
export async function listenJobsChanged(client: pg.ClientBase): Promise<void> {
  await client.query(`listen ${JOBS_CHANGED_CHANNEL}`);
}
