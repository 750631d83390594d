import { describe, expect, test } from 'vitest';
import { parseDatabaseUrl, redactUrl, withDatabase } from '../../server/db/targets.ts';
import { ConfigError } from '../../server/errors.ts';

describe('database URLs from the environment', () => {
  test('accepts postgres:// and postgresql:// URLs that name a database', () => {
    expect(parseDatabaseUrl('DATABASE_URL', 'postgres://u@h:5432/d0')).toBe('postgres://u@h:5432/d0');
    expect(parseDatabaseUrl('DATABASE_URL', 'postgresql://u:p@h/d1?sslmode=require')).toContain('sslmode=require');
  });

  test.each(['', 'localhost:5432', 'http://h/d0', 'postgres://h', 'postgres://h/'])('refuses %j, naming the variable', (value) => {
    expect(() => parseDatabaseUrl('TEST_DATABASE_URL', value)).toThrow(ConfigError);
    expect(() => parseDatabaseUrl('TEST_DATABASE_URL', value)).toThrow(/^TEST_DATABASE_URL /);
  });

  test('redacts passwords and switches databases', () => {
    expect(redactUrl('postgres://u:s3cret@h:1/d0')).toBe('postgres://u:***@h:1/d0');
    expect(withDatabase('postgres://u:p@h:1/postgres?x=1', 'd_1$x')).toBe('postgres://u:p@h:1/d_1%24x?x=1');
  });
});
