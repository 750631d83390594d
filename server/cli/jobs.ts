import { parseArgs } from 'node:util';
import { jobsConfig } from '../config.ts';
import { withAdminTransaction } from '../db/admin.ts';
import { openAdminTarget } from '../db/targets.ts';
import { ConfigError } from '../errors.ts';
import type { Command } from './command.ts';

interface JobRow {
  id: string;
  owner: string;
  name: string | null;
  function_signature: string;
  schedule: string | null;
  time_zone: string;
  run_at: Date | null;
  enabled: boolean;
  next_run_at: Date | null;
  last_status: string | null;
  last_run_at: Date | null;
}

interface JobLine {
  id: string;
  owner: string;
  name: string | null;
  function_signature: string;
  when: string;
  enabled: boolean;
  next_run_at: string | null;
  last_status: string | null;
  last_run_at: string | null;
}

export const jobsCommand: Command = {
  help: `Usage: hardcron jobs [--limit N]

Prints a table of all jobs of the database (an admin sees every job), newest first.

Target: DATABASE_URL (a superuser URL) when set; otherwise the embedded PostgreSQL kept under
HARDCRON_DATA_DIR (default .hardcron/).`,

  async run(args, env) {
    const { values, positionals } = parseArgs({ args: [...args], options: { limit: { type: 'string' } }, allowPositionals: true, strict: true });
    const config = jobsConfig(env, values);
    if (positionals.length > 0) throw new ConfigError('HC_USAGE', 'hardcron jobs takes no arguments');
    const target = await openAdminTarget(config.target);
    let rows: JobLine[];
    try {
      // Plain columns, formatted here: the admin's session resolves no operator or function.
      rows = await withAdminTransaction(target.adminUrl, null, async (client) =>
        (await client.query<JobRow>(
          `select j.id, j.owner, j.name, j.function_signature, j.schedule, j.time_zone, j.run_at, j.enabled,
                  j.next_run_at, j.last_status, j.last_run_at
             from api.jobs j order by j.id desc limit $1::integer`,
          [config.limit],
        )).rows.map(toLine),
      );
    } finally {
      await target.stop();
    }
    process.stdout.write(`${formatTable(rows)}\n`);
  },
};

const COLUMNS: Array<[string, (job: JobLine) => string]> = [
  ['ID', (j) => j.id],
  ['OWNER', (j) => j.owner],
  ['NAME', (j) => j.name ?? ''],
  ['FUNCTION', (j) => j.function_signature],
  ['WHEN', (j) => j.when],
  ['STATE', (j) => (j.enabled ? 'enabled' : 'paused')],
  ['NEXT RUN (UTC)', (j) => j.next_run_at ?? '-'],
  ['LAST RUN (UTC)', (j) => j.last_run_at ?? '-'],
  ['LAST STATUS', (j) => j.last_status ?? '-'],
];

function toLine(row: JobRow): JobLine {
  return {
    id: row.id,
    owner: row.owner.slice(row.owner.indexOf('$') + 1),
    name: row.name,
    function_signature: row.function_signature,
    when: row.schedule !== null ? `${row.schedule} ${row.time_zone}` : `at ${utc(row.run_at)} UTC`,
    enabled: row.enabled,
    next_run_at: row.next_run_at && utc(row.next_run_at),
    last_status: row.last_status,
    last_run_at: row.last_run_at && utc(row.last_run_at),
  };
}

/** YYYY-MM-DD HH:MM:SS in UTC. */
function utc(at: Date | null): string {
  return at === null ? '-' : at.toISOString().slice(0, 19).replace('T', ' ');
}

/** A plain-text table; control characters in names are shown escaped, never printed raw. */
export function formatTable(jobs: readonly JobLine[]): string {
  if (jobs.length === 0) return 'no jobs';
  const cells = jobs.map((job) => COLUMNS.map(([, value]) => printable(value(job))));
  const widths = COLUMNS.map(([title], i) => Math.max(title.length, ...cells.map((row) => (row[i] as string).length)));
  const line = (row: readonly string[]): string => row.map((cell, i) => cell.padEnd(widths[i] as number)).join('  ').trimEnd();
  return [line(COLUMNS.map(([title]) => title)), ...cells.map(line)].join('\n');
}

function printable(text: string): string {
  return JSON.stringify(text).slice(1, -1);
}
