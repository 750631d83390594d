import type { JobCondition } from './gql/graphql.ts';

/** Run statuses, in the spelling of the SQL API (docs: api.job_runs.status). */
export const RUN_STATUSES = ['running', 'succeeded', 'failed', 'rejected', 'timed_out', 'skipped', 'lost', 'cancelled', 'missed'] as const;
export type RunStatusKey = (typeof RUN_STATUSES)[number];

/** How the schema spells a status in a condition: a String now, or an enum value (RUNNING…). */
type StatusInSchema = NonNullable<JobCondition['lastStatus']>;

/**
 * How the schema spells statuses: 'lower' while they are Strings or enum values in the SQL's
 * spelling ('running'), 'upper' for GraphQL-style enum values ('RUNNING'). Typed from the
 * generated schema types, so that regenerating them after such a change makes
 * `npm run typecheck` point here.
 */
export const STATUS_SPELLING: 'running' extends StatusInSchema ? 'lower' : 'upper' = 'lower';

/** A status as the page keys it (lower case), whichever spelling the API used. */
export function statusKey(status: string | null | undefined): string {
  return (status ?? '').toLowerCase();
}

/** A status for people: "timed out", "succeeded". */
export function statusLabel(status: string | null | undefined): string {
  const key = statusKey(status);
  return key ? key.replaceAll('_', ' ') : 'none yet';
}

/** A status in the schema's spelling, for a condition. */
export function statusValue(key: RunStatusKey): StatusInSchema {
  return ((STATUS_SPELLING as string) === 'upper' ? key.toUpperCase() : key) as StatusInSchema;
}

/** Statuses a run ends in badly: their error fields are shown. */
export function isFailure(status: string | null | undefined): boolean {
  return ['failed', 'rejected', 'timed_out', 'lost'].includes(statusKey(status));
}
