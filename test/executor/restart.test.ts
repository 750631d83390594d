import { mkdtemp, rm } from 'node:fs/promises';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { afterAll, describe, expect, test } from 'vitest';
import { startEmbeddedClusterProcess } from '../../server/db/embedded-process.ts';
import type { EmbeddedCluster } from '../../server/db/embedded.ts';
import { migrate } from '../../server/db/migrate.ts';
import { withDatabase } from '../../server/db/targets.ts';
import type { Executor } from '../../server/executor/executor.ts';
import { connect, loginUrl, withClient } from '../support/database.ts';
import { startExecutor } from '../support/executor.ts';
import { scheduleJob } from '../support/jobs.ts';
import { eventually } from '../support/child.ts';

/**
 * A cluster of this file's own (the shared one must not restart under other files), restarted
 * while an executor works on it.
 */
describe('PostgreSQL restarts while the executor runs jobs', () => {
  let dir = '';
  let cluster: EmbeddedCluster | undefined;
  let executor: Executor | undefined;

  afterAll(async () => {
    await executor?.stop();
    await cluster?.stop();
    if (dir) await rm(dir, { recursive: true, force: true });
  });

  test('the executor reconnects and carries on; no occurrence runs twice', async () => {
    dir = await mkdtemp(join(tmpdir(), 'hardcron-restart-'));
    cluster = await startEmbeddedClusterProcess({ dir, unsafeFast: true });
    const port = cluster.port;
    const adminUrl = withDatabase(cluster.superuserUrl, 'd1');
    await withClient(cluster.superuserUrl, (c) => c.query('create database d1'));
    await migrate({ connectionString: adminUrl });
    await withClient(adminUrl, (c) =>
      c.query(`begin;
        set local role "d1$mgr";
        call mgr.re_create_role('ticks', null, true);
        call mgr.add_user('alice', 'pw', true, '{ticks}');
        set local role "d1$ticks";
        create schema ticks;
        create table ticks.done (at timestamptz primary key);
        create function ticks.tick(at timestamptz) returns void security definer set search_path = pg_catalog, pg_temp
          language sql as $$ insert into ticks.done values (clock_timestamp()) $$;
        reset role;
        alter role "d1$executor" password 'ex';
        commit`),
    );
    const alice = await connect(loginUrl(adminUrl, 'd1$alice', 'pw'));
    await scheduleJob(alice, 'ticks.tick(timestamptz)', ['2026-01-01'], { schedule: '* * * * * *' });
    await alice.end();

    executor = await startExecutor(null, { connectionString: loginUrl(adminUrl, 'd1$executor', 'ex'), concurrency: 2 });
    const succeeded = async (): Promise<number> =>
      withClient(adminUrl, async (c) => (await c.query(`select count(*)::int as n from data.job_runs where status = 'succeeded'`)).rows[0].n);
    const succeededAtLeast = (n: number): Promise<true> =>
      eventually(`${n} succeeded runs`, async () => ((await succeeded()) >= n ? true : undefined));
    await succeededAtLeast(2);
    await cluster.stop();
    await new Promise((resolve) => setTimeout(resolve, 1500)); // down for a while: part of the scenario, not a margin
    cluster = await startEmbeddedClusterProcess({ dir, port, unsafeFast: true });
    const before = await succeeded();
    await succeededAtLeast(before + 3);

    const { rows } = await withClient(adminUrl, (c) =>
      c.query(`select (select count(*)::int from (select scheduled_for from data.job_runs where status = 'succeeded'
                                                    group by job_id, scheduled_for having count(*) > 1) twice) as twice,
                      (select count(*)::int from data.job_runs where status = 'succeeded') as succeeded,
                      (select count(*)::int from ticks.done) as done`),
    );
    expect(rows[0].twice).toBe(0);
    expect(rows[0].done).toBe(rows[0].succeeded);
  }, 90_000);
});
