import type { TestProject } from 'vitest/node';
import { openTestTarget } from '../../server/db/targets.ts';
import { sweepLeftovers } from './database.ts';

declare module 'vitest' {
  export interface ProvidedContext {
    /** Superuser URL of the cluster the test files share. */
    adminUrl: string;
    targetKind: string;
  }
}

/** Starts (or finds) the test cluster once per run; every test file creates its own database in it. */
export default async function setup(project: TestProject): Promise<() => Promise<void>> {
  const target = await openTestTarget();
  const swept = await sweepLeftovers(target.adminUrl);
  const version = await serverVersion(target.adminUrl);
  console.log(`hardcron tests: ${target.kind} PostgreSQL ${version}${swept ? `, swept ${swept} leftover test objects` : ''}`);
  project.provide('adminUrl', target.adminUrl);
  project.provide('targetKind', target.kind);
  return () => target.stop();
}

async function serverVersion(adminUrl: string): Promise<string> {
  const { default: pg } = await import('pg');
  const client = new pg.Client({ connectionString: adminUrl });
  await client.connect();
  try {
    return (await client.query<{ v: string }>("select current_setting('server_version') as v")).rows[0]?.v ?? '?';
  } finally {
    await client.end();
  }
}
