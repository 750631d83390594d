import { afterAll, beforeAll, describe, expect, test } from 'vitest';
import type pg from 'pg';
import { useTestDatabase } from '../support/database.ts';

/**
 * Malformed input to api.schedule_job and api.update_job, from a provisioned user over a real
 * login. Every refusal must carry the documented HC2xx SQLSTATE (sql/routines/code/input.sql,
 * sql/routines/code/cron.sql) and a message a person can act on, and must leave nothing behind: no job
 * row, no changed job, and nothing an injection attempt asked for.
 */

type Param = 'function_signature' | 'arguments' | 'schedule' | 'run_at' | 'name' | 'time_zone' | 'options';
type Params = Partial<Record<Param, string | Date | null>>;

interface BadInput {
  what: string;
  params: Params;
  code: string;
  message: RegExp;
}

/** What a call came to: its SQLSTATE and message, or 'ok'. */
interface Outcome {
  code: string;
  message: string;
}

const CLOSE_DAY: Params = { function_signature: 'billing.close_day(date)', arguments: '["2026-01-01"]', schedule: '0 3 * * *' };
const CHARGE: Params = { function_signature: 'billing.charge(integer)', arguments: '[100]', schedule: '0 3 * * *' };
const FUTURE = '2099-01-01T00:00:00Z';

/** Statements an injection might try to run; if any ran, the side-effect check below sees it. */
const PAYLOADS = [
  `'); drop table billing.canary; --`,
  `"; delete from billing.canary; --`,
  `$$; insert into billing.closed values (current_date); $$`,
  `*/ ; create table public.pwned (); /*`,
  `') ; alter role current_user superuser; select ('`,
];

/** Raw PostgreSQL errors that must never reach the caller as the whole story. */
const RAW_ERROR = /^(invalid input syntax|syntax error|value too long|numeric field overflow|date\/time field value|invalid input value|unterminated|cannot cast|function .* does not exist|permission denied|query returned no rows|stack depth)/i;

const cron = (schedule: string, message: RegExp, what = `schedule ${JSON.stringify(schedule)}`): BadInput => ({
  what,
  params: { ...CLOSE_DAY, schedule },
  code: 'HC206',
  message,
});

const SCHEDULE_CASES: BadInput[] = [
  // function_signature
  ...PAYLOADS.map((payload, i) => ({
    what: `signature with an injection attempt #${i + 1}`,
    params: { ...CLOSE_DAY, function_signature: `billing.close_day(date)${payload}` },
    code: 'HC201',
    message: /^function '.*' not found/,
  })),
  {
    what: 'signature with the injection inside the type list',
    params: { ...CLOSE_DAY, function_signature: `billing.close_day(date); drop table billing.canary; --)` },
    code: 'HC201',
    message: /^function 'billing\.close_day\(date\); drop table billing\.canary; --\)' not found$/,
  },
  {
    what: 'signature with a quote in the name',
    params: { ...CLOSE_DAY, function_signature: `billing.close_day'; drop table billing.canary; --(date)` },
    code: 'HC201',
    message: /^function 'billing\.close_day''; drop table .*' not found: give it as schema\.name\(argument types\)$/,
  },
  {
    what: 'signature with a trailing comment',
    params: { ...CLOSE_DAY, function_signature: 'billing.close_day(date) -- comment' },
    code: 'HC201',
    message: /^function 'billing\.close_day\(date\) -- comment' not found$/,
  },
  {
    what: 'signature with a comment across the type list',
    params: { ...CLOSE_DAY, function_signature: 'billing.close_day(date /*, text */)' },
    code: 'HC201',
    message: /^function 'billing\.close_day\(date \/\*, text \*\/\)' not found$/,
  },
  {
    what: 'signature with dollar quotes',
    params: { ...CLOSE_DAY, function_signature: 'billing.close_day($$date$$)' },
    code: 'HC201',
    message: /not found/,
  },
  {
    what: 'signature not qualified with a schema',
    params: { ...CLOSE_DAY, function_signature: 'close_day(date)' },
    code: 'HC201',
    message: /^function 'close_day\(date\)' not found: give it as schema\.name\(argument types\)$/,
  },
  {
    what: 'signature with three name parts',
    params: { ...CLOSE_DAY, function_signature: 'db.billing.close_day(date)' },
    code: 'HC201',
    message: /give it as schema\.name\(argument types\)/,
  },
  {
    what: 'signature with the wrong argument types',
    params: { ...CLOSE_DAY, function_signature: 'billing.close_day(date, date)' },
    code: 'HC201',
    message: /^function 'billing\.close_day\(date, date\)' not found$/,
  },
  {
    what: 'signature naming a table',
    params: { ...CLOSE_DAY, function_signature: 'billing.canary' },
    code: 'HC201',
    message: /^function 'billing\.canary' not found$/,
  },
  {
    what: 'signature naming a PostgreSQL function',
    params: { ...CLOSE_DAY, function_signature: 'pg_catalog.pg_sleep(float8)', arguments: '[1]' },
    code: 'HC203',
    message: /^cannot schedule pg_catalog\.pg_sleep\(double precision\) \(rule 3\): .*belongs to PostgreSQL/,
  },
  {
    what: 'empty signature',
    params: { ...CLOSE_DAY, function_signature: '' },
    code: 'HC201',
    message: /^function_signature is required, e\.g\. 'billing\.close_day\(date\)'$/,
  },
  {
    what: 'null signature',
    params: { ...CLOSE_DAY, function_signature: null },
    code: 'HC201',
    message: /^function_signature is required/,
  },
  {
    what: 'signature longer than 1000 characters',
    params: { ...CLOSE_DAY, function_signature: `billing.close_day(${'date, '.repeat(200)}date)` },
    code: 'HC209',
    message: /^function_signature is longer than 1000 characters$/,
  },
  {
    what: 'signature with unicode look-alikes',
    params: { ...CLOSE_DAY, function_signature: 'billing.clοse_day（date）' }, // Greek omicron, full-width parentheses
    code: 'HC201',
    message: /^function 'billing\.clοse_day（date）' not found/,
  },
  {
    what: 'signature with control characters',
    params: { ...CLOSE_DAY, function_signature: 'billing.close_day(\u0007date\u001b[0m)' },
    code: 'HC201',
    message: /not found/,
  },

  // arguments
  {
    what: 'arguments as an object',
    params: { ...CLOSE_DAY, arguments: '{"day": "2026-01-01"}' },
    code: 'HC205',
    message: /^arguments must be a JSON array, e\.g\. '\["2026-01-01"\]'$/,
  },
  { what: 'arguments as a string', params: { ...CLOSE_DAY, arguments: '"2026-01-01"' }, code: 'HC205', message: /^arguments must be a JSON array/ },
  { what: 'arguments as a number', params: { ...CLOSE_DAY, arguments: '20260101' }, code: 'HC205', message: /^arguments must be a JSON array/ },
  { what: 'arguments as JSON null', params: { ...CLOSE_DAY, arguments: 'null' }, code: 'HC205', message: /^arguments must be a JSON array/ },
  { what: 'arguments as SQL NULL', params: { ...CLOSE_DAY, arguments: null }, code: 'HC205', message: /^arguments must be a JSON array/ },
  {
    what: 'arguments larger than 64 KiB',
    params: { ...CLOSE_DAY, arguments: JSON.stringify(['x'.repeat(70_000)]) },
    code: 'HC209',
    message: /^arguments are larger than 64 KiB$/,
  },
  {
    what: 'too few arguments',
    params: { ...CLOSE_DAY, arguments: '[]' },
    code: 'HC205',
    message: /^cannot schedule billing\.close_day\(date\) \(rule 6\): billing\.close_day\(date\) takes 1 argument, 0 given$/,
  },
  {
    what: 'too many arguments',
    params: { ...CLOSE_DAY, arguments: '["2026-01-01", "2026-01-02"]' },
    code: 'HC205',
    message: /takes 1 argument, 2 given$/,
  },
  {
    what: 'nested arrays for a date',
    params: { ...CLOSE_DAY, arguments: '[[["2026-01-01"]]]' },
    code: 'HC205',
    message: /\(rule 6\): argument 1: a JSON array cannot be a date$/,
  },
  {
    what: 'deeply nested JSON',
    params: { ...CLOSE_DAY, arguments: `[${'['.repeat(1000)}${']'.repeat(1000)}]` },
    code: 'HC205',
    message: /argument 1: a JSON array cannot be a date$/,
  },
  {
    what: 'an object for a date',
    params: { ...CLOSE_DAY, arguments: '[{"day": "2026-01-01"}]' },
    code: 'HC205',
    message: /\(rule 6\): argument 1: a JSON object cannot be a date$/,
  },
  {
    what: 'an impossible date',
    params: { ...CLOSE_DAY, arguments: '["2026-02-30"]' },
    code: 'HC205',
    message: /\(rule 6\): argument 1: "2026-02-30" is not a valid date/,
  },
  ...PAYLOADS.slice(0, 3).map((payload, i) => ({
    what: `an injection attempt as a date argument #${i + 1}`,
    params: { ...CLOSE_DAY, arguments: JSON.stringify([`2026-01-01${payload}`]) },
    code: 'HC205',
    message: /\(rule 6\): argument 1: ".*" is not a valid date/,
  })),
  {
    what: 'an integer below the range of integer',
    params: { ...CHARGE, arguments: '[-2147483649]' },
    code: 'HC205',
    message: /^cannot schedule billing\.charge\(integer\) \(rule 6\): argument 1: -2147483649 is not a valid integer/,
  },
  {
    what: 'an integer above the range of integer',
    params: { ...CHARGE, arguments: '[2147483648]' },
    code: 'HC205',
    message: /argument 1: 2147483648 is not a valid integer/,
  },
  {
    what: 'a huge number for an integer',
    params: { ...CHARGE, arguments: '[1e400]' },
    code: 'HC205',
    message: /argument 1: .* is not a valid integer/,
  },
  { what: 'a fraction for an integer', params: { ...CHARGE, arguments: '[1.5]' }, code: 'HC205', message: /argument 1: 1\.5 is not a valid integer/ },
  { what: 'a boolean for an integer', params: { ...CHARGE, arguments: '[true]' }, code: 'HC205', message: /argument 1: true is not a valid integer/ },
  { what: 'a numeric string with junk for an integer', params: { ...CHARGE, arguments: '["12; drop table billing.canary"]' }, code: 'HC205', message: /is not a valid integer/ },
  { what: 'an object for an integer', params: { ...CHARGE, arguments: '[{"amount": 5}]' }, code: 'HC205', message: /argument 1: a JSON object cannot be a integer$/ },
  { what: 'an array for an integer', params: { ...CHARGE, arguments: '[[5]]' }, code: 'HC205', message: /argument 1: a JSON array cannot be a integer$/ },

  // schedule
  cron('60 * * * *', /^invalid cron expression '60 \* \* \* \*': minute 60 is out of range 0-59$/),
  cron('*/0 * * * *', /: minute step must be at least 1$/),
  cron('* * 31 2 *', /^invalid cron expression '\* \* 31 2 \*': it never fires$/),
  cron('0 0 30 feb *', /: it never fires$/),
  cron('0 0 LW * *', /: W \(the nearest weekday\) is not supported$/),
  cron('0 0 * * 1#6', /: '1#6': the week of n#k is 1-5$/),
  cron('H * * * *', /: H \(a hashed value\) is not supported$/),
  cron('1 2 3', /: it has 3 fields; use 5, or 6 with seconds first$/),
  cron('', /^invalid cron expression '': it is empty$/, 'empty schedule'),
  cron('   ', /: it is empty$/, 'blank schedule'),
  cron('0 0 0 1 1 * 2026', /: it has 7 fields; use 5, or 6 with seconds first$/),
  cron('10-5 * * * *', /: minute range '10-5' runs backwards$/),
  cron('0 0 * smarch *', /: month field 'smarch' is not a value, range, list or step$/),
  cron('0 0 * * fun', /: 'fun' is not a day-of-week name \(sun mon tue wed thu fri sat\)$/),
  cron('0 0 * * jan', /: 'jan' is not a day-of-week name/),
  cron('0 abc * * *', /: hour field 'abc' is not a number$/),
  cron('0 24 * * *', /: hour 24 is out of range 0-23$/),
  cron('0 0 0 * *', /: day-of-month 0 is out of range 1-31$/),
  cron('0 0 * 13 *', /: month 13 is out of range 1-12$/),
  cron('0 0 * * 8', /: day-of-week 8 is out of range 0-7$/),
  cron('? * * * *', /: \? is allowed only in the day fields, not in minute$/),
  cron('1,,2 * * * *', /: minute field '' is not a value, range, list or step$/),
  cron('*/1000 * * * *', /: minute field '\*\/1000' is not a value, range, list or step$/),
  cron('０ ３ * * *', /: minute field '０' is not a value, range, list or step$/, 'schedule in full-width digits'),
  cron('0 3 * * *\u001b[2J', /^invalid cron expression '0 3 \* \* \*\u001b\[2J': day-of-week field/, 'schedule with a control character'),
  cron(`0 3 * * *${PAYLOADS[0]}`, /^invalid cron expression '0 3 \* \* \*''\); drop table billing\.canary; --': it has \d+ fields/, 'schedule with an injection attempt'),
  cron(`${'1,'.repeat(120)}1 * * * *`, /: it is longer than 200 characters$/, 'schedule longer than 200 characters'),

  // time_zone
  ...['UTC+3', 'Mars/Base', 'Mars/Base+3', '+03:00', 'Europe/Amsterdäm', '', `Europe/Amsterdam${PAYLOADS[0]}`, `Europe/${'A'.repeat(70)}`].map(
    (zone): BadInput => ({
      what: `time zone ${JSON.stringify(zone.length > 40 ? `${zone.slice(0, 40)}…` : zone)}`,
      params: { ...CLOSE_DAY, time_zone: zone },
      code: 'HC207',
      message: /^unknown time zone '.*'$/,
    }),
  ),
  { what: 'time zone NULL', params: { ...CLOSE_DAY, time_zone: null }, code: 'HC207', message: /^unknown time zone NULL$/ },

  // schedule and run_at
  {
    what: 'both schedule and run_at',
    params: { ...CLOSE_DAY, run_at: FUTURE },
    code: 'HC208',
    message: /^give exactly one of schedule \(a cron expression\) and run_at \(a time\)$/,
  },
  // Neither schedule nor run_at is no longer bad input: it schedules one run, due now (see
  // scheduling.test.ts).
  {
    what: 'an empty schedule and a run_at',
    params: { ...CLOSE_DAY, schedule: '', run_at: FUTURE },
    code: 'HC208',
    message: /^give exactly one of schedule/,
  },
  {
    what: 'run_at in the past',
    params: { ...CLOSE_DAY, schedule: null, run_at: '2020-01-01T00:00:00Z' },
    code: 'HC208',
    message: /^run_at 2020-01-01 .* is in the past$/,
  },
  { what: 'run_at -infinity', params: { ...CLOSE_DAY, schedule: null, run_at: '-infinity' }, code: 'HC208', message: /^run_at -infinity is in the past$/ },

  // options
  {
    what: 'an unknown option',
    params: { ...CLOSE_DAY, options: '{"retry": 3}' },
    code: 'HC210',
    message: /^unknown option 'retry'$/,
  },
  {
    what: 'an option key with an injection attempt',
    params: { ...CLOSE_DAY, options: JSON.stringify({ [`overlap${PAYLOADS[0]}`]: 'skip' }) },
    code: 'HC210',
    message: /^unknown option 'overlap''\); drop table billing\.canary; --'$/,
  },
  { what: 'options as an array', params: { ...CLOSE_DAY, options: '[]' }, code: 'HC210', message: /^options must be a JSON object/ },
  { what: 'options as a string', params: { ...CLOSE_DAY, options: '"skip"' }, code: 'HC210', message: /^options must be a JSON object/ },
  { what: 'options as JSON null', params: { ...CLOSE_DAY, options: 'null' }, code: 'HC210', message: /^options must be a JSON object/ },
  { what: 'overlap not one of its values', params: { ...CLOSE_DAY, options: '{"overlap": "sometimes"}' }, code: 'HC210', message: /^option overlap must be "skip", "queue" or "allow"$/ },
  { what: 'overlap as a number', params: { ...CLOSE_DAY, options: '{"overlap": 1}' }, code: 'HC210', message: /^option overlap must be/ },
  { what: 'overlap as an object', params: { ...CLOSE_DAY, options: '{"overlap": {"skip": true}}' }, code: 'HC210', message: /^option overlap must be/ },
  { what: 'overlap as an array of a valid value', params: { ...CLOSE_DAY, options: '{"overlap": ["skip"]}' }, code: 'HC210', message: /^option overlap must be/ },
  { what: 'missed as null', params: { ...CLOSE_DAY, options: '{"missed": null}' }, code: 'HC210', message: /^option missed must be "latest", "all" or "none"$/ },
  { what: 'timeout_seconds as a string', params: { ...CLOSE_DAY, options: '{"timeout_seconds": "60"}' }, code: 'HC210', message: /^option timeout_seconds must be a number from 0\.001 to 86400$/ },
  { what: 'timeout_seconds of 0', params: { ...CLOSE_DAY, options: '{"timeout_seconds": 0}' }, code: 'HC210', message: /^option timeout_seconds must be a number from/ },
  { what: 'timeout_seconds negative', params: { ...CLOSE_DAY, options: '{"timeout_seconds": -5}' }, code: 'HC210', message: /^option timeout_seconds must be a number from/ },
  { what: 'timeout_seconds above a day', params: { ...CLOSE_DAY, options: '{"timeout_seconds": 86401}' }, code: 'HC210', message: /^option timeout_seconds must be a number from/ },
  { what: 'retries a fraction', params: { ...CLOSE_DAY, options: '{"retries": 1.5}' }, code: 'HC210', message: /^option retries must be a whole number from 0 to 10$/ },
  { what: 'retries above 10', params: { ...CLOSE_DAY, options: '{"retries": 11}' }, code: 'HC210', message: /^option retries must be a whole number/ },
  { what: 'retries negative', params: { ...CLOSE_DAY, options: '{"retries": -1}' }, code: 'HC210', message: /^option retries must be a whole number/ },
  { what: 'max_missed of 0', params: { ...CLOSE_DAY, options: '{"max_missed": 0}' }, code: 'HC210', message: /^option max_missed must be a whole number from 1 to 1000$/ },
  { what: 'max_missed overflowing', params: { ...CLOSE_DAY, options: '{"max_missed": 1e400}' }, code: 'HC210', message: /^option max_missed must be a whole number/ },
  { what: 'retry_delay_seconds as a boolean', params: { ...CLOSE_DAY, options: '{"retry_delay_seconds": true}' }, code: 'HC210', message: /^option retry_delay_seconds must be a number from 0\.001 to 86400$/ },

  // name
  {
    what: 'name longer than 200 characters',
    params: { ...CLOSE_DAY, name: 'n'.repeat(201) },
    code: 'HC209',
    message: /^name is longer than 200 characters$/,
  },
  {
    what: 'name of 201 emoji',
    params: { ...CLOSE_DAY, name: '🕒'.repeat(201) },
    code: 'HC209',
    message: /^name is longer than 200 characters$/,
  },
  { what: 'empty name', params: { ...CLOSE_DAY, name: '' }, code: 'HC214', message: /^name must not be blank or contain control characters$/ },
  { what: 'blank name', params: { ...CLOSE_DAY, name: '   ' }, code: 'HC214', message: /^name must not be blank/ },
  ...['line\nbreak', 'tab\there', 'escape \u001b[31mred', 'bell\u0007', 'delete\u007f', 'C1 control \u009b31m', `injection${PAYLOADS[0]}\r\n`].map(
    (name): BadInput => ({
      what: `name with a control character: ${JSON.stringify(name)}`,
      params: { ...CLOSE_DAY, name },
      code: 'HC214',
      message: /^name must not be blank or contain control characters$/,
    }),
  ),
];

const UPDATE_CASES: BadInput[] = [
  { what: 'schedule with minute 60', params: { schedule: '60 * * * *' }, code: 'HC206', message: /: minute 60 is out of range 0-59$/ },
  { what: 'a schedule that never fires', params: { schedule: '* * 31 2 *' }, code: 'HC206', message: /: it never fires$/ },
  { what: 'both schedule and run_at', params: { schedule: '0 4 * * *', run_at: FUTURE }, code: 'HC208', message: /^give exactly one of schedule/ },
  { what: 'run_at in the past', params: { run_at: '2020-01-01T00:00:00Z' }, code: 'HC208', message: /is in the past$/ },
  { what: 'an unknown time zone', params: { time_zone: 'Mars/Base' }, code: 'HC207', message: /^unknown time zone 'Mars\/Base'$/ },
  { what: 'an unknown option', params: { options: '{"bogus": 1}' }, code: 'HC210', message: /^unknown option 'bogus'$/ },
  { what: 'options as an array', params: { options: '[]' }, code: 'HC210', message: /^options must be a JSON object/ },
  { what: 'a blank name', params: { name: ' ' }, code: 'HC214', message: /^name must not be blank/ },
  { what: 'a name too long', params: { name: 'n'.repeat(201) }, code: 'HC209', message: /^name is longer than 200 characters$/ },
  { what: 'arguments as an object', params: { arguments: '{}' }, code: 'HC205', message: /^arguments must be a JSON array/ },
  { what: 'arguments not a date', params: { arguments: '["yesterday-ish"]' }, code: 'HC205', message: /argument 1: "yesterday-ish" is not a valid date/ },
  {
    what: 'a signature with an injection attempt',
    params: { function_signature: `billing.close_day(date)${PAYLOADS[0]}` },
    code: 'HC201',
    message: /^function '.*' not found/,
  },
  {
    what: 'a function its arguments do not fit',
    params: { function_signature: 'billing.charge(integer)' },
    code: 'HC205',
    message: /^cannot schedule billing\.charge\(integer\) \(rule 6\): argument 1: "2026-01-01" is not a valid integer/,
  },
];

describe('malformed input to the api, from a provisioned user over a real login', () => {
  const db = useTestDatabase();
  let alice: pg.Client;

  beforeAll(async () => {
    const { admin, role } = db();
    await admin.query(`begin;
      set local role "${role('mgr')}";
      call mgr.re_create_role('billing', null, true);
      set local role "${role('billing')}";
      create schema billing;
      create table billing.closed (day date);
      create table billing.charged (amount integer);
      create table billing.canary (note text);
      insert into billing.canary values ('alive');
      create function billing.close_day(day date) returns int
        security definer set search_path = pg_catalog, pg_temp
        language sql as $$ insert into billing.closed (day) values (day) returning 1 $$;
      create function billing.charge(amount integer) returns int
        security definer set search_path = pg_catalog, pg_temp
        language sql as $$ insert into billing.charged (amount) values (amount) returning 1 $$;
      commit`);
    await db().addUser('alice', { scheduler: true, memberOf: ['billing'] });
    alice = await db().login('alice');
  });

  /** Calls api.<fn> with named parameters (after job_id, for update_job). */
  const call = async (fn: 'schedule_job' | 'update_job', params: Params, jobId?: string | null): Promise<Outcome> => {
    const names = Object.keys(params) as Param[];
    const values: unknown[] = names.map((name) => params[name]);
    const args = names.map((name, i) => `${name} => $${i + 1}`);
    if (fn === 'update_job') {
      values.push(jobId);
      args.unshift(`job_id => $${values.length}`);
    }
    try {
      await alice.query(`select * from api.${fn}(${args.join(', ')})`, values);
      return { code: 'ok', message: '' };
    } catch (error) {
      const { code = 'no sqlstate', message } = error as { code?: string; message: string };
      return { code, message };
    }
  };

  /** Everything a refused call or an injection might have changed. */
  const sideEffects = async (): Promise<Record<string, unknown>> => {
    const { rows } = await db().admin.query<Record<string, unknown>>(
      `select (select count(*)::int from data.jobs) as jobs,
              (select array_agg(note) from billing.canary) as canary,
              (select count(*)::int from billing.closed) as closed,
              (select count(*)::int from billing.charged) as charged,
              to_regclass('public.pwned') is null as no_pwned_table,
              (select rolsuper from pg_roles where rolname = $1) as alice_is_superuser,
              exists (select from pg_roles where rolname = $2) as billing_exists`,
      [db().role('alice'), db().role('billing')],
    );
    return rows[0] ?? {};
  };
  const CLEAN = { jobs: 0, canary: ['alive'], closed: 0, charged: 0, no_pwned_table: true, alice_is_superuser: false, billing_exists: true };

  test('the valid calls the cases depart from succeed (rolled back)', async () => {
    for (const params of [CLOSE_DAY, CHARGE, { ...CLOSE_DAY, schedule: null, run_at: FUTURE }]) {
      await alice.query('begin');
      try {
        expect(await call('schedule_job', params)).toEqual({ code: 'ok', message: '' });
      } finally {
        await alice.query('rollback');
      }
    }
    expect(await sideEffects()).toEqual(CLEAN);
  });

  test('the table covers every parameter of schedule_job and more than 40 cases', () => {
    expect(SCHEDULE_CASES.length).toBeGreaterThanOrEqual(40);
    const departed = new Set(
      SCHEDULE_CASES.flatMap(({ params }) => (Object.keys(params) as Param[]).filter((key) => params[key] !== CLOSE_DAY[key] && params[key] !== CHARGE[key])),
    );
    expect([...departed].sort()).toEqual(['arguments', 'function_signature', 'name', 'options', 'run_at', 'schedule', 'time_zone']);
  });

  test.each(SCHEDULE_CASES)('schedule_job refuses $what with $code', async ({ params, code, message }) => {
    const outcome = await call('schedule_job', params);
    const effects = await sideEffects();
    // A call wrongly accepted must not spoil the cases after it.
    if (outcome.code === 'ok') await db().admin.query('delete from data.jobs');
    expect(outcome).toEqual({ code, message: expect.stringMatching(message) });
    expect(outcome.message).not.toMatch(RAW_ERROR);
    expect(effects).toEqual(CLEAN);
  });

  describe('update_job', () => {
    let jobId: string;
    const jobRow = async (): Promise<unknown> =>
      (await db().admin.query('select * from data.jobs where id = $1', [jobId])).rows[0];
    let before: unknown;

    beforeAll(async () => {
      const { rows } = await alice.query<{ id: string }>(
        `select id from api.schedule_job('billing.close_day(date)', '["2026-01-01"]', '0 3 * * *', name => 'nightly close')`,
      );
      jobId = rows[0]?.id ?? '';
      before = await jobRow();
    });

    afterAll(async () => {
      await alice.query('select api.unschedule_job($1)', [jobId]);
    });

    test.each(UPDATE_CASES)('update_job refuses $what with $code and leaves the job as it was', async ({ params, code, message }) => {
      const outcome = await call('update_job', params, jobId);
      expect(outcome).toEqual({ code, message: expect.stringMatching(message) });
      expect(outcome.message).not.toMatch(RAW_ERROR);
      expect(await jobRow()).toEqual(before);
      expect(await sideEffects()).toEqual({ ...CLEAN, jobs: 1 });
    });

    test.each([
      ['a job that does not exist', '9223372036854775807', /^job 9223372036854775807 not found$/],
      ['a negative job id', '-1', /^job -1 not found$/],
      ['a NULL job id', null, /^job NULL not found$/],
    ])('update_job refuses %s with HC211', async (_what, id, message) => {
      expect(await call('update_job', { name: 'renamed' }, id)).toEqual({ code: 'HC211', message: expect.stringMatching(message) });
      expect(await jobRow()).toEqual(before);
    });
  });

  test('odd but valid input is stored verbatim and runs nothing', async () => {
    const accepted: [Params, Record<string, unknown>][] = [
      ...PAYLOADS.map((payload): [Params, Record<string, unknown>] => [{ ...CLOSE_DAY, name: payload }, { name: payload }]),
      [{ ...CLOSE_DAY, name: 'Zürich 日本 🕒 ملخص' }, { name: 'Zürich 日本 🕒 ملخص' }],
      [{ ...CLOSE_DAY, name: '🕒'.repeat(200) }, { name: '🕒'.repeat(200) }],
      [{ ...CHARGE, arguments: '[-1]' }, { arguments: [-1] }], // a valid integer: refusing it is the function's business
      [{ ...CHARGE, arguments: '[-2147483648]' }, { arguments: [-2147483648] }],
    ];
    for (const [params, stored] of accepted) {
      const names = Object.keys(params) as Param[];
      const { rows } = await alice.query<Record<string, unknown>>(
        `select * from api.schedule_job(${names.map((name, i) => `${name} => $${i + 1}`).join(', ')})`,
        names.map((name) => params[name]),
      );
      const job = rows[0] ?? {};
      expect(job).toMatchObject(stored);
      await alice.query('select api.unschedule_job($1)', [job.id]);
    }
    expect(await sideEffects()).toEqual(CLEAN);
  });
});
