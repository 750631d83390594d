import { readRoutines, ROUTINES_DIR } from '../../server/db/migrate.ts';
import type pg from 'pg';
import { afterAll, beforeAll, describe, expect, test } from 'vitest';
import type { Executor } from '../../server/executor/executor.ts';
import { useTestDatabase } from '../support/database.ts';
import { finishedRuns, runNow, startExecutor, waitFor } from '../support/executor.ts';
import { countRows, createOwner } from '../support/jobs.ts';

/** Every SQLSTATE hardcron's SQL raises, read from the routine files (not a hand-kept list). */
async function hardcronSqlstates(): Promise<string[]> {
  const codes = new Set<string>();
  for (const routine of await readRoutines(ROUTINES_DIR)) {
    for (const match of routine.sql.matchAll(/'(HC[0-9]{3})'/g)) codes.add(match[1] as string);
  }
  return [...codes].sort();
}

/**
 * A job may raise any SQLSTATE, hardcron's own included. None of them steers the executor: each
 * run is recorded failed with the job's code (its effects rolled back), nothing stays running,
 * and the job's next run happens. The executor decides by re-reading the run's state; it used
 * to take HC303 from a job for "no longer ours" and leave the run running for ever, with every
 * later occurrence skipped.
 */
describe('a job that raises hardcron SQLSTATEs', () => {
  const db = useTestDatabase();
  let alice: pg.Client;
  let executor: Executor;
  let codes: string[];

  beforeAll(async () => {
    codes = await hardcronSqlstates();
    await createOwner(db(), 'forge', `
      create table forge.effects (code text);
      create function forge.raise(code text) returns void security definer set search_path = pg_catalog, pg_temp
        language plpgsql as $$
        begin
          insert into forge.effects values (code);
          if code = 'P0004' then
            assert false, 'an assertion of the job';
          end if;
          raise exception 'the job raises %', code using errcode = code, hint = 'forged by the job';
        end $$`);
    await db().addUser('alice', { scheduler: true, memberOf: ['forge'] });
    alice = await db().login('alice');
    executor = await startExecutor(db(), { concurrency: 2 });
  });
  afterAll(async () => {
    await executor?.stop();
    await alice?.end();
  });

  test('the migrations raise the codes this test forges', () => {
    // The list is read from sql/: a regex that matched nothing would make this test pass vacuously.
    expect(codes).toEqual(expect.arrayContaining(['HC211', 'HC302', 'HC303']));
    expect(codes.length).toBeGreaterThan(15);
  });

  test('each run is recorded failed with the job\'s own code, twice in a row, and nothing stays running', { timeout: 120_000 }, async () => {
    // Besides hardcron's codes: connection and shutdown codes a client might take for a broken
    // connection, serialization and deadlock codes, and an assertion (which plpgsql's OTHERS
    // does not catch).
    const forged = [...codes, '08006', '57P01', '57P02', '40001', '40P01', 'P0004', 'XX000'];
    const jobs = new Map<string, string>();
    for (const code of forged) jobs.set(code, await runNow(alice, 'forge.raise(text)', [code]));

    for (const [code, jobId] of jobs) {
      const [run] = await finishedRuns(db(), jobId, 1);
      expect({ code, status: run?.status, sqlstate: run?.error_sqlstate }).toEqual({ code, status: 'failed', sqlstate: code });
    }
    for (const jobId of jobs.values()) await alice.query('select api.run_job_now($1)', [jobId]);
    for (const [code, jobId] of jobs) {
      const runs = await finishedRuns(db(), jobId, 2);
      expect({ code, statuses: runs.map((r) => r.status) }).toEqual({ code, statuses: ['failed', 'failed'] });
    }
    await waitFor(db(), `select count(*) = 0 as done from data.job_runs where status = 'running'`);
    expect(await countRows(db(), 'select from forge.effects')).toBe(0);
  });

  test('a forged cancel is labelled timed_out and changes nothing else', { timeout: 60_000 }, async () => {
    const jobId = await runNow(alice, 'forge.raise(text)', ['57014']);
    const [run] = await finishedRuns(db(), jobId, 1);
    expect({ status: run?.status, sqlstate: run?.error_sqlstate }).toEqual({ status: 'timed_out', sqlstate: '57014' });
    await alice.query('select api.run_job_now($1)', [jobId]);
    expect((await finishedRuns(db(), jobId, 2)).map((r) => r.status)).toEqual(['timed_out', 'timed_out']);
  });
});
