import cronstrue from 'cronstrue';

/** The interval form the SQL accepts: `every N seconds|minutes|hours|days`, or `every minute`. */
const INTERVAL = /^every\s+(?:(\d+)\s+)?(second|minute|hour|day)s?$/i;

/** The cron macros hardcron accepts (sql/routines/code/cron.sql), as the fields they stand for. */
const MACROS: Record<string, string> = {
  '@yearly': '0 0 1 1 *',
  '@annually': '0 0 1 1 *',
  '@monthly': '0 0 1 * *',
  '@weekly': '0 0 * * 0',
  '@daily': '0 0 * * *',
  '@midnight': '0 0 * * *',
  '@hourly': '0 * * * *',
};

/**
 * A schedule in words: "Every 5 seconds", "At 02:30". Only a description: the database decides
 * what a schedule means (previewSchedule shows its real next occurrences). Null when it cannot be
 * described (the database will say why it is wrong, if it is).
 */
export function describeSchedule(schedule: string | null | undefined): string | null {
  const text = (schedule ?? '').trim();
  if (!text) return null;
  const interval = INTERVAL.exec(text);
  if (interval) {
    const count = Number(interval[1] ?? '1');
    const unit = (interval[2] ?? '').toLowerCase();
    if (!Number.isSafeInteger(count) || count < 1) return null;
    return count === 1 ? `Every ${unit}` : `Every ${count} ${unit}s`;
  }
  if (/^every\b/i.test(text)) return null;
  const expression = MACROS[text.toLowerCase()] ?? text;
  try {
    const words = cronstrue.toString(expression, { use24HourTimeFormat: true, throwExceptionOnParseError: true, verbose: false });
    return words || null;
  } catch {
    return null;
  }
}

/** What a job's schedule amounts to, for a table cell: words, or a one-off's time. */
export function scheduleSummary(job: { schedule?: string | null; runAt?: string | null }): string {
  if (job.schedule) return describeSchedule(job.schedule) ?? job.schedule;
  return 'Once';
}
