import { readdirSync, readFileSync } from 'node:fs';
import { join } from 'node:path';
import { fileURLToPath } from 'node:url';
import { describe, expect, test } from 'vitest';

const root = fileURLToPath(new URL('../../', import.meta.url));

function filesUnder(dir: string, extension: string): string[] {
  return readdirSync(join(root, dir), { recursive: true, withFileTypes: true })
    .filter((entry) => entry.isFile() && entry.name.endsWith(extension))
    .map((entry) => join(entry.parentPath, entry.name));
}

/**
 * The codes the code raises, found mechanically. SQL raises its SQLSTATEs as quoted literals
 * (`errcode = 'HC101'`, `code.fail('HC211', …)`, a `case` choosing among them); comments are
 * dropped first, because they name codes without raising them. TypeScript raises its codes as
 * string literals (`new ConfigError('HC_CONFIG_INVALID', …)`, `code: 'HC_TIMEOUT'`); doc comments
 * quote codes in backticks, which the pattern does not take.
 */
function raisedCodes(): Map<string, string[]> {
  const found = new Map<string, string[]>();
  const note = (code: string, file: string): void => {
    const files = found.get(code) ?? [];
    if (!files.includes(file)) files.push(file);
    found.set(code, files);
  };
  for (const file of filesUnder('sql', '.sql')) {
    const sql = readFileSync(file, 'utf8').replace(/--[^\n]*/g, '');
    for (const match of sql.matchAll(/'(HC[0-9]{3})'/g)) note(match[1]!, file.slice(root.length));
  }
  for (const file of filesUnder('server', '.ts')) {
    const source = readFileSync(file, 'utf8');
    for (const match of source.matchAll(/['"](HC_[A-Z][A-Z0-9_]*)['"]/g)) note(match[1]!, file.slice(root.length));
  }
  return found;
}

/** The codes docs/errors.md documents: the first cell of each table row. */
function documentedCodes(): Set<string> {
  const page = readFileSync(join(root, 'docs/errors.md'), 'utf8');
  return new Set([...page.matchAll(/^\| `(HC[0-9]{3}|HC_[A-Z][A-Z0-9_]*)` \|/gm)].map((match) => match[1]!));
}

/** The rows of the section of docs/errors.md that starts with `heading`: first cell, and the row. */
function sectionRows(heading: string): Map<string, string> {
  const page = readFileSync(join(root, 'docs/errors.md'), 'utf8');
  const start = page.indexOf(`\n${heading}`);
  if (start < 0) throw new Error(`docs/errors.md has no section "${heading}"`);
  const end = page.indexOf('\n## ', start + 1);
  const section = page.slice(start, end < 0 ? undefined : end);
  return new Map([...section.matchAll(/^\| `([0-9A-Z_]+)` \|(.*)$/gm)].map((match) => [match[1]!, match[2]!]));
}

/**
 * The codes a GraphQL client can receive, found mechanically: the GraphQL server's own (every
 * `HC_…` literal in server/api/ but those only thrown as `new ConfigError(…)`, which stop the
 * server at start), the scheduling functions' SQLSTATEs (the table "Scheduling (`api`
 * functions)", whose codes the test above ties to the SQL that raises them), and the SQLSTATEs
 * the server's error mapping passes on as they are (isPublicSqlState in server/api/errors.ts).
 */
function clientCodes(): Set<string> {
  const codes = new Set<string>();
  for (const file of filesUnder('server/api', '.ts')) {
    const source = readFileSync(file, 'utf8');
    for (const match of source.matchAll(/(ConfigError\(\s*)?['"](HC_[A-Z][A-Z0-9_]*)['"]/g)) if (!match[1]) codes.add(match[2]!);
  }
  for (const code of sectionRows('## Scheduling (`api` functions)').keys()) codes.add(code);
  const errors = readFileSync(join(root, 'server/api/errors.ts'), 'utf8');
  const passed = /function isPublicSqlState[^]*?\n}/.exec(errors)?.[0] ?? '';
  for (const match of passed.matchAll(/'([0-9A-Z]{5})'/g)) codes.add(match[1]!);
  return codes;
}

describe('docs/errors.md', () => {
  const raised = raisedCodes();
  const documented = documentedCodes();

  test('the scan finds codes of every kind (a broken pattern would make the checks below vacuous)', () => {
    expect([...raised.keys()].filter((code) => /^HC1/.test(code)).length).toBeGreaterThan(0);
    expect([...raised.keys()].filter((code) => /^HC2/.test(code)).length).toBeGreaterThan(0);
    expect([...raised.keys()].filter((code) => /^HC3/.test(code)).length).toBeGreaterThan(0);
    expect([...raised.keys()].filter((code) => code.startsWith('HC_')).length).toBeGreaterThan(0);
    expect(documented.size).toBeGreaterThan(0);
  });

  test('documents every code raised in sql/ and server/', () => {
    const missing = [...raised.entries()]
      .filter(([code]) => !documented.has(code))
      .map(([code, files]) => `${code} (raised in ${files.join(', ')})`);
    expect(missing, 'codes raised but not documented in docs/errors.md').toEqual([]);
  });

  test('says what a frontend should do with exactly the codes a GraphQL client can receive', () => {
    const expected = clientCodes();
    const listed = sectionRows('## In a GraphQL client');
    // The scan works: the server's, the scheduling functions' and PostgreSQL's own are all found.
    expect([...expected].filter((code) => code.startsWith('HC_')).length).toBeGreaterThan(10);
    expect([...expected].filter((code) => /^HC2/.test(code)).length).toBeGreaterThan(10);
    expect(expected.has('42501')).toBe(true);
    expect(expected.has('HC_CONFIG_INVALID'), 'a configuration error never reaches a client').toBe(false);
    expect([...expected].filter((code) => !listed.has(code)), 'codes a client can receive, missing from "In a GraphQL client"').toEqual([]);
    expect([...listed.keys()].filter((code) => !expected.has(code)), 'codes in "In a GraphQL client" that no client can receive').toEqual([]);
    expect([...listed].filter(([, row]) => !/[a-z]{3}/.test(row)).map(([code]) => code), 'lines without advice').toEqual([]);
  });

  test('documents no code that nothing raises', () => {
    const stale = [...documented].filter((code) => !raised.has(code));
    expect(stale, 'codes in docs/errors.md that nothing in sql/ or server/ raises').toEqual([]);
  });
});
