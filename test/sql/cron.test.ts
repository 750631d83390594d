import { CronExpressionParser } from 'cron-parser';
import { describe, expect, test } from 'vitest';
import { useTestDatabase } from '../support/database.ts';

/**
 * code.cron_next (sql/routines/code/cron.sql) plans next_run_at when a job is scheduled; the executor is
 * to use cron-parser. The two must name the same instants, so this file compares them on a
 * deterministic pseudo-random corpus of expressions, zones and instants, many of them right
 * around the daylight-saving changes of 2026, and checks the documented DST behaviour directly.
 */

const SEED = 0x2026_0329;
const OCCURRENCES = 3;

const ZONES = [
  'UTC',
  'Europe/Amsterdam',
  'America/New_York',
  'Australia/Lord_Howe', // 30-minute DST
  'Asia/Kolkata', // +05:30, no DST
  'America/Sao_Paulo', // no DST since 2019
  'Pacific/Auckland',
] as const;
type Zone = (typeof ZONES)[number];

/** The UTC instants at which each zone's offset changes in 2026 (checked in the first test). */
const TRANSITIONS_2026: Record<Zone, string[]> = {
  UTC: [],
  'Europe/Amsterdam': ['2026-03-29T01:00:00Z', '2026-10-25T01:00:00Z'],
  'America/New_York': ['2026-03-08T07:00:00Z', '2026-11-01T06:00:00Z'],
  'Australia/Lord_Howe': ['2026-04-04T15:00:00Z', '2026-10-03T15:30:00Z'],
  'Asia/Kolkata': [],
  'America/Sao_Paulo': [],
  'Pacific/Auckland': ['2026-04-04T14:00:00Z', '2026-09-26T14:00:00Z'],
};

/**
 * Offsets from a transition, in minutes, at which "after" instants are taken: before the change
 * (so that the chain of occurrences crosses it) or after it is over. Not from inside the hour it
 * skips or repeats: there the two implementations follow different rules about where to
 * resume, and hardcron's are the documented ones (DESIGN.md, "Cron in SQL"): a search that
 * starts between the two copies of a repeated time does not fire the second one, and one that
 * starts after a gap fires a skipped time that was shifted past it. The executor always searches
 * from the occurrence it just ran, so it never starts inside such a window.
 */
const AROUND_TRANSITION = [-1441, -181, -121, -90, -61, 61, 90, 120, 121, 180];

/**
 * cron-parser mishandles Lord Howe's 30-minute DST change (returns instants before `after`,
 * loops, skips existing local times, fires some twice), so around those changes it is no
 * reference; the SQL is checked there on its own (the last test of this file).
 */
const CRON_PARSER_UNRELIABLE_AROUND_DST: readonly Zone[] = ['Australia/Lord_Howe'];

/** Expressions chosen for the hours that DST changes skip or repeat; each meets every DST instant. */
const DST_EXPRESSIONS = [
  '30 2 * * *',
  '0 2 * * *',
  '0 * * * *',
  '*/15 * * * *',
  '*/20 1-3 * * *',
  '0,30 1,2,3 * * *',
  '15 2 * * *',
  '45 1 * * *',
  '0 30 2 * * *',
  '*/30 * * * * *',
  '0 0 * * *',
  '0 3 * * sun',
  '59 1 * * *',
  '0 0-23/2 * * *',
  '10,40 * * * *',
  '@hourly',
  '@daily',
];

interface CronCase {
  expression: string;
  zone: Zone;
  after: Date;
  /** after is within a day before, or two hours after, a DST change (or Amsterdam's, in zones without DST) */
  aroundDst: boolean;
}

/** mulberry32: a small, seeded PRNG, so that the corpus is the same on every run. */
function seededRandom(seed: number): () => number {
  let state = seed >>> 0;
  return () => {
    state = (state + 0x6d2b79f5) >>> 0;
    let t = state;
    t = Math.imul(t ^ (t >>> 15), t | 1);
    t ^= t + Math.imul(t ^ (t >>> 7), t | 61);
    return ((t ^ (t >>> 14)) >>> 0) / 4294967296;
  };
}

class CorpusGenerator {
  readonly #random: () => number;

  constructor(seed: number) {
    this.#random = seededRandom(seed);
  }

  int(lo: number, hi: number): number {
    return lo + Math.floor(this.#random() * (hi - lo + 1));
  }

  chance(p: number): boolean {
    return this.#random() < p;
  }

  pick<T>(items: readonly T[]): T {
    const item = items[this.int(0, items.length - 1)];
    if (item === undefined) throw new Error('pick from an empty list');
    return item;
  }

  /** A name in a random case: mar, MAR, Mar, mAr … */
  randomCase(name: string): string {
    return [...name].map((c) => (this.chance(0.5) ? c.toUpperCase() : c)).join('');
  }

  /** One field: a value, range, list or step over lo..hi; names, 7 and ? where the field allows them. */
  field(spec: FieldSpec): string {
    const roll = this.#random();
    if (roll < 0.28) return spec.question && this.chance(0.3) ? '?' : '*';
    if (roll < 0.5) return this.value(spec);
    if (roll < 0.6) return this.range(spec);
    if (roll < 0.72) {
      const parts = Array.from({ length: this.int(2, 3) }, () => (this.chance(0.7) ? this.value(spec) : this.range(spec)));
      return parts.join(',');
    }
    if (roll < 0.82) return `*/${this.step(spec)}`;
    if (roll < 0.91) return `${this.range(spec)}/${this.step(spec)}`;
    return `${this.value(spec)}/${this.step(spec)}`;
  }

  value(spec: FieldSpec, lo = spec.lo, hi = spec.hi): string {
    const n = spec.favourites && this.chance(0.5) ? this.pick(spec.favourites.filter((v) => v >= lo && v <= hi).concat(lo)) : this.int(lo, hi);
    if (spec.names && this.chance(0.35)) {
      const name = spec.names[n - spec.nameBase];
      if (name !== undefined) return this.randomCase(name);
    }
    if (spec.sundayAsSeven && n === 0 && this.chance(0.5)) return '7';
    return String(n);
  }

  range(spec: FieldSpec): string {
    const first = this.int(spec.lo, spec.hi);
    const last = this.int(first, Math.min(spec.hi, first + this.int(1, spec.hi - spec.lo)));
    return `${this.value(spec, first, first)}-${this.value(spec, last, last)}`;
  }

  step(spec: FieldSpec): number {
    return this.chance(0.7) ? this.pick(spec.steps) : this.int(1, spec.hi);
  }

  expression(): string {
    if (this.chance(0.06)) return this.pick(['@yearly', '@annually', '@monthly', '@weekly', '@daily', '@hourly']);
    const fields = [
      this.field(MINUTE),
      this.field(HOUR),
      this.field(DAY_OF_MONTH),
      this.field(MONTH),
      this.field(DAY_OF_WEEK),
    ];
    if (this.chance(0.25)) fields.unshift(this.chance(0.5) ? this.pick(['0', '30', '*/15', '*/20', '5,35']) : this.field(SECOND));
    return fields.join(' ');
  }

  /**
   * An expression with L in day-of-month, nL items or n#k in day-of-week, or both; the other
   * day field as any expression's (often * or ?, so that both the AND and the OR rule are met).
   */
  expressionWithLastOrNth(): string {
    const which = this.int(0, 2); // 0: L, 1: nL or n#k, 2: both
    const fields = [
      this.field(MINUTE),
      this.field(HOUR),
      which === 1 ? this.field(DAY_OF_MONTH) : this.lastDayOfMonth(),
      this.chance(0.2) ? String(this.int(1, 12)) : this.field(MONTH),
      which === 0 ? this.field(DAY_OF_WEEK) : this.lastOrNthWeekday(),
    ];
    if (this.chance(0.2)) fields.unshift(this.pick(['0', '30', '*/20']));
    return fields.join(' ');
  }

  /** L alone, or as an item of a list of values and ranges. */
  lastDayOfMonth(): string {
    if (this.chance(0.5)) return 'L';
    const items = Array.from({ length: this.int(1, 2) }, () => (this.chance(0.7) ? this.value(DAY_OF_MONTH) : this.range(DAY_OF_MONTH)));
    items.splice(this.int(0, items.length), 0, 'L');
    return items.join(',');
  }

  /** n#k (n a number, a name, or now and then * or ?), or one or two nL items, sometimes listed with values or ranges. */
  lastOrNthWeekday(): string {
    if (this.chance(0.5)) return `${this.chance(0.1) ? this.pick(['*', '?']) : this.value(DAY_OF_WEEK)}#${this.int(1, 5)}`;
    const items = Array.from({ length: this.int(1, 2) }, () => `${this.value(DAY_OF_WEEK)}L`);
    if (this.chance(0.4)) items.splice(this.int(0, items.length), 0, this.chance(0.7) ? this.value(DAY_OF_WEEK) : this.range(DAY_OF_WEEK));
    return items.join(',');
  }

  /** An instant in 2025-2027, whole seconds, sometimes with milliseconds. */
  instant(): Date {
    const start = Date.UTC(2025, 6, 1);
    const end = Date.UTC(2027, 6, 1);
    const seconds = this.int(0, (end - start) / 1000);
    return new Date(start + seconds * 1000 + (this.chance(0.1) ? this.int(1, 999) : 0));
  }
}

interface FieldSpec {
  lo: number;
  hi: number;
  steps: number[];
  favourites?: number[];
  names?: string[];
  nameBase: number;
  question?: boolean;
  sundayAsSeven?: boolean;
}

const SECOND: FieldSpec = { lo: 0, hi: 59, steps: [5, 10, 15, 20, 30], nameBase: 0 };
const MINUTE: FieldSpec = { lo: 0, hi: 59, steps: [5, 10, 15, 20, 30], favourites: [0, 15, 30, 45, 59], nameBase: 0 };
const HOUR: FieldSpec = { lo: 0, hi: 23, steps: [2, 3, 4, 6, 12], favourites: [0, 1, 2, 3, 23], nameBase: 0 };
const DAY_OF_MONTH: FieldSpec = { lo: 1, hi: 31, steps: [2, 3, 5, 7, 10], favourites: [1, 15, 28, 29, 30, 31], nameBase: 1, question: true };
const MONTH: FieldSpec = {
  lo: 1,
  hi: 12,
  steps: [2, 3, 4, 6],
  favourites: [3, 4, 9, 10, 11],
  names: ['jan', 'feb', 'mar', 'apr', 'may', 'jun', 'jul', 'aug', 'sep', 'oct', 'nov', 'dec'],
  nameBase: 1,
};
const DAY_OF_WEEK: FieldSpec = {
  lo: 0,
  hi: 7,
  steps: [2, 3],
  favourites: [0, 6],
  names: ['sun', 'mon', 'tue', 'wed', 'thu', 'fri', 'sat'],
  nameBase: 0,
  question: true,
  sundayAsSeven: true,
};

function buildCorpus(): CronCase[] {
  const generate = new CorpusGenerator(SEED);
  const cases: CronCase[] = [];
  for (const zone of ZONES) {
    // Zones without DST meet Amsterdam's transition instants: nothing special should happen there.
    const transitions = TRANSITIONS_2026[zone].length > 0 ? TRANSITIONS_2026[zone] : TRANSITIONS_2026['Europe/Amsterdam'];
    const nearTransition = (): Date => new Date(Date.parse(generate.pick(transitions)) + generate.pick(AROUND_TRANSITION) * 60_000);
    for (const expression of DST_EXPRESSIONS) {
      for (let i = 0; i < 3; i++) cases.push({ expression, zone, after: nearTransition(), aroundDst: true });
    }
    for (let i = 0; i < 30; i++) cases.push({ expression: generate.expression(), zone, after: nearTransition(), aroundDst: true });
    for (let i = 0; i < 50; i++) cases.push({ expression: generate.expression(), zone, after: generate.instant(), aroundDst: false });
  }
  // L, nL and n#k from a generator of their own, so that the cases above stay as they were.
  const special = new CorpusGenerator(SEED + 1);
  for (const zone of ZONES) {
    const transitions = TRANSITIONS_2026[zone].length > 0 ? TRANSITIONS_2026[zone] : TRANSITIONS_2026['Europe/Amsterdam'];
    for (let i = 0; i < 15; i++) {
      const after = new Date(Date.parse(special.pick(transitions)) + special.pick(AROUND_TRANSITION) * 60_000);
      cases.push({ expression: special.expressionWithLastOrNth(), zone, after, aroundDst: true });
    }
    for (let i = 0; i < 25; i++) cases.push({ expression: special.expressionWithLastOrNth(), zone, after: special.instant(), aroundDst: false });
  }
  return cases;
}

/**
 * cron-parser's next occurrences, each computed afresh from the previous one (as the executor
 * would, from the occurrence it just ran). Stops where cron-parser throws: null if it refuses
 * the expression outright.
 */
function cronParserNext(expression: string, zone: string, after: Date, count: number): string[] | null {
  const result: string[] = [];
  let at = after;
  try {
    for (let i = 0; i < count; i++) {
      at = CronExpressionParser.parse(expression, { tz: zone, currentDate: at }).next().toDate();
      result.push(at.toISOString());
    }
  } catch {
    return result.length === 0 ? null : result;
  }
  return result;
}

/** An instant as local time in `zone`, for readable mismatch reports: 2026-10-25 02:30:00 GMT+02:00. */
const local = (iso: string, zone: string): string =>
  new Intl.DateTimeFormat('sv-SE', {
    timeZone: zone,
    year: 'numeric',
    month: '2-digit',
    day: '2-digit',
    hour: '2-digit',
    minute: '2-digit',
    second: '2-digit',
    timeZoneName: 'longOffset',
  }).format(new Date(iso));

/** Follows the expression `count` times from `after` in one round trip: each result is the next `after`. */
const CRON_NEXT_CHAIN = `
  with recursive spec as (select code.parse_cron($1) as s),
  chain(i, at) as (
    select 1, code.cron_next((select s from spec), $2, $3::timestamptz)
    union all
    select i + 1, code.cron_next((select s from spec), $2, at) from chain where i < $4 and at is not null)
  select array_agg(at order by i) filter (where at is not null) as ats from chain`;

describe('code.cron_next agrees with cron-parser', () => {
  const db = useTestDatabase();
  const corpus = buildCorpus();
  const expectations = new Map<CronCase, string[] | null>();
  const expectedOf = (c: CronCase): string[] | null => {
    if (!expectations.has(c)) expectations.set(c, cronParserNext(c.expression, c.zone, c.after, OCCURRENCES));
    return expectations.get(c) ?? null;
  };

  const sqlNext = async (expression: string, zone: string, after: Date, count: number): Promise<string[]> => {
    const { rows } = await db().admin.query<{ ats: Date[] | null }>(CRON_NEXT_CHAIN, [expression, zone, after.toISOString(), count]);
    return (rows[0]?.ats ?? []).map((at) => at.toISOString());
  };

  /** The cases where SQL and cron-parser differ, shown readably, and how many cases were compared. */
  const compare = async (cases: CronCase[]): Promise<{ compared: number; mismatches: Mismatch[] }> => {
    const mismatches: Mismatch[] = [];
    let compared = 0;
    for (const c of cases) {
      const expected = expectedOf(c);
      if (expected === null) continue; // cron-parser refuses it: nothing to compare
      compared++;
      let actual: string[] | string;
      try {
        actual = (await sqlNext(c.expression, c.zone, c.after, OCCURRENCES)).slice(0, expected.length);
      } catch (error) {
        actual = `error: ${(error as Error).message}`;
      }
      if (JSON.stringify(actual) !== JSON.stringify(expected)) {
        const show = (ats: string[] | string): string[] | string => (typeof ats === 'string' ? ats : ats.map((at) => `${at} (${local(at, c.zone)})`));
        mismatches.push({
          expression: c.expression,
          zone: c.zone,
          after: `${c.after.toISOString()} (${local(c.after.toISOString(), c.zone)})`,
          sql: show(actual),
          cronParser: show(expected),
        });
      }
    }
    return { compared, mismatches };
  };

  test('the corpus is large and varied, and its DST instants are the zones’ real 2026 transitions', () => {
    const compared = corpus.filter((c) => expectedOf(c) !== null);
    expect(compared.length).toBeGreaterThanOrEqual(400);
    expect(compared.filter((c) => c.aroundDst).length).toBeGreaterThanOrEqual(200);
    expect(compared.filter((c) => !c.aroundDst).length).toBeGreaterThanOrEqual(200);

    const fields = compared.map((c) => c.expression.split(' '));
    const seen = (what: string, test: (fields: string[]) => boolean): [string, boolean] => [what, fields.some(test)];
    const dayOfWeek = (f: string[]): string => f.at(-1) ?? '';
    for (const [what, found] of [
      seen('6 fields', (f) => f.length === 6),
      seen('@ shorthand', (f) => f[0]?.startsWith('@') === true),
      seen('list', (f) => f.some((x) => x.includes(','))),
      seen('range', (f) => f.some((x) => /^\w+-\w+$/.test(x))),
      seen('*/n', (f) => f.some((x) => /^\*\/\d+$/.test(x))),
      seen('a-b/n', (f) => f.some((x) => /^\w+-\w+\/\d+$/.test(x))),
      seen('a/n', (f) => f.some((x) => /^\w+\/\d+$/.test(x))),
      seen('upper-case name', (f) => f.some((x) => /[A-Z]{3}/.test(x))),
      seen('mixed-case name', (f) => f.some((x) => /[A-Z][a-z]|[a-z][A-Z]/.test(x))),
      seen('7 as Sunday', (f) => /(^|[,-])7($|[,/-])/.test(dayOfWeek(f))),
      seen('? for day of month', (f) => f.at(-3) === '?'),
      seen('? for day of week', (f) => dayOfWeek(f) === '?'),
      seen('day of month and day of week both restricted', (f) => !['*', '?'].includes(f.at(-3) ?? '*') && !['*', '?'].includes(dayOfWeek(f))),
      seen('@annually', (f) => f[0] === '@annually'),
      seen('L alone', (f) => f.at(-3) === 'L'),
      seen('L in a list', (f) => /,L$|^L,|,L,/.test(f.at(-3) ?? '')),
      seen('L with day of week restricted', (f) => (f.at(-3) ?? '').includes('L') && !['*', '?'].includes(dayOfWeek(f))),
      seen('nL', (f) => /^[0-7]L$/.test(dayOfWeek(f))),
      seen('nL by name', (f) => /(^|,)[a-z]{3}L($|,)/i.test(dayOfWeek(f))),
      seen('nL in a list', (f) => dayOfWeek(f).includes('L') && dayOfWeek(f).includes(',')),
      seen('n#k', (f) => /^[0-7]#[1-5]$/.test(dayOfWeek(f))),
      seen('n#k by name', (f) => /^[a-z]{3}#[1-5]$/i.test(dayOfWeek(f))),
      seen('n#5', (f) => dayOfWeek(f).endsWith('#5')),
      seen('*#k', (f) => /^[*?]#/.test(dayOfWeek(f))),
      seen('n#k with day of month restricted', (f) => dayOfWeek(f).includes('#') && !['*', '?'].includes(f.at(-3) ?? '*')),
    ]) {
      expect([what, found]).toEqual([what, true]);
    }

    const offsetAt = (zone: string, at: number): string =>
      new Intl.DateTimeFormat('en', { timeZone: zone, timeZoneName: 'longOffset' }).format(at);
    for (const [zone, instants] of Object.entries(TRANSITIONS_2026)) {
      for (const instant of instants) {
        const at = Date.parse(instant);
        expect([zone, instant, offsetAt(zone, at - 1000) !== offsetAt(zone, at)]).toEqual([zone, instant, true]);
      }
    }
  });

  test.each(ZONES)(`the next ${OCCURRENCES} occurrences agree away from DST changes in %s`, async (zone) => {
    const { compared, mismatches } = await compare(corpus.filter((c) => c.zone === zone && !c.aroundDst));
    expect(compared).toBeGreaterThanOrEqual(30);
    expect(mismatches).toEqual([]);
  });

  test.each(ZONES.filter((zone) => !CRON_PARSER_UNRELIABLE_AROUND_DST.includes(zone)))(
    `the next ${OCCURRENCES} occurrences agree around the DST changes of 2026 in %s`, async (zone) => {
    const { compared, mismatches } = await compare(corpus.filter((c) => c.zone === zone && c.aroundDst));
    expect(compared).toBeGreaterThanOrEqual(30);
    expect(mismatches).toEqual([]);
  },
  );

  test('expressions that never fire give null', async () => {
    for (const expression of ['* * 31 2 *', '0 0 30 2 *', '0 0 30 feb *', '0 0 31 4,6,9,11 *', '0 0 0 31 apr,jun,sep,nov ?', '0 12 30,31 2 ?']) {
      for (const zone of ['UTC', 'Pacific/Auckland']) {
        const { rows } = await db().admin.query<{ next: Date | null }>('select code.cron_next(code.parse_cron($1), $2, $3) as next', [
          expression,
          zone,
          '2026-01-01T00:00:00Z',
        ]);
        expect([expression, zone, rows[0]?.next]).toEqual([expression, zone, null]);
      }
    }
    // 29 February fires, if rarely: the search reaches the next leap year.
    expect(await sqlNext('0 0 29 2 *', 'UTC', new Date('2028-03-01T00:00:00Z'), 1)).toEqual(['2032-02-29T00:00:00.000Z']);
  });

  describe('documented DST behaviour in Europe/Amsterdam, 2026', () => {
    const zone = 'Europe/Amsterdam';
    const expectSql = async (expression: string, after: string, count: number, expected: string[]): Promise<void> => {
      expect(await sqlNext(expression, zone, new Date(after), count)).toEqual(expected);
    };
    const expectBoth = async (expression: string, after: string, count: number, expected: string[]): Promise<void> => {
      await expectSql(expression, after, count, expected);
      expect(cronParserNext(expression, zone, new Date(after), count)).toEqual(expected);
    };

    test('spring forward: 02:30 does not exist on 29 March and fires at 03:30 CEST (01:30Z)', async () => {
      await expectBoth('30 2 * * *', '2026-03-28T12:00:00Z', 3, [
        '2026-03-29T01:30:00.000Z', // 03:30 CEST
        '2026-03-30T00:30:00.000Z', // 02:30 CEST
        '2026-03-31T00:30:00.000Z',
      ]);
      await expectBoth('30 2 * * *', '2026-03-29T00:59:59Z', 1, ['2026-03-29T01:30:00.000Z']);
      // From inside the hour after the gap, the shifted 02:30 is still ahead (cron-parser: see the comparison above).
      await expectSql('30 2 * * *', '2026-03-29T01:29:59Z', 1, ['2026-03-29T01:30:00.000Z']);
      await expectSql('30 2 * * *', '2026-03-29T01:30:00Z', 1, ['2026-03-30T00:30:00.000Z']);
    });

    test('fall back: 02:30 occurs twice on 25 October and fires once, at the first (00:30Z)', async () => {
      await expectBoth('30 2 * * *', '2026-10-24T12:00:00Z', 3, [
        '2026-10-25T00:30:00.000Z', // 02:30 CEST
        '2026-10-26T01:30:00.000Z', // 02:30 CET
        '2026-10-27T01:30:00.000Z',
      ]);
      // Not again at the second 02:30 (01:30Z), even from between the two.
      await expectBoth('30 2 * * *', '2026-10-25T00:30:00Z', 1, ['2026-10-26T01:30:00.000Z']);
      await expectSql('30 2 * * *', '2026-10-25T01:00:00Z', 1, ['2026-10-26T01:30:00.000Z']);
    });

    test('fall back: an hourly expression fires in both 02:00 hours of 25 October', async () => {
      await expectBoth('0 * * * *', '2026-10-24T23:30:00Z', 4, [
        '2026-10-25T00:00:00.000Z', // 02:00 CEST
        '2026-10-25T01:00:00.000Z', // 02:00 CET
        '2026-10-25T02:00:00.000Z', // 03:00 CET
        '2026-10-25T03:00:00.000Z',
      ]);
      await expectBoth('0 * * * *', '2026-10-25T00:00:00Z', 1, ['2026-10-25T01:00:00.000Z']);
      await expectBoth('*/20 * * * *', '2026-10-25T00:30:00Z', 4, [
        '2026-10-25T00:40:00.000Z', // 02:40 CEST
        '2026-10-25T01:00:00.000Z', // 02:00 CET
        '2026-10-25T01:20:00.000Z',
        '2026-10-25T01:40:00.000Z',
      ]);
    });
  });

  describe('L, nL and n#k, as cron-parser reads them', () => {
    /** The next `count` occurrences in SQL, which must be cron-parser's too. */
    const expectBoth = async (expression: string, zone: string, after: string, expected: string[]): Promise<void> => {
      expect([expression, zone, await sqlNext(expression, zone, new Date(after), expected.length)]).toEqual([expression, zone, expected]);
      expect([expression, zone, cronParserNext(expression, zone, new Date(after), expected.length)]).toEqual([expression, zone, expected]);
    };

    test('L: the last day of the month, 28 or 29 February by the year', async () => {
      await expectBoth('0 0 L * *', 'UTC', '2027-01-30T12:00:00Z', ['2027-01-31T00:00:00.000Z', '2027-02-28T00:00:00.000Z', '2027-03-31T00:00:00.000Z']);
      await expectBoth('0 0 L * *', 'UTC', '2028-01-31T00:00:00Z', ['2028-02-29T00:00:00.000Z', '2028-03-31T00:00:00.000Z', '2028-04-30T00:00:00.000Z']);
      // Midnight in Amsterdam is 23:00Z the day before in winter, 22:00Z in summer.
      await expectBoth('0 0 L * *', 'Europe/Amsterdam', '2028-02-01T00:00:00Z', ['2028-02-28T23:00:00.000Z', '2028-03-30T22:00:00.000Z']);
      await expectBoth('0 0 L 2 *', 'America/New_York', '2026-03-01T00:00:00Z', ['2027-02-28T05:00:00.000Z', '2028-02-29T05:00:00.000Z', '2029-02-28T05:00:00.000Z']);
      // In a list: the 1st and the last.
      await expectBoth('0 12 1,L * *', 'UTC', '2026-02-01T12:00:00Z', ['2026-02-28T12:00:00.000Z', '2026-03-01T12:00:00.000Z', '2026-03-31T12:00:00.000Z']);
      // 31 and L in February alone: the last day, every year (31 alone never fires).
      await expectBoth('0 0 31,L 2 *', 'UTC', '2027-01-01T00:00:00Z', ['2027-02-28T00:00:00.000Z', '2028-02-29T00:00:00.000Z']);
    });

    test('nL: the last weekday n of the month, by number, name or 7 for Sunday', async () => {
      const lastFridays = ['2026-01-30T00:00:00.000Z', '2026-02-27T00:00:00.000Z', '2026-03-27T00:00:00.000Z', '2026-04-24T00:00:00.000Z'];
      for (const expression of ['0 0 * * 5L', '0 0 * * friL', '0 0 * * FRIL', '0 0 ? * 5L']) await expectBoth(expression, 'UTC', '2026-01-01T00:00:00Z', lastFridays);
      await expectBoth('0 0 * * 7L', 'UTC', '2026-01-01T00:00:00Z', ['2026-01-25T00:00:00.000Z', '2026-02-22T00:00:00.000Z', '2026-03-29T00:00:00.000Z']);
      // With other items: every Monday and the last Friday.
      await expectBoth('0 0 * * 1,5L', 'UTC', '2026-01-24T00:00:00Z', ['2026-01-26T00:00:00.000Z', '2026-01-30T00:00:00.000Z', '2026-02-02T00:00:00.000Z']);
    });

    test('n#k: the k-th weekday n of the month; #5 only where the month has one', async () => {
      const secondMondays = ['2026-01-12T00:00:00.000Z', '2026-02-09T00:00:00.000Z', '2026-03-09T00:00:00.000Z'];
      for (const expression of ['0 0 * * 1#2', '0 0 * * mon#2', '0 0 ? * MON#2']) await expectBoth(expression, 'UTC', '2026-01-01T00:00:00Z', secondMondays);
      await expectBoth('0 0 * * 5#5', 'UTC', '2026-01-01T00:00:00Z', ['2026-01-30T00:00:00.000Z', '2026-05-29T00:00:00.000Z', '2026-07-31T00:00:00.000Z']);
      // *#2: any day of the second week, the 8th to the 14th.
      await expectBoth('0 0 * * *#2', 'UTC', '2026-01-13T00:00:00Z', ['2026-01-14T00:00:00.000Z', '2026-02-08T00:00:00.000Z']);
      // A fifth Monday in February: leap years whose February starts on a Monday, 28 years apart, 40 across 2100.
      await expectBoth('0 0 * 2 1#5', 'UTC', '2026-01-01T00:00:00Z', ['2044-02-29T00:00:00.000Z', '2072-02-29T00:00:00.000Z', '2112-02-29T00:00:00.000Z']);
    });

    test('with a restricted day of month, either day field matches', async () => {
      // The 15th or the last Friday.
      await expectBoth('0 0 15 * 5L', 'UTC', '2026-01-01T00:00:00Z', ['2026-01-15T00:00:00.000Z', '2026-01-30T00:00:00.000Z', '2026-02-15T00:00:00.000Z']);
      // The last day or the first Monday.
      await expectBoth('0 0 L * 1#1', 'UTC', '2026-01-01T00:00:00Z', ['2026-01-05T00:00:00.000Z', '2026-01-31T00:00:00.000Z', '2026-02-02T00:00:00.000Z']);
    });

    test('around DST changes: the days that change are the last and the second Sunday of March, the first of November', async () => {
      // Amsterdam springs forward on the last Sunday of March: 02:30 does not exist and fires at 03:30 CEST.
      await expectBoth('30 2 * 3 0L', 'Europe/Amsterdam', '2026-01-01T00:00:00Z', ['2026-03-29T01:30:00.000Z', '2027-03-28T01:30:00.000Z']);
      // ... and falls back on the last Sunday of October: 02:30 fires once, at the first (CEST).
      await expectBoth('30 2 * 10 sunL', 'Europe/Amsterdam', '2026-01-01T00:00:00Z', ['2026-10-25T00:30:00.000Z', '2027-10-31T00:30:00.000Z']);
      // New York springs forward on the second Sunday of March (02:30 fires at 03:30 EDT) ...
      await expectBoth('30 2 * * 0#2', 'America/New_York', '2026-02-20T00:00:00Z', ['2026-03-08T07:30:00.000Z', '2026-04-12T06:30:00.000Z']);
      // ... and falls back on the first Sunday of November: 01:30 fires once, at the first (EDT).
      await expectBoth('30 1 * * 0#1', 'America/New_York', '2026-10-20T00:00:00Z', ['2026-11-01T05:30:00.000Z', '2026-12-06T06:30:00.000Z']);
      // An hourly expression on the fall-back day fires in both 01:00 hours.
      await expectBoth('0 * * 11 0#1', 'America/New_York', '2026-11-01T04:30:00Z', ['2026-11-01T05:00:00.000Z', '2026-11-01T06:00:00.000Z', '2026-11-01T07:00:00.000Z']);
    });

    test('@annually is @yearly and @midnight is @daily (cron-parser knows no @midnight), in any case', async () => {
      const after = new Date('2026-06-15T10:00:00Z');
      for (const [macro, same] of [['@annually', '@yearly'], ['@ANNUALLY', '0 0 1 1 *'], ['@midnight', '@daily'], ['@Midnight', '0 0 * * *']] as const) {
        expect([macro, await sqlNext(macro, 'Europe/Amsterdam', after, 3)]).toEqual([macro, await sqlNext(same, 'Europe/Amsterdam', after, 3)]);
      }
      expect(cronParserNext('@annually', 'UTC', after, 1)).toEqual(['2027-01-01T00:00:00.000Z']);
      expect(cronParserNext('@midnight', 'UTC', after, 1)).toBeNull();
    });

    test('the forms cron-parser refuses are refused, each with its reason (HC206); so are W and H', async () => {
      const refusals: Array<[string, RegExp]> = [
        ['0 0 l * *', /'l': write L in upper case$/],
        ['0 0 * * 5l', /'5l': write L in upper case$/],
        ['0 0 5L * *', /'5L': nL is for day-of-week/],
        ['0 0 L-5 * *', /'L-5': L \(the last day\) is a list item of its own, not part of a range or step$/],
        ['0 0 L/2 * *', /'L\/2': L \(the last day\) is a list item of its own/],
        ['0 0 * * L', /: L in day-of-week needs one weekday before it: 5L is the last Friday of the month$/],
        ['0 0 * * 1-5L', /'1-5L': nL takes one weekday/],
        ['0 0 * * 5L/2', /'5L\/2': nL takes one weekday/],
        ['0 0 * * 8L', /: day-of-week 8 is out of range 0-7$/],
        ['0 L * * *', /: L is allowed only in day-of-month \(L\) and day-of-week \(nL\), not in hour$/],
        ['0 0 * * 1#6', /'1#6': the week of n#k is 1-5$/],
        ['0 0 * * 1#0', /'1#0': the week of n#k is 1-5$/],
        ['0 0 * * 1#2,3', /'1#2,3': n#k is the whole day-of-week field/],
        ['0 0 * * 1-2#2', /'1-2#2': n#k is the whole day-of-week field/],
        ['0 0 * * 5L#2', /'5L#2': n#k is the whole day-of-week field/],
        ['0 0 * * 1#2#3', /'1#2#3': n#k is the whole day-of-week field/],
        ['0 0 1#2 * *', /: # is allowed only in day-of-week, not in day-of-month$/],
        ['0 0 L, * *', /: day-of-month field '' is not a value, range, list or step$/],
        ['0 0 LW * *', /: W \(the nearest weekday\) is not supported$/],
        ['0 0 15W * *', /: W \(the nearest weekday\) is not supported$/],
      ];
      for (const [expression, message] of refusals) {
        const error = await db().admin.query('select code.parse_cron($1)', [expression]).then(() => null, (e: unknown) => e as { code?: string; message: string });
        expect([expression, error?.code, error?.message]).toEqual([expression, 'HC206', expect.stringMatching(message)]);
        expect([expression, cronParserNext(expression, 'UTC', new Date('2026-01-01T00:00:00Z'), 1)]).toEqual([expression, null]);
      }
      // H, cron-parser's hashed (random) value, is refused here: an occurrence must be the same for every reader.
      for (const expression of ['H * * * *', 'H/15 * * * *', '0 H(0-5) * * *']) {
        const error = await db().admin.query('select code.parse_cron($1)', [expression]).then(() => null, (e: unknown) => e as { code?: string; message: string });
        expect([expression, error?.code, error?.message]).toEqual([expression, 'HC206', expect.stringMatching(/: H \(a hashed value\) is not supported$/)]);
      }
    });
  });

  test('a 30-minute spring-forward gap (Lord Howe, 4 October 2026): no existing local time is skipped', async () => {
    // 02:00-02:30 LHST does not exist; 02:20 fires at 02:50 LHDT (the offset before the gap),
    // and 02:40 LHDT, which exists, must still fire, before it.
    expect(await sqlNext('20,40 2 * * *', 'Australia/Lord_Howe', new Date('2026-10-03T12:00:00Z'), 3)).toEqual([
      '2026-10-03T15:40:00.000Z', // 02:40 LHDT
      '2026-10-03T15:50:00.000Z', // 02:20 LHST, which does not exist: 02:50 LHDT
      '2026-10-04T15:20:00.000Z', // 02:20 LHDT on 5 October
    ]);
  });
});

interface Mismatch {
  expression: string;
  zone: string;
  after: string;
  sql: string[] | string;
  cronParser: string[] | string;
}

/**
 * Catching up after an outage (code.catch_up, used by every claim of a cron job) finds the
 * newest occurrence without stepping through the missed ones: its cost, counted in calls of
 * code.cron_next, stays about the same whether the job is behind by an hour or by a year,
 * while the occurrences missed grow from thousands to hundreds of thousands.
 */
describe('catching up costs the same after an hour or a year', () => {
  const db = useTestDatabase();

  interface CatchUp {
    newest: Date;
    following: Date;
    oldest_kept: Date;
    calls: number;
  }

  async function catchUp(schedule: string, behind: string, keep: number): Promise<CatchUp> {
    const { admin } = db();
    await admin.query('begin');
    try {
      await admin.query(`set local track_functions = 'all'`);
      // The count is the backend's pending one, which may still hold calls of earlier transactions
      // of this session (statistics are flushed at most once a second): only the difference counts.
      const calls = `coalesce(pg_stat_get_xact_function_calls('code.cron_next(code.cron_spec, text, timestamptz)'::regprocedure), 0)::int`;
      const before = (await admin.query<{ calls: number }>(`select ${calls} as calls`)).rows[0]?.calls ?? 0;
      // A fixed "now" on a whole minute, so that the expected occurrences are exact.
      const { rows } = await admin.query<CatchUp>(
        `with c as (select * from code.catch_up(code.parse_cron($1), 'UTC', timestamptz '2026-11-25 12:00:00+00' - $2::interval,
                                                 timestamptz '2026-11-25 12:00:00+00', $3))
         select c.newest, c.following, c.oldest_kept, ${calls} - $4 as calls
           from c`,
        [schedule, behind, keep, before],
      );
      return rows[0] as CatchUp;
    } finally {
      await admin.query('rollback');
    }
  }

  test.each([
    ['* * * * * *', '1 hour', 3_600],
    ['* * * * * *', '7 days', 604_800],
    ['* * * * *', '7 days', 10_080],
    ['* * * * *', '365 days', 525_600],
    ['0 3 * * *', '365 days', 365],
  ])('%s behind by %s (%i occurrences missed): the newest occurrence in a few dozen steps', async (schedule, behind) => {
    const result = await catchUp(schedule, behind, 1);
    const now = new Date('2026-11-25T12:00:00Z');
    const newest = schedule === '0 3 * * *' ? new Date('2026-11-25T03:00:00Z') : now;
    expect(result.newest).toEqual(newest);
    expect(result.following.getTime()).toBeGreaterThan(now.getTime());
    expect(result.calls).toBeLessThanOrEqual(64);
  });

  test.each([
    ['0 0 L * *', new Date('2026-10-31T00:00:00Z'), new Date('2026-11-30T00:00:00Z')],
    ['0 3 * * 1#2', new Date('2026-11-09T03:00:00Z'), new Date('2026-12-14T03:00:00Z')],
    ['0 3 * * 5L', new Date('2026-10-30T03:00:00Z'), new Date('2026-11-27T03:00:00Z')],
  ])('%s behind by 365 days: the newest occurrence and the next, in a few dozen steps', async (schedule, newest, following) => {
    const result = await catchUp(schedule, '365 days', 1);
    expect(result).toMatchObject({ newest, following });
    expect(result.calls).toBeLessThanOrEqual(64);
  });

  test("missed: 'all' keeps the last max_missed occurrences, found the same way", async () => {
    const result = await catchUp('* * * * * *', '7 days', 100);
    expect(result.newest).toEqual(new Date('2026-11-25T12:00:00Z'));
    expect(result.oldest_kept).toEqual(new Date('2026-11-25T11:58:21Z')); // 100 occurrences up to 12:00:00
    expect(result.calls).toBeLessThanOrEqual(600);
  });
});
