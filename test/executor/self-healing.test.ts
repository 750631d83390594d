import { connect as connectTcp, createServer, type Server, type Socket } from 'node:net';
import { afterEach, beforeAll, describe, expect, test } from 'vitest';
import type pg from 'pg';
import type { Executor } from '../../server/executor/executor.ts';
import { connect, useTestDatabase, type TestDatabase } from '../support/database.ts';
import { executorUrl, runNow, startExecutor, waitFor } from '../support/executor.ts';
import { createOwner, scheduleJob } from '../support/jobs.ts';
import { hostAndPort } from '../support/tcp-proxy.ts';

const LEASE_SECONDS = 6; // short, so the test is quick; long enough that a busy machine does not let a healthy executor's lease lapse
/** Ceilings, not expectations: each wait ends as soon as its state holds. */
const CEILING_MS = 60_000;

/** One proxied connection: the executor's socket and the server's. */
interface Link {
  readonly number: number;
  readonly client: Socket;
  readonly upstream: Socket;
}

/**
 * A TCP proxy in front of PostgreSQL that fails the way networks do, one connection at a time:
 * `swallowAnswersAfter` lets a statement through and drops everything the server answers from
 * then on (the answer is lost on the way back); `partition` stops forwarding in both directions
 * without closing anything (a network partition: neither side learns of it), `heal` delivers
 * what was held back; `cut` closes one connection; `close` closes all and stops listening.
 * (test/support/tcp-proxy.ts pipes whole connections and can only take them all away at once.)
 */
class FaultyProxy {
  private readonly links = new Map<number, Link>();
  private readonly held = new Map<Socket, Buffer[]>();
  private readonly swallowing = new Set<number>();
  private partitioned = false;
  private accepted = 0;
  private swallowAfter: { marker: string; found: (link: number) => void } | undefined;

  private constructor(private readonly server: Server) {}

  static async start(target: { host: string; port: number }): Promise<FaultyProxy> {
    let proxy: FaultyProxy | undefined;
    const server = createServer((client) => proxy?.accept(client, target));
    proxy = new FaultyProxy(server);
    await new Promise<void>((resolve, reject) => {
      server.once('error', reject);
      server.listen(0, '127.0.0.1', () => resolve());
    });
    return proxy;
  }

  get port(): number {
    const address = this.server.address();
    if (address === null || typeof address === 'string') throw new Error('the proxy has no port');
    return address.port;
  }

  /** `url` with its host and port replaced by the proxy's. */
  url(url: string): string {
    const copy = new URL(url);
    copy.hostname = '127.0.0.1';
    copy.port = String(this.port);
    return copy.toString();
  }

  /** Resolves with the connection that sends `marker` first; whatever the server answers on it from then on is dropped. */
  swallowAnswersAfter(marker: string): Promise<number> {
    return new Promise((resolve) => {
      this.swallowAfter = { marker, found: resolve };
    });
  }

  partition(): void {
    this.partitioned = true;
  }

  heal(): void {
    this.partitioned = false;
    for (const [socket, chunks] of this.held) for (const chunk of chunks.splice(0)) socket.write(chunk);
  }

  cut(link: number): void {
    const found = this.links.get(link);
    found?.client.destroy();
    found?.upstream.destroy();
  }

  async close(): Promise<void> {
    const closed = new Promise<void>((resolve) => this.server.close(() => resolve()));
    for (const link of this.links.values()) {
      link.client.destroy();
      link.upstream.destroy();
    }
    await closed;
  }

  private accept(client: Socket, target: { host: string; port: number }): void {
    const number = ++this.accepted;
    const upstream = connectTcp(target);
    const link = { number, client, upstream };
    this.links.set(number, link);
    this.held.set(client, []);
    this.held.set(upstream, []);
    const end = (): void => {
      client.destroy();
      upstream.destroy();
      this.links.delete(number);
      this.held.delete(client);
      this.held.delete(upstream);
    };
    client.on('error', end).on('close', end);
    upstream.on('error', end).on('close', end);
    client.on('data', (chunk: Buffer) => {
      if (this.swallowAfter && chunk.includes(this.swallowAfter.marker)) {
        this.swallowing.add(number);
        this.swallowAfter.found(number);
        this.swallowAfter = undefined;
      }
      this.forward(upstream, chunk);
    });
    upstream.on('data', (chunk: Buffer) => {
      if (!this.swallowing.has(number)) this.forward(client, chunk);
    });
  }

  private forward(to: Socket, chunk: Buffer): void {
    if (this.partitioned) this.held.get(to)?.push(chunk);
    else to.write(chunk);
  }
}

/** Runs of `jobId` by status, e.g. { succeeded: 5, running: 1 }. */
async function runsByStatus(db: TestDatabase, jobId: string): Promise<Record<string, number>> {
  const { rows } = await db.admin.query<{ status: string; n: number }>(
    'select status, count(*)::int as n from data.job_runs where job_id = $1 group by status',
    [jobId],
  );
  return Object.fromEntries(rows.map((row) => [row.status, row.n]));
}

/** Occurrences of any job that succeeded more than once: must be none. */
async function ranTwice(db: TestDatabase): Promise<unknown[]> {
  return (
    await db.admin.query(
      `select job_id, scheduled_for, count(*)::int as n from data.job_runs where status = 'succeeded'
        group by job_id, scheduled_for having count(*) > 1`,
    )
  ).rows;
}

async function stillRunning(db: TestDatabase): Promise<unknown[]> {
  return (await db.admin.query(`select id, job_id, executor_id from data.job_runs where status = 'running'`)).rows;
}

describe('the executor heals what the network breaks', () => {
  const db = useTestDatabase();
  const executors: Executor[] = [];
  const proxies: FaultyProxy[] = [];
  let alice: pg.Client;
  let bob: pg.Client;
  let url = '';

  beforeAll(async () => {
    await createOwner(db(), 'stranded', `
      create table stranded.effects (at timestamptz default clock_timestamp());
      create function stranded.once() returns void security definer set search_path = pg_catalog, pg_temp
        language sql as $$ insert into stranded.effects default values $$`);
    await createOwner(db(), 'slow', `
      create table slow.target (id int primary key, n int not null default 0);
      insert into slow.target (id) values (1);
      create table slow.gate (x int);
      create table slow.effects (at timestamptz default clock_timestamp());
      -- Takes a row lock, then waits at a gate the test holds shut: a run in progress holding locks.
      create function slow.hold() returns void security definer set search_path = pg_catalog, pg_temp
        language sql as $$
          update slow.target set n = n + 1 where id = 1;
          lock table slow.gate in access share mode;
          insert into slow.effects default values $$`);
    await createOwner(db(), 'tick', `
      create table tick.effects (at timestamptz default clock_timestamp());
      create function tick.tick() returns void security definer set search_path = pg_catalog, pg_temp
        language sql as $$ insert into tick.effects default values $$`);
    await db().addUser('alice', { scheduler: true, memberOf: ['stranded', 'slow'] });
    await db().addUser('bob', { scheduler: true, memberOf: ['tick'] });
    alice = await db().login('alice');
    bob = await db().login('bob');
    // One password for every executor of this file: executorUrl() gives the role a new one each time.
    url = await executorUrl(db());
  });

  // Each test's executors and proxies go with it, even when it fails: a leftover executor would
  // claim the next test's runs.
  afterEach(async () => {
    await Promise.allSettled(proxies.splice(0).map((proxy) => proxy.close()));
    await Promise.allSettled(executors.splice(0).map((executor) => executor.stop()));
  });

  const start = async (options: Parameters<typeof startExecutor>[1]): Promise<Executor> => {
    const executor = await startExecutor(null, { connectionString: url, leaseSeconds: LEASE_SECONDS, ...options });
    executors.push(executor);
    return executor;
  };

  test('lost answer: the claim commits but its answer never arrives; the stranded run is declared lost and its occurrence retried, succeeding once', async () => {
    const proxy = await FaultyProxy.start(hostAndPort(url));
    proxies.push(proxy);
    // Due before the executor starts, so its first claim takes it.
    const job = await runNow(alice, 'stranded.once()', [], { retry_delay_seconds: 0.5 });
    const claiming = proxy.swallowAnswersAfter('executor.claim_runs');
    const executor = await start({ connectionString: proxy.url(url), concurrency: 1 });

    // The claim has committed (its run is recorded `running`), and the executor never heard of it.
    const link = await claiming;
    await waitFor(db(), `select exists (select from data.job_runs where job_id = $1 and status = 'running') as done`, [job], CEILING_MS);
    proxy.cut(link); // the executor reconnects through the proxy, which still listens

    // The executor is alive and renewing its lease, so only the defence (a run nobody is running
    // is lost) can end the stranded run; the lease would never expire.
    await waitFor(db(), `select exists (select from data.job_runs where job_id = $1 and status = 'lost') as done`, [job], CEILING_MS);
    await waitFor(db(), `select exists (select from data.job_runs where job_id = $1 and status = 'succeeded') as done`, [job], CEILING_MS);
    await executor.stop();

    const { rows: runs } = await db().admin.query<{ status: string; attempt: number }>(
      'select status, attempt from data.job_runs where job_id = $1 order by id',
      [job],
    );
    expect(runs).toEqual([
      { status: 'lost', attempt: 1 },
      { status: 'succeeded', attempt: 2 },
    ]);
    expect((await db().admin.query('select count(*)::int as n from stranded.effects')).rows[0].n).toBe(1);
    expect(await stillRunning(db())).toEqual([]);
  });

  test('zombie: executor A goes silent mid-run holding locks (a partition, nothing closed); executor B keeps running other jobs; afterwards nothing stays running and nothing ran twice', async () => {
    const { admin } = db();
    const gate = await connect(db().adminUrl);
    try {
      await gate.query('begin');
      await gate.query('lock table slow.gate in access exclusive mode');

      const proxy = await FaultyProxy.start(hostAndPort(url));
      proxies.push(proxy);
      const zombie = await start({ connectionString: proxy.url(url), executorId: 'zombie-a', concurrency: 1, shutdownGraceMs: 1000 });
      const held = await runNow(alice, 'slow.hold()', [], { retry_delay_seconds: 0.5 });
      // A's run is in: it holds slow.target's row and waits at the gate.
      const zombieWaits = `select exists (select from pg_stat_activity a where a.datname = current_database()
                             and a.application_name = 'hardcron executor zombie-a' and a.wait_event_type = 'Lock') as done`;
      await waitFor(db(), zombieWaits, [], CEILING_MS);

      proxy.partition(); // A's connections go silent, its control connection too: its lease will run out
      // B has one connection: if anything of the zombie's (its locks, its run retried while it
      // still holds them) makes B wait, everything B should run waits with it.
      await start({ executorId: 'healthy-b', concurrency: 1 });
      const { id: ticking } = await scheduleJob(bob, 'tick.tick()', [], { schedule: '* * * * * *' });

      // B keeps working after A's lease has run out (when A's run becomes someone else's business) ...
      await waitFor(db(), `select not exists (select from data.executors where id = 'zombie-a' and lease_expires_at > now()) as done`, [], CEILING_MS);
      const before = (await runsByStatus(db(), ticking)).succeeded ?? 0;
      await waitFor(db(), `select count(*) >= $2 as done from data.job_runs where job_id = $1 and status = 'succeeded'`, [ticking, before + 5], CEILING_MS);
      // ... while A is still there, partitioned, its run still holding its locks.
      expect((await admin.query<{ done: boolean }>(zombieWaits)).rows[0]?.done).toBe(true);
      expect((await admin.query('select n from slow.target')).rows).toEqual([{ n: 0 }]);

      // Kill A (its sockets close: the server ends its session) and open the gate.
      await proxy.close();
      // A can no longer reach the database: its stop() may fail to release its lease and say so.
      // What is checked is what the database is left with, not how A's process takes its end.
      const zombieStopped = zombie.stop().catch(() => {});
      await gate.query('commit');

      await waitFor(db(), `select exists (select from data.job_runs where job_id = $1 and status = 'succeeded') as done`, [held], CEILING_MS);
      await zombieStopped;
      for (const executor of executors.splice(0)) await executor.stop();

      expect(await stillRunning(db())).toEqual([]);
      expect(await ranTwice(db())).toEqual([]);
      const { rows: [effects] } = await admin.query<{ held: number; held_succeeded: number; target: number; ticks: number; ticks_succeeded: number }>(
        `select (select count(*)::int from slow.effects) as held,
                (select count(*)::int from data.job_runs where job_id = $1 and status = 'succeeded') as held_succeeded,
                (select n from slow.target where id = 1) as target,
                (select count(*)::int from tick.effects) as ticks,
                (select count(*)::int from data.job_runs where job_id = $2 and status = 'succeeded') as ticks_succeeded`,
        [held, ticking],
      );
      expect(effects).toEqual({ held: 1, held_succeeded: 1, target: 1, ticks: effects?.ticks_succeeded, ticks_succeeded: effects?.ticks_succeeded });
    } finally {
      await gate.query('rollback').catch(() => {});
      await gate.end();
    }
  });
});
