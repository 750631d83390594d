import { readFileSync, writeFileSync } from 'node:fs';
import { readdir, readFile } from 'node:fs/promises';
import { join } from 'node:path';
import { fileURLToPath } from 'node:url';
import { beforeAll, describe, expect, test } from 'vitest';
import { MIGRATIONS_DIR, ROUTINES_DIR, readRoutines } from '../../server/db/migrate.ts';
import { useTestDatabase } from '../support/database.ts';
import { schemaSnapshot } from '../support/schema-snapshot.ts';

const SNAPSHOT = fileURLToPath(new URL('../../sql/schema.sql', import.meta.url));

/**
 * PostgreSQL 16 and later print a view's columns without their table's alias when the view
 * reads one table; earlier releases with it. The snapshot is written on the newest release, so
 * on older ones the views' bodies are left out of the comparison (everything else about them,
 * their owners, options and grants, is compared), and the routines' bodies, which PostgreSQL
 * keeps as written, still are.
 */
function withoutViewBodies(snapshot: string): string {
  return snapshot.replace(/^(view \S+ owner .* as)\n[\s\S]*?(?=\n\n|\n(?=grant ))/gm, '$1 …');
}

const DEFINITION = /^create\s+or\s+replace\s+(function|procedure|view)\s+([a-z_]+\.[a-z_0-9]+)/gim;

/**
 * What the migrator installs is what sql/schema.sql says, on every PostgreSQL target, and every
 * function, procedure and view is defined in exactly one routine file named after its concept.
 * UPDATE_SCHEMA_SNAPSHOT=1 (npm run schema:update) rewrites sql/schema.sql after an intended change.
 */
describe('the installed schema', () => {
  const db = useTestDatabase();
  let snapshot: string;
  let major: number;

  beforeAll(async () => {
    snapshot = await schemaSnapshot(db().admin);
    major = Number((await db().admin.query<{ v: string }>(`select current_setting('server_version_num') as v`)).rows[0]?.v) / 10000;
    if (process.env.UPDATE_SCHEMA_SNAPSHOT) writeFileSync(SNAPSHOT, snapshot);
  });

  test('equals sql/schema.sql (UPDATE_SCHEMA_SNAPSHOT=1 rewrites it)', () => {
    const expected = readFileSync(SNAPSHOT, 'utf8');
    if (major >= 16) expect(snapshot).toBe(expected);
    else expect(withoutViewBodies(snapshot)).toBe(withoutViewBodies(expected));
  });

  test('every function, procedure and view has one home: one definition in one routine file, none in a migration', async () => {
    const homes = new Map<string, string[]>();
    for (const routine of await readRoutines(ROUTINES_DIR)) {
      for (const [, , name] of routine.sql.matchAll(DEFINITION)) {
        homes.set(name as string, [...(homes.get(name as string) ?? []), routine.path]);
      }
    }
    const { rows } = await db().admin.query<{ name: string }>(
      `select n.nspname || '.' || p.proname as name from pg_proc p join pg_namespace n on n.oid = p.pronamespace
        where n.nspname in ('data', 'mgr', 'code', 'executor', 'server', 'api')
       union all
       select n.nspname || '.' || c.relname from pg_class c join pg_namespace n on n.oid = c.relnamespace
        where c.relkind = 'v' and n.nspname in ('data', 'mgr', 'code', 'executor', 'server', 'api')
       order by 1`,
    );
    expect(rows.length).toBeGreaterThan(80);
    const installed = rows.map((row) => row.name);
    expect([...homes.keys()].sort()).toEqual(installed);
    expect(installed.filter((name) => homes.get(name)?.length !== 1)).toEqual([]);
    // Each file is named after a concept of its schema, and holds that schema's routines only.
    for (const [name, [path]] of homes) expect(path?.split('/')[0]).toBe(name.split('.')[0]);

    for (const file of await readdir(MIGRATIONS_DIR)) {
      const sql = await readFile(join(MIGRATIONS_DIR, file), 'utf8');
      expect(`${file}: ${[...sql.matchAll(/^\s*create\s+(or\s+replace\s+)?(function|procedure|view)\b/gim)].length}`).toBe(`${file}: 0`);
    }
  });
});
