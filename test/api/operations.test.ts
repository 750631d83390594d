import { readdirSync, readFileSync } from 'node:fs';
import { fileURLToPath } from 'node:url';
import { buildSchema, parse, validate } from 'graphql';
import { describe, expect, test } from 'vitest';

/** The operations in graphql/ are examples people copy: each must stay valid against the schema snapshot. */
const DIR = fileURLToPath(new URL('../../graphql/', import.meta.url));

describe('graphql/ operations', () => {
  const schema = buildSchema(readFileSync(`${DIR}schema.graphql`, 'utf8'));
  const files = readdirSync(DIR).filter((file) => file.endsWith('.graphql') && file !== 'schema.graphql');

  test('there are some', () => {
    expect(files.length).toBeGreaterThan(5);
  });

  test.each(files)('%s validates against graphql/schema.graphql', (file) => {
    const errors = validate(schema, parse(readFileSync(`${DIR}${file}`, 'utf8')));
    expect(errors.map((error) => error.message)).toEqual([]);
  });
});
