import { beforeAll, describe, expect, test } from 'vitest';
import type pg from 'pg';
import { createOwner } from '../support/jobs.ts';
import { useTestDatabase, type TestDatabase } from '../support/database.ts';

/**
 * The executor's statements cost what their batch costs, not what the whole table costs: each
 * is measured by the tuples it reads (the transaction's own statistics, which any role may see),
 * against tables holding thousands of rows that are not involved.
 */

const BACKLOG = 3000;

interface Reads {
  seq: number;
  index: number;
}

/**
 * Tuples of `table` read so far in the current transaction of `client`: by sequential scans,
 * and index entries read through any of its indexes.
 */
async function readsOf(client: pg.Client, tableOid: number): Promise<Reads> {
  const { rows } = await client.query<Reads>(
    `select pg_stat_get_xact_tuples_returned($1::oid)::int as seq,
            (select coalesce(sum(pg_stat_get_xact_tuples_returned(i.indexrelid)), 0)::int
               from pg_index i where i.indrelid = $1::oid) as index`,
    [tableOid],
  );
  return rows[0] as Reads;
}

/** What `work` read from `table` inside one transaction of `client`. */
async function readsDuring(client: pg.Client, tableOid: number, work: () => Promise<unknown>): Promise<Reads> {
  await client.query('begin');
  try {
    const before = await readsOf(client, tableOid);
    await work();
    const after = await readsOf(client, tableOid);
    return { seq: after.seq - before.seq, index: after.index - before.index };
  } finally {
    await client.query('rollback');
  }
}

/** `count` one-off jobs of alice calling scale.noop(), due `due` (an SQL expression). */
async function insertJobs(db: TestDatabase, count: number, due: string): Promise<void> {
  await db.admin.query(
    `insert into data.jobs (owner, function_signature, function_owner, arguments, run_at, time_zone, options, next_run_at)
     select $1, 'scale.noop()', $2, '[]', ${due}, 'UTC', code.job_options('{}'), ${due} from generate_series(1, $3)`,
    [db.role('alice'), db.role('scale'), count],
  );
  await db.admin.query('analyze data.jobs, data.job_runs');
}

describe('executor statements at scale', () => {
  const db = useTestDatabase();
  let executor: pg.Client;
  let jobsOid: number;
  let runsOid: number;

  beforeAll(async () => {
    await createOwner(db(), 'scale', `
      create function scale.noop() returns void security definer set search_path = pg_catalog, pg_temp
        language sql as $$ select $$`);
    await db().addUser('alice', { scheduler: true, memberOf: ['scale'] });
    const { rows } = await db().admin.query<{ jobs: number; runs: number }>(
      `select 'data.jobs'::regclass::oid::int as jobs, 'data.job_runs'::regclass::oid::int as runs`,
    );
    ({ jobs: jobsOid, runs: runsOid } = rows[0] as { jobs: number; runs: number });
    executor = await db().login('executor');
    await executor.query(`select executor.renew_lease('scale', 600)`);
    // Jobs that are not due, and a backlog of due ones.
    await insertJobs(db(), BACKLOG, `now() + interval '1 day'`);
    await insertJobs(db(), BACKLOG, `now() - interval '1 minute'`);
    // History: finished runs, and statistics taken while none was running (as after a quiet spell).
    await db().admin.query(`
      insert into data.job_runs (job_id, owner, function_owner, scheduled_for, started_at, finished_at, status)
      select id, owner, function_owner, now() - interval '1 day', now() - interval '1 day', now() - interval '1 day', 'succeeded'
        from data.jobs;
      analyze data.job_runs`);
  }, 60_000);

  test(`a claim of 10 reads about 10 jobs, with ${BACKLOG} due and ${BACKLOG} not due`, async () => {
    let claimed = 0;
    const reads = await readsDuring(executor, jobsOid, async () => {
      const { rowCount } = await executor.query(`select * from executor.claim_runs('scale', 10)`);
      claimed = rowCount ?? 0;
    });
    expect(claimed).toBe(10);
    expect(reads.seq).toBe(0);
    // The ten claimed, looked up again to advance them; nothing like the backlog.
    expect(reads.index).toBeLessThanOrEqual(30);
  });

  test(`the backlog gauge reads the due jobs only, not the ${BACKLOG} that are not due`, async () => {
    let backlog = 0;
    const reads = await readsDuring(executor, jobsOid, async () => {
      const { rows } = await executor.query<{ n: number }>('select executor.due_backlog()::int as n');
      backlog = rows[0]?.n ?? 0;
    });
    expect(backlog).toBe(BACKLOG);
    expect(reads.seq).toBe(0);
    expect(reads.index).toBeLessThanOrEqual(BACKLOG);
  });

  test(`running and finishing a run reads a few runs, with ${BACKLOG} running`, async () => {
    const { rows } = await executor.query<{ run_id: string; claim_token: string }>(`select run_id, claim_token from executor.claim_runs('scale', $1)`, [BACKLOG]);
    expect(rows).toHaveLength(BACKLOG);
    const { rows: running } = await db().admin.query<{ n: number }>(`select count(*)::int as n from data.job_runs where status = 'running'`);
    expect(running[0]?.n).toBe(BACKLOG);
    // Twenty runs, as in a batch: from the sixth on, PL/pgSQL runs its statements with generic plans.
    const statuses: string[] = [];
    const reads = await readsDuring(executor, runsOid, async () => {
      for (const { run_id, claim_token } of rows.slice(0, 20)) {
        const result = await executor.query<{ status: string }>(`select status from executor.run($1, 'scale', $2)`, [run_id, claim_token]);
        statuses.push(result.rows[0]?.status ?? '');
      }
    });
    expect(statuses).toEqual(Array(20).fill('succeeded'));
    expect(reads.seq).toBe(0);
    expect(reads.index).toBeLessThanOrEqual(20 * 5);
  }, 60_000);
});
