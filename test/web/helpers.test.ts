import { describe, expect, test } from 'vitest';
import { cleanPastedToken, tokenClaims } from '../../web/src/token.ts';
import { fieldOfError } from '../../web/src/errors.ts';
import { describeSchedule } from '../../web/src/schedule.ts';

/** The dashboard's own logic that needs no browser: schedules in words, errors to fields, tokens. */
describe('dashboard helpers', () => {
  test('schedules in words: intervals as the SQL accepts them, cron with seconds, macros', () => {
    expect(describeSchedule('every 5 seconds')).toBe('Every 5 seconds');
    expect(describeSchedule('Every 1 minute')).toBe('Every minute');
    expect(describeSchedule('every hour')).toBe('Every hour');
    expect(describeSchedule('every 12 hours')).toBe('Every 12 hours');
    expect(describeSchedule('every 0 days')).toBeNull();
    expect(describeSchedule('every fortnight')).toBeNull();
    expect(describeSchedule('*/5 * * * * *')).toBe('Every 5 seconds');
    expect(describeSchedule('30 2 * * *')).toBe('At 02:30');
    expect(describeSchedule('@midnight')).toBe(describeSchedule('0 0 * * *'));
    expect(describeSchedule('@annually')).toBe(describeSchedule('0 0 1 1 *'));
    expect(describeSchedule('not a schedule')).toBeNull();
    expect(describeSchedule('')).toBeNull();
  });

  test('the database\'s codes map to the form field they concern', () => {
    const field = (code: string, message = ''): string | null => fieldOfError({ code, message, hint: null });
    expect(field('HC206')).toBe('schedule');
    expect(field('HC207')).toBe('timeZone');
    expect(field('HC205')).toBe('arguments');
    expect(field('HC201')).toBe('function');
    expect(field('HC214')).toBe('name');
    expect(field('HC209', 'name is longer than 200 characters')).toBe('name');
    expect(field('HC210', 'option timeout_seconds must be a number from 0.001 to 86400')).toBe('options.timeout_seconds');
    expect(field('HC210', "unknown option 'colour'")).toBe('options.colour');
    expect(field('HC208', 'run_at is in the past')).toBe('runAt');
    expect(field('42501')).toBeNull();
  });

  test('a pasted token: bare, with Bearer, or the GraphiQL header line; its claims read, not trusted', () => {
    const jwt = `e30.${Buffer.from(JSON.stringify({ role: 'demo', exp: 2_000_000_000 })).toString('base64url')}.sig`;
    expect(cleanPastedToken(` ${jwt}\n`)).toBe(jwt);
    expect(cleanPastedToken(`Bearer ${jwt}`)).toBe(jwt);
    expect(cleanPastedToken(`{"Authorization": "Bearer ${jwt}"}`)).toBe(jwt);
    expect(tokenClaims(jwt)).toEqual({ role: 'demo', exp: 2_000_000_000 });
    expect(tokenClaims('not a token')).toBeNull();
  });
});
