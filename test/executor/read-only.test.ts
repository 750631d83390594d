import { afterAll, beforeAll, describe, expect, test } from 'vitest';
import { pino } from 'pino';
import type pg from 'pg';
import { Executor } from '../../server/executor/executor.ts';
import { useTestDatabase } from '../support/database.ts';
import { eventually } from '../support/child.ts';
import { executorUrl, finishedRuns, runNow } from '../support/executor.ts';
import { createOwner } from '../support/jobs.ts';

interface LogLine {
  level: number;
  msg: string;
}

/**
 * A database that refuses writes behind the executor's address (a standby before its promotion,
 * here a database whose new sessions are read-only): the executor waits, says so once, and
 * carries on by itself once it accepts writes. (test/failover/ does the same with a real standby.)
 */
describe('the executor and a read-only database', () => {
  const db = useTestDatabase();
  let alice: pg.Client;

  beforeAll(async () => {
    await createOwner(db(), 'ro', `
      create function ro.work() returns void security definer set search_path = pg_catalog, pg_temp language sql as $$ select $$`);
    await db().addUser('alice', { scheduler: true, memberOf: ['ro'] });
    alice = await db().login('alice');
  });

  afterAll(async () => {
    await db().admin.query(`alter database ${db().admin.escapeIdentifier(db().name)} reset default_transaction_read_only`);
  });

  test('started against it, the executor waits with one log line, then starts and runs jobs once it accepts writes', async () => {
    const logs: LogLine[] = [];
    const database = db().admin.escapeIdentifier(db().name);
    await db().admin.query(`alter database ${database} set default_transaction_read_only = on`);
    const executor = new Executor({
      connectionString: await executorUrl(db()),
      pollIntervalMs: 100,
      listen: process.env.TEST_EXECUTOR_LISTEN !== 'false',
      logger: pino({ level: 'info' }, { write: (line: string) => void logs.push(JSON.parse(line) as LogLine) }),
    });
    let started = false;
    const starting = executor.start().then(() => {
      started = true;
    });
    try {
      // It says so, and has not started (new sessions stay read-only, however often it tries).
      await eventually('the read-only line', async () => (logs.some((line) => /read-only/.test(line.msg)) ? true : undefined));
      expect(started).toBe(false);
      await db().admin.query(`alter database ${database} reset default_transaction_read_only`);
      await starting;
      const id = await runNow(alice, 'ro.work()');
      expect((await finishedRuns(db(), id))[0]?.status).toBe('succeeded');
      expect(logs.filter((line) => /read-only/.test(line.msg))).toHaveLength(1);
      expect(logs.some((line) => /works again/.test(line.msg))).toBe(true);
      expect(logs.filter((line) => line.level >= 50)).toEqual([]); // no error lines
    } finally {
      await starting.catch(() => {});
      await executor.stop();
    }
  });
});
