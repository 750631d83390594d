import { afterAll, beforeAll, describe, expect, test } from 'vitest';
import type pg from 'pg';
import type { Executor } from '../../server/executor/executor.ts';
import { connect, useTestDatabase } from '../support/database.ts';
import { startExecutor, waitFor } from '../support/executor.ts';
import { createOwner, scheduleJob } from '../support/jobs.ts';
import { backendPid, waitForLockWaiters } from '../support/locks.ts';

const CONCURRENCY = 4;
const MAX_RUNS_PER_OWNER = 2;
const EXECUTOR_BACKENDS = `a.application_name like 'hardcron executor%'`;

/**
 * One owner cannot starve another: mallory's jobs hang (on a row lock the test holds, so they
 * hang exactly as long as the test says), every second, three of them; bob's one per-second job
 * must keep running on the same executor meanwhile. The executor's defence is a cap on the
 * connections one owner's runs may hold (`maxRunsPerOwner`), so there is always room for bob.
 */
describe('an owner whose runs hang cannot starve another owner', () => {
  const db = useTestDatabase();
  let executor: Executor | undefined;
  let holder: pg.Client | undefined;

  beforeAll(async () => {
    await createOwner(db(), 'mallory', `
      create table mallory.target (id int primary key, n int not null default 0);
      insert into mallory.target (id) values (1);
      create function mallory.grab() returns void security definer set search_path = pg_catalog, pg_temp
        language sql as $$ update mallory.target set n = n + 1 where id = 1 $$`);
    await createOwner(db(), 'bob', `
      create table bob.ticks (at timestamptz default clock_timestamp());
      create function bob.tick() returns void security definer set search_path = pg_catalog, pg_temp
        language sql as $$ insert into bob.ticks default values $$`);
    await db().addUser('mallory_user', { scheduler: true, memberOf: ['mallory'] });
    await db().addUser('bob_user', { scheduler: true, memberOf: ['bob'] });
  });

  afterAll(async () => {
    await holder?.query('rollback').catch(() => {});
    await holder?.end();
    await executor?.stop();
  });

  test(`three per-second jobs of mallory hanging on a lock: bob's per-second job still succeeds 5 times (at most ${MAX_RUNS_PER_OWNER} of ${CONCURRENCY} connections are mallory's)`, async () => {
    const { admin } = db();
    const mallory = await db().login('mallory_user');
    const bob = await db().login('bob_user');

    // The test holds the row every one of mallory's runs updates: they wait until it lets go.
    holder = await connect(db().adminUrl);
    const holderPid = await backendPid(holder);
    await holder.query('begin');
    await holder.query('select n from mallory.target where id = 1 for update');

    // overlap 'allow': a hanging run does not stop her next occurrences from being claimed too,
    // so she asks for as many connections as she can. A long timeout keeps them hanging for the
    // whole test instead of timing out and freeing the connection on their own.
    const malloryJobs: string[] = [];
    for (let i = 0; i < 3; i++) {
      const { id } = await scheduleJob(mallory, 'mallory.grab()', [], {
        schedule: '* * * * * *',
        options: { overlap: 'allow', timeout_seconds: 600 },
      });
      malloryJobs.push(id);
    }
    const { id: bobJob } = await scheduleJob(bob, 'bob.tick()', [], { schedule: '* * * * * *' });

    executor = await startExecutor(db(), { concurrency: CONCURRENCY, maxRunsPerOwner: MAX_RUNS_PER_OWNER });

    // Mallory's runs are in and hanging before bob's runs are counted.
    await waitForLockWaiters(db(), EXECUTOR_BACKENDS);
    await waitFor(db(), `select count(*) >= 5 as done from data.job_runs where job_id = $1 and status = 'succeeded'`, [bobJob], 60_000);

    // ... and still hanging now that bob has had his 5 runs: the test's lock was never let go.
    const { rows: [still] } = await admin.query<{ holder: string; mallory_running: number; waiting: number; n: number }>(
      `select (select state from pg_stat_activity where pid = $1) as holder,
              (select count(*)::int from data.job_runs where job_id = any ($2::bigint[]) and status = 'running') as mallory_running,
              (select count(*)::int from pg_stat_activity a
                where a.datname = current_database() and a.wait_event_type = 'Lock' and ${EXECUTOR_BACKENDS}) as waiting,
              (select n from mallory.target where id = 1) as n`,
      [holderPid, malloryJobs],
    );
    expect(still).toMatchObject({ holder: 'idle in transaction', n: 0 });
    expect(still?.mallory_running).toBeGreaterThanOrEqual(1);
    expect(still?.waiting).toBeGreaterThanOrEqual(1);
    expect(still?.waiting).toBeLessThanOrEqual(MAX_RUNS_PER_OWNER); // the cap: the other connections stayed free for bob
    const bobTicks = await admin.query<{ n: number }>('select count(*)::int as n from bob.ticks');
    const bobSucceeded = await admin.query<{ n: number }>(
      `select count(*)::int as n from data.job_runs where job_id = $1 and status = 'succeeded'`,
      [bobJob],
    );
    expect(bobTicks.rows[0]?.n).toBe(bobSucceeded.rows[0]?.n);

    // Let go: mallory's runs finish; once the executor has stopped, none is left running.
    await holder.query('commit');
    await executor.stop();
    executor = undefined;
    const { rows } = await admin.query<{ status: string; n: number }>(
      `select status, count(*)::int as n from data.job_runs where status = 'running' group by status`,
    );
    expect(rows).toEqual([]);
  });
});
