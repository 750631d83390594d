import { CronExpressionParser } from 'cron-parser';
import type pg from 'pg';
import { beforeAll, describe, expect, test } from 'vitest';
import { useTestDatabase } from '../support/database.ts';
import { createBilling, failureOf } from '../support/jobs.ts';

interface Occurrence {
  occurs_at: Date;
  local_time: string;
  shifted: boolean;
  repeated: boolean;
}

/**
 * api.preview_schedule, called by provisioned users over real logins: the next occurrences of an
 * expression from now, with their local times and DST flags, checked exactly as scheduling
 * checks a schedule and a zone. "Now" is the transaction's: each preview runs in a transaction
 * that also reads now(), so that expectations are computed from the same instant.
 */
describe('api.preview_schedule, as users over real logins', () => {
  const db = useTestDatabase();
  let alice: pg.Client; // a scheduler, member of billing
  let dave: pg.Client; // no scheduler, no owner: an authenticated client and nothing more

  beforeAll(async () => {
    await createBilling(db());
    await db().addUser('alice', { scheduler: true, memberOf: ['billing'] });
    await db().addUser('dave');
    alice = await db().login('alice');
    dave = await db().login('dave');
  });

  /** The preview and the transaction's now(), read in one transaction. */
  async function preview(client: pg.Client, schedule: string, zone?: string, count?: number): Promise<{ now: Date; rows: Occurrence[] }> {
    await client.query('begin');
    try {
      const now = (await client.query<{ now: Date }>('select now() as now')).rows[0]?.now as Date;
      const args = [schedule, ...(zone === undefined ? [] : [zone]), ...(count === undefined ? [] : [count])];
      const { rows } = await client.query<Occurrence>(
        `select * from api.preview_schedule(${args.map((_, i) => `$${i + 1}`).join(', ')})`,
        args,
      );
      return { now, rows };
    } finally {
      await client.query('commit');
    }
  }

  /** cron-parser's next occurrences after `after`, each from the previous one. */
  const cronParserNext = (expression: string, zone: string, after: Date, count: number): string[] => {
    const result: string[] = [];
    let at = after;
    for (let i = 0; i < count; i++) {
      at = CronExpressionParser.parse(expression, { tz: zone, currentDate: at }).next().toDate();
      result.push(at.toISOString());
    }
    return result;
  };

  /** An instant as local ISO 8601 time with the zone's offset, as the preview writes it. */
  const localIso = (at: Date, zone: string): string => {
    const parts = Object.fromEntries(
      new Intl.DateTimeFormat('en-CA', {
        timeZone: zone, hourCycle: 'h23', year: 'numeric', month: '2-digit', day: '2-digit',
        hour: '2-digit', minute: '2-digit', second: '2-digit', timeZoneName: 'longOffset',
      }).formatToParts(at).map((p) => [p.type, p.value]),
    );
    const offset = parts.timeZoneName === 'GMT' ? '+00:00' : String(parts.timeZoneName).replace('GMT', '');
    return `${parts.year}-${parts.month}-${parts.day}T${parts.hour}:${parts.minute}:${parts.second}${offset}`;
  };

  test('a user who may schedule nothing previews ten occurrences by default, in UTC: cron-parser\'s, from now', async () => {
    const { now, rows } = await preview(dave, '0 0 L * *');
    expect(rows.map((r) => r.occurs_at.toISOString())).toEqual(cronParserNext('0 0 L * *', 'UTC', now, 10));
    expect(rows.map((r) => r.local_time)).toEqual(rows.map((r) => localIso(r.occurs_at, 'UTC')));
    expect(rows.every((r) => !r.shifted && !r.repeated)).toBe(true);
  });

  test.each([
    ['0 0 * * 5L', 'America/New_York', 12],
    ['0 0 * * 1#2', 'Europe/Amsterdam', 12],
    ['*/20 9-17 * * mon-fri', 'Asia/Kolkata', 50],
    ['@annually', 'Pacific/Auckland', 3],
  ])('%s in %s: the next %i occurrences, with local times in the zone', async (schedule, zone, count) => {
    const { now, rows } = await preview(alice, schedule, zone, count);
    expect(rows.map((r) => r.occurs_at.toISOString())).toEqual(cronParserNext(schedule, zone, now, count));
    expect(rows.map((r) => r.local_time)).toEqual(rows.map((r) => localIso(r.occurs_at, zone)));
  });

  test('a time in a spring-forward gap is shifted, every year: 02:30 on the last Sunday of March in Amsterdam fires at 03:30 CEST', async () => {
    const { rows } = await preview(dave, '30 2 * 3 0L', 'Europe/Amsterdam', 3);
    expect(rows).toHaveLength(3);
    for (const row of rows) {
      expect(row).toMatchObject({ local_time: expect.stringMatching(/^\d{4}-03-(2[5-9]|3[01])T03:30:00\+02:00$/), shifted: true, repeated: false });
    }
    // The second Sunday of March in New York: 02:30 EST does not exist, 03:30 EDT fires.
    const newYork = await preview(dave, '30 2 * 3 sun#2', 'America/New_York', 2);
    for (const row of newYork.rows) {
      expect(row).toMatchObject({ local_time: expect.stringMatching(/^\d{4}-03-(0[89]|1[0-4])T03:30:00-04:00$/), shifted: true, repeated: false });
    }
  });

  test('a time in a repeated fall-back hour is flagged: once for 02:30, both copies for an hourly expression', async () => {
    const once = await preview(dave, '30 2 * 10 0L', 'Europe/Amsterdam', 2);
    for (const row of once.rows) {
      expect(row).toMatchObject({ local_time: expect.stringMatching(/^\d{4}-10-(2[5-9]|3[01])T02:30:00\+02:00$/), shifted: false, repeated: true });
    }
    // Every hour of the last Sunday of October: 25 occurrences, two of them at 02:00, one per offset.
    const hourly = await preview(dave, '0 * * 10 0L', 'Europe/Amsterdam', 25);
    const day = hourly.rows.map((r) => [r.local_time.slice(11), r.shifted, r.repeated]);
    expect(day.filter(([, , repeated]) => repeated)).toEqual([['02:00:00+02:00', false, true], ['02:00:00+01:00', false, true]]);
    expect(day.filter(([, shifted]) => shifted)).toEqual([]);
    expect(new Set(hourly.rows.map((r) => r.local_time.slice(0, 10))).size).toBe(1);
  });

  test('a zone known to PostgreSQL but not yet to hardcron is accepted, as scheduling accepts it', async () => {
    await db().admin.query(`delete from data.time_zones where name = 'Pacific/Chatham'`);
    const { now, rows } = await preview(dave, '45 12 * * *', 'Pacific/Chatham', 2);
    expect(rows.map((r) => r.occurs_at.toISOString())).toEqual(cronParserNext('45 12 * * *', 'Pacific/Chatham', now, 2));
    const { rows: known } = await db().admin.query(`select from data.time_zones where name = 'Pacific/Chatham'`);
    expect(known).toHaveLength(1);
  });

  describe('bad input: refused with the code and message scheduling gives, leaving nothing behind', () => {
    const state = async (): Promise<unknown> =>
      (await db().admin.query(`select (select count(*) from data.jobs)::int as jobs, (select count(*) from data.time_zones)::int as zones,
                                      (select count(*) from data.job_runs)::int as runs`)).rows[0];

    /** What schedule_job says of the same schedule and zone (alice may schedule billing.close_day). */
    const schedulingFailure = async (schedule: string | null, zone: string | null): Promise<{ code: string; message: string }> => {
      const failure = await failureOf(alice, `select api.schedule_job('billing.close_day(date)', '["2026-01-01"]', schedule => $1, time_zone => $2)`, [schedule, zone]);
      return { code: failure.code, message: failure.message };
    };

    test.each<[string, string | null, string | null, string, RegExp]>([
      ['an unknown zone', '0 3 * * *', 'Mars/Base', 'HC207', /^unknown time zone 'Mars\/Base'$/],
      ['a POSIX zone', '0 3 * * *', 'UTC+3', 'HC207', /^unknown time zone 'UTC\+3'$/],
      ['no zone', '0 3 * * *', null, 'HC207', /^unknown time zone NULL$/],
      ['a bad minute', '60 * * * *', 'UTC', 'HC206', /: minute 60 is out of range 0-59$/],
      ['31 February', '0 0 31 2 *', 'UTC', 'HC206', /: it never fires$/],
      ['a blank schedule', '  ', 'UTC', 'HC206', /: it is empty$/],
      ['W', '0 0 15W * *', 'UTC', 'HC206', /: W \(the nearest weekday\) is not supported$/],
      ['a lower-case l', '0 0 l * *', 'UTC', 'HC206', /: 'l': write L in upper case$/],
      ['a sixth week', '0 0 * * 1#6', 'UTC', 'HC206', /: '1#6': the week of n#k is 1-5$/],
      ['# in a list', '0 0 * * 1#2,3', 'UTC', 'HC206', /n#k is the whole day-of-week field/],
      ['a zone and a schedule both bad: the zone first, as in scheduling', '61 * * * *', 'Mars/Base', 'HC207', /^unknown time zone/],
    ])('%s', async (_what, schedule, zone, code, message) => {
      const before = await state();
      const failure = await failureOf(dave, 'select * from api.preview_schedule($1, $2)', [schedule, zone]);
      expect({ code: failure.code, message: failure.message }).toEqual({ code, message: expect.stringMatching(message) });
      if (schedule !== null) expect(await schedulingFailure(schedule, zone)).toEqual({ code: failure.code, message: failure.message });
      expect(await state()).toEqual(before);
    });

    test('no schedule: HC206, "it is empty" (scheduling would make a one-off job of it)', async () => {
      const failure = await failureOf(dave, 'select * from api.preview_schedule(null)');
      expect({ code: failure.code, message: failure.message }).toEqual({ code: 'HC206', message: "invalid cron expression '': it is empty" });
    });

    test.each([[0], [-1], [1001], [null]])('count %s: HC210, before the zone is looked at', async (count) => {
      const before = await state();
      const failure = await failureOf(dave, `select * from api.preview_schedule('0 3 * * *', 'Pacific/Chatham', $1)`, [count]);
      expect({ code: failure.code, message: failure.message }).toEqual({ code: 'HC210', message: `count must be from 1 to 1000, not ${count ?? 'NULL'}` });
      expect(await state()).toEqual(before);
    });

    test('count 1 and 1000 are taken: 1000 consecutive seconds', async () => {
      expect((await preview(dave, '0 3 * * *', 'UTC', 1)).rows).toHaveLength(1);
      const { now, rows } = await preview(dave, '* * * * * *', 'UTC', 1000);
      const first = Math.floor(now.getTime() / 1000) * 1000 + 1000;
      expect(rows.map((r) => r.occurs_at.getTime())).toEqual(Array.from({ length: 1000 }, (_, i) => first + i * 1000));
    });
  });

  test('only api.preview_schedule is the caller\'s: code.preview_schedule is not', async () => {
    const failure = await failureOf(dave, `select * from code.preview_schedule('0 3 * * *', 'UTC', 1)`);
    expect(failure.code).toBe('42501');
  });
});
