import { beforeAll, describe, expect, test } from 'vitest';
import type pg from 'pg';
import { freePort } from '../support/child.ts';
import { runCli } from '../support/cli.ts';
import { useTestDatabase } from '../support/database.ts';
import { createBilling, scheduleJob } from '../support/jobs.ts';

const COLUMNS = ['ID', 'OWNER', 'NAME', 'FUNCTION', 'WHEN', 'STATE', 'NEXT RUN (UTC)', 'LAST RUN (UTC)', 'LAST STATUS'] as const;
type Column = (typeof COLUMNS)[number];

/** The table `hardcron jobs` prints, cut at the columns of its header line. */
function parseTable(text: string): Array<Record<Column, string>> {
  const [header, ...lines] = text.replace(/\n$/, '').split('\n');
  const starts = COLUMNS.map((title) => (header as string).indexOf(title));
  expect(starts.every((start, i) => start >= 0 && (i === 0 || start > (starts[i - 1] as number)))).toBe(true);
  return lines.map((line) => Object.fromEntries(COLUMNS.map((title, i) => [title, line.slice(starts[i], starts[i + 1]).trim()])) as Record<Column, string>);
}

describe('hardcron jobs', { timeout: 60_000 }, () => {
  const db = useTestDatabase();
  const env = (): Record<string, string> => ({ DATABASE_URL: db().adminUrl });
  let alice: pg.Client;

  beforeAll(async () => {
    await createBilling(db());
    await db().addUser('alice', { scheduler: true, memberOf: ['billing'] });
    alice = await db().login('alice');
  });

  test('an empty database: "no jobs"', async () => {
    expect(await runCli(['jobs'], env())).toEqual({ code: 0, stdout: 'no jobs\n', stderr: '' });
  });

  test('a header and one row per job, newest first: id, owner nickname, function, when, state', async () => {
    const { id: cron } = await scheduleJob(alice, 'billing.close_day(date)', ['2026-11-01'], {
      schedule: '0 3 * * *',
      name: 'close the day',
      timeZone: 'Europe/Amsterdam',
    });
    const { id: once } = await scheduleJob(alice, 'billing.close_day(date)', ['2026-11-02'], { runAt: '2030-01-01T00:00:00Z', name: 'the first of 2030' });
    await alice.query('select api.pause_job($1)', [once]);

    const result = await runCli(['jobs'], env());
    expect([result.code, result.stderr]).toEqual([0, '']);
    expect(result.stdout.split('\n')[0]).toMatch(/^ID +OWNER +NAME +FUNCTION +WHEN +STATE +NEXT RUN \(UTC\) +LAST RUN \(UTC\) +LAST STATUS$/);
    const rows = parseTable(result.stdout);
    expect(rows).toEqual([
      {
        ID: once,
        OWNER: 'alice',
        NAME: 'the first of 2030',
        FUNCTION: 'billing.close_day(date)',
        WHEN: 'at 2030-01-01 00:00:00 UTC',
        STATE: 'paused',
        'NEXT RUN (UTC)': '-', // a paused job has no next run
        'LAST RUN (UTC)': '-',
        'LAST STATUS': '-',
      },
      {
        ID: cron,
        OWNER: 'alice',
        NAME: 'close the day',
        FUNCTION: 'billing.close_day(date)',
        WHEN: '0 3 * * * Europe/Amsterdam',
        STATE: 'enabled',
        'NEXT RUN (UTC)': expect.stringMatching(/^\d{4}-\d\d-\d\d 0[12]:00:00$/), // 03:00 in Amsterdam
        'LAST RUN (UTC)': '-',
        'LAST STATUS': '-',
      },
    ]);

    const newest = await runCli(['jobs', '--limit', '1'], env());
    expect(parseTable(newest.stdout).map((row) => row.ID)).toEqual([once]);
  });

  test('the database is down: one clean line, without the password', async () => {
    const port = await freePort();
    const result = await runCli(['jobs'], { DATABASE_URL: `postgres://someone:db-secret-pw@127.0.0.1:${port}/${db().name}` });
    expect(result.code).toBe(1);
    expect(result.stdout).toBe('');
    expect(result.stderr).toMatch(new RegExp(`^hardcron: cannot connect to postgres://someone:\\*\\*\\*@127\\.0\\.0\\.1:${port}/${db().name}: [^\\n]* \\[HC_CONNECT\\]\\n$`));
    expect(result.stderr).not.toContain('db-secret-pw');
  });

  test('usage errors', async () => {
    const [extra, limit] = await Promise.all([runCli(['jobs', 'extra'], env()), runCli(['jobs', '--limit', '0'], env())]);
    expect(extra).toMatchObject({ code: 1, stdout: '', stderr: expect.stringMatching(/^hardcron: hardcron jobs takes no arguments \[HC_USAGE\]\n$/) });
    expect(limit).toMatchObject({ code: 1, stdout: '', stderr: expect.stringMatching(/^hardcron: --limit is out of range: a whole number from 1 to 100000 \[HC_CONFIG_INVALID\]\n$/) });
  });
});

describe('--help of every command', () => {
  test.each(['migrate', 'executor', 'server', 'token', 'user', 'jobs', 'start'])(
    'hardcron %s --help exits 0 and prints its usage (without a database or settings)',
    { timeout: 60_000 },
    async (command) => {
      const result = await runCli([command, '--help']);
      expect(result.code).toBe(0);
      expect(result.stderr).toBe('');
      expect(result.stdout).toMatch(new RegExp(`^Usage: hardcron ${command}\\b`));
      expect(result.stdout.trim().split('\n').length).toBeGreaterThan(2);
    },
  );
});
