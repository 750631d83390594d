import type pg from 'pg';
import type { TestDatabase } from './database.ts';
import { waitFor } from './executor.ts';

/**
 * The advisory keys hardcron once serialised its own work with: `hardcron jobs of <role>` (per
 * owner, in code.require_room_for_job before it locked a row of data.owner_locks) and the migrator's `"hardcron"` bigint.
 * Any session could take them; tests take them as attackers and show that nothing waits.
 */
export const OLD_MIGRATOR_KEY = 0x68617264_63726f6en.toString();

/** Takes (session-level, held until released) the old advisory keys for `roles` and the migrator's key. */
export async function holdOldAdvisoryKeys(attacker: pg.Client, roles: readonly string[]): Promise<number> {
  for (const role of roles) await attacker.query(`select pg_advisory_lock(hashtext('hardcron jobs of ' || $1::text))`, [role]);
  await attacker.query('select pg_advisory_lock($1::bigint)', [OLD_MIGRATOR_KEY]);
  return roles.length + 1;
}

/** Advisory locks a session holds, granted. */
export async function heldAdvisoryLocks(db: TestDatabase, client: pg.Client): Promise<number> {
  const pid = await backendPid(client);
  const { rows } = await db.admin.query<{ n: number }>(
    `select count(*)::int as n from pg_locks where locktype = 'advisory' and granted and pid = $1`,
    [pid],
  );
  return rows[0]?.n ?? -1;
}

export async function backendPid(client: pg.Client): Promise<number> {
  const { rows } = await client.query<{ pid: number }>('select pg_backend_pid() as pid');
  return rows[0]?.pid ?? -1;
}

/**
 * `where` is SQL over pg_stat_activity `a` (e.g. `a.application_name = 'hardcron server'`).
 * Resolves once at least `count` sessions of the test database that match it wait for a
 * heavyweight lock (a row, a table, another transaction): a state, not a duration.
 */
export async function waitForLockWaiters(db: TestDatabase, where: string, params: unknown[] = [], count = 1): Promise<void> {
  await waitFor(db, `select count(*) >= ${Number(count)} as done from pg_stat_activity a where ${LOCK_WAITERS} and (${where})`, params);
}

/**
 * Rejects as soon as a session matching `where` waits for a lock: raced against work that must
 * not wait, it turns "would hang" into a failure that says so. `stop()` ends the watch.
 */
export function failIfAnyoneWaits(db: TestDatabase, where: string, params: unknown[] = []): { failed: Promise<never>; stop(): void } {
  let stopped = false;
  const failed = (async (): Promise<never> => {
    while (!stopped) {
      const { rows } = await db.admin.query<{ who: string }>(
        `select a.application_name || ' (pid ' || a.pid || '): ' || a.wait_event as who from pg_stat_activity a
          where ${LOCK_WAITERS} and a.wait_event <> 'extend' and (${where}) ${NOT_NOTIFY_QUEUE}`, // extending a table is no lock anyone holds
        params,
      );
      if (rows[0]) throw new Error(`a session waits for a lock: ${rows.map((row) => row.who).join('; ')}`);
      await new Promise((resolve) => setTimeout(resolve, 20));
    }
    return new Promise<never>(() => {});
  })();
  failed.catch(() => {}); // observed by whoever races it
  return {
    failed,
    stop() {
      stopped = true;
    },
  };
}

const LOCK_WAITERS = `a.datname = current_database() and a.wait_event_type = 'Lock'`;

/**
 * Every transaction that sent a NOTIFY takes its database's notification queue lock for an
 * instant as it commits, so two scheduling transactions committing together wait for each other
 * there: no lock anyone can hold, and no stall.
 */
const NOT_NOTIFY_QUEUE = `and not exists (select from pg_catalog.pg_locks l where l.pid = a.pid and not l.granted
                                            and l.locktype = 'object' and l.classid = 'pg_catalog.pg_database'::pg_catalog.regclass)`;
