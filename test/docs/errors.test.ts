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

  test('documents no code that nothing raises', () => {
    const stale = [...documented].filter((code) => !raised.has(code));
    expect(stale, 'codes in docs/errors.md that nothing in sql/ or server/ raises').toEqual([]);
  });
});
