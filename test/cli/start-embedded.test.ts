import { existsSync } from 'node:fs';
import { chmod, mkdtemp, readFile, rm, stat, writeFile } from 'node:fs/promises';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { afterAll, beforeAll, describe, expect, test } from 'vitest';
import { connectClient } from '../../server/db/connect.ts';
import { openAdminTarget, type DatabaseTarget } from '../../server/db/targets.ts';
import { freePort, spawnHardcron, type HardcronProcess } from '../support/child.ts';
import { runCli } from '../support/cli.ts';
import { data } from '../support/server.ts';

const READY = /^hardcron ready at (http:\/\/\S+?)\/? \(Ctrl-C stops\)$/;
const READY_TIMEOUT_MS = 90_000;
/** pino's level number for warn: nothing at this level or above on a clean stop. */
const WARN = 40;

function alive(pid: number): boolean {
  try {
    process.kill(pid, 0);
    return true;
  } catch (error) {
    return (error as NodeJS.ErrnoException).code === 'EPERM';
  }
}

/**
 * `hardcron start` the way a newcomer runs it: no DATABASE_URL, so it starts embedded
 * PostgreSQL 18 of its own under HARDCRON_DATA_DIR (whatever the suite's target). While it runs,
 * the other commands get nothing but HARDCRON_DATA_DIR and must use its cluster and its secret.
 * One start per file: each starts a cluster.
 */
describe('hardcron start on embedded PostgreSQL', () => {
  let dataDir: string;
  let start: HardcronProcess;
  let url: string;
  let recorded: string;
  const env = (): Record<string, string> => ({ HARDCRON_DATA_DIR: dataDir });
  const runningFile = (): string => join(dataDir, 'postgres', 'running.json');

  beforeAll(async () => {
    dataDir = await mkdtemp(join(tmpdir(), 'hardcron-start-embedded-'));
    // As root PostgreSQL runs as the OS user postgres, which must enter the data directory.
    await chmod(dataDir, 0o711);
    start = spawnHardcron(['start'], { ...env(), PORT: String(await freePort()) });
    [, url = ''] = await start.waitForLine(READY, READY_TIMEOUT_MS);
  }, READY_TIMEOUT_MS + 10_000);

  afterAll(async () => {
    await start?.kill();
    await rm(dataDir, { recursive: true, force: true });
  });

  test('it records where its cluster listens (mode 0600), naming the postmaster of its data directory', async () => {
    expect((await stat(runningFile())).mode & 0o777).toBe(0o600);
    recorded = await readFile(runningFile(), 'utf8');
    const record = JSON.parse(recorded) as { pid: number; port: number };
    const postmaster = (await readFile(join(dataDir, 'postgres', 'pgdata', 'postmaster.pid'), 'utf8')).split('\n');
    expect([record.pid, record.port]).toEqual([Number(postmaster[0]), Number(postmaster[3])]);
    // Its own process group's member, not a cluster of the suite.
    expect(start.liveGroup().map((member) => member.pid)).toContain(record.pid);
  });

  test('user add, token and jobs work against it with only HARDCRON_DATA_DIR, and the token works on its server', { timeout: 120_000 }, async () => {
    const added = await runCli(['user', 'add', 'alice', '--scheduler'], env());
    expect([added.code, added.stderr]).toEqual([0, '']);
    const token = await runCli(['token', 'alice'], env());
    expect([token.code, token.stderr]).toEqual([0, '']);
    const jobs = await runCli(['jobs'], env());
    expect([jobs.code, jobs.stderr]).toEqual([0, '']);
    const migrated = await runCli(['migrate'], env());
    expect([migrated.code, migrated.stderr]).toEqual([0, '']);

    // As alice: a scheduler with no jobs yet; the demo's job table is not hers to see.
    const { jobs: hers } = await data<{ jobs: { totalCount: number } }>({ url }, '{ jobs { totalCount } }', {}, token.stdout.trim());
    expect(hers.totalCount).toBe(0);
  });

  test('Ctrl-C (SIGINT to the process group): executor, server, then database, exit 0, lease released, nothing at warn level', { timeout: 90_000 }, async () => {
    const postmaster = Number((await readFile(join(dataDir, 'postgres', 'pgdata', 'postmaster.pid'), 'utf8')).split('\n')[0]);
    expect(alive(postmaster)).toBe(true);
    start.signalGroup('SIGINT');
    expect(await start.exited).toEqual({ code: 0, signal: null });
    for (const line of start.stderr.split('\n').filter(Boolean)) {
      expect((JSON.parse(line) as { level: number }).level, line).toBeLessThan(WARN);
    }
    // Nothing lost its database under it (PostgreSQL stopped while connections were open).
    expect(start.output).not.toContain('terminating connection');
    const after = start.stdout.slice(start.stdout.indexOf('hardcron ready at')).split('\n').slice(1).filter(Boolean);
    expect(after).toEqual(['stopping: executor', 'stopping: server', 'stopping: database', 'stopped']);
    expect(start.liveGroup()).toEqual([]);
    expect(alive(postmaster)).toBe(false);
    expect(existsSync(runningFile())).toBe(false); // removed on a clean stop
  });

  test('a stale record (its cluster is gone) does not stand in the way: the next command starts the cluster itself', { timeout: 120_000 }, async () => {
    await writeFile(runningFile(), recorded, { mode: 0o600 });
    const added = await runCli(['user', 'add', 'bob'], env());
    expect([added.code, added.stderr]).toEqual([0, '']);
    expect(existsSync(runningFile())).toBe(false);

    // What start left: its executor released its lease; alice and bob are in its database.
    let target: DatabaseTarget | undefined;
    try {
      target = await openAdminTarget({ databaseUrl: undefined, dataDir });
      const client = await connectClient(target.adminUrl, 'start-embedded test');
      try {
        const { rows: leases } = await client.query('select id from data.executors where id = $1::text', [`start:${start.pid}`]);
        expect(leases).toEqual([]);
        const { rows: users } = await client.query<{ rolname: string }>(
          `select rolname from pg_catalog.pg_roles where rolname operator(pg_catalog.=) any ($1::text[]) order by rolname`,
          [['d0$alice', 'd0$bob']],
        );
        expect(users.map((row) => row.rolname)).toEqual(['d0$alice', 'd0$bob']);
      } finally {
        await client.end();
      }
    } finally {
      await target?.stop();
    }
  });
});
