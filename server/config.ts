import { z } from 'zod';
import { ConfigError } from './errors.ts';
import { parseDatabaseUrl } from './db/targets.ts';
import { durationSeconds } from './api/tokens.ts';

type Env = Readonly<Record<string, string | undefined>>;

/** A required PostgreSQL URL from the environment. */
export function requiredUrl(env: Env, variable: string, purpose: string): string {
  const value = env[variable];
  if (!value) throw new ConfigError('HC_CONFIG_MISSING', `${variable} is not set: ${purpose}`);
  return parseDatabaseUrl(variable, value);
}

/** An optional whole number from the environment (or a flag), within bounds. */
export function wholeNumber(name: string, value: string | undefined, min: number, max: number): number | undefined {
  if (value === undefined || value === '') return undefined;
  const n = Number(value);
  if (!Number.isInteger(n) || n < min || n > max) {
    throw new ConfigError('HC_CONFIG_INVALID', `${name} must be a whole number from ${min} to ${max}, not ${JSON.stringify(value)}`);
  }
  return n;
}

/** An optional boolean from the environment: true/false/1/0. */
export function booleanValue(name: string, value: string | undefined): boolean | undefined {
  if (value === undefined || value === '') return undefined;
  if (['true', '1'].includes(value)) return true;
  if (['false', '0'].includes(value)) return false;
  throw new ConfigError('HC_CONFIG_INVALID', `${name} must be true or false, not ${JSON.stringify(value)}`);
}

const DURATION_RULE = 'must be a duration such as 3600s, 90m, 24h or 7d (at most 30d)';

/**
 * JWT_MAX_TTL in seconds (undefined when unset): the longest lifetime of a token the server
 * accepts and `hardcron token` issues. Resolved here once, then passed on as an option.
 */
export function jwtMaxTtlSeconds(env: Env): number | undefined {
  const value = env.JWT_MAX_TTL;
  if (value === undefined || value === '') return undefined;
  const seconds = durationSeconds(value);
  // Named, never echoed, like every other variable (see checkEnvironment).
  if (seconds === undefined) throw new ConfigError('HC_CONFIG_INVALID', `JWT_MAX_TTL ${DURATION_RULE}`);
  return seconds;
}

/**
 * Every environment variable hardcron reads, with its shape: one schema, checked once when a
 * command starts, so a typo'd HARDCRON_* name or a malformed value is refused with the
 * variable's name before anything runs. Commands then read the values they use.
 */
const text = z.string().min(1);
const port = z.coerce.number().int().min(0).max(65535);
// Checked by parseDatabaseUrl (below), which says precisely what is wrong.
const postgresUrl = z.string().min(1);
const URL_VARIABLES = ['DATABASE_URL', 'EXECUTOR_DATABASE_URL', 'SERVER_DATABASE_URL'] as const;
const whole = (min: number, max: number) => z.coerce.number().int().min(min).max(max);

export const ENV_SCHEMA = z.object({
  DATABASE_URL: postgresUrl,
  HARDCRON_DATA_DIR: text,
  HARDCRON_DEBUG: text,
  HARDCRON_TEST_TARGET: z.enum(['url', 'container', 'embedded']),
  AUTHENTICATOR_PASSWORD: text,
  EXECUTOR_PASSWORD: text,
  EXECUTOR_DATABASE_URL: postgresUrl,
  HARDCRON_EXECUTOR_CONCURRENCY: whole(1, 64),
  HARDCRON_EXECUTOR_BATCH_SIZE: whole(1, 10_000),
  HARDCRON_EXECUTOR_POLL_MS: whole(10, 3_600_000),
  HARDCRON_EXECUTOR_LISTEN: z.enum(['true', 'false', '1', '0']),
  HARDCRON_EXECUTOR_ID: z.string().min(1).max(200),
  HARDCRON_EXECUTOR_LEASE_SECONDS: whole(1, 3600),
  HARDCRON_EXECUTOR_HTTP_PORT: port,
  HARDCRON_EXECUTOR_HTTP_HOST: text,
  SERVER_DATABASE_URL: postgresUrl,
  JWT_SECRET: z.string().refine((value) => Buffer.byteLength(value, 'utf8') >= 32, 'must be at least 32 bytes long'),
  JWKS_URL: z.string().refine((value) => /^https?:\/\/\S+$/.test(value), 'must be an http(s) URL'),
  JWT_AUDIENCE: text,
  JWT_ISSUER: text,
  JWT_MAX_TTL: z.string().refine((value) => durationSeconds(value) !== undefined, DURATION_RULE),
  PORT: port,
  HOST: text,
  HARDCRON_SERVER_POOL_SIZE: whole(1, 1000),
  HARDCRON_SERVER_STATEMENT_TIMEOUT_MS: whole(1, 3_600_000),
  HARDCRON_SERVER_LOCK_TIMEOUT_MS: whole(1, 3_600_000),
  HARDCRON_SERVER_CONNECTIONS_PER_USER: whole(1, 1000),
  HARDCRON_SERVER_QUEUE_PER_USER: whole(0, 100_000),
  HARDCRON_MIGRATE_LOCK_TIMEOUT_MS: whole(1, 86_400_000),
  LOG_LEVEL: z.enum(['fatal', 'error', 'warn', 'info', 'debug', 'trace', 'silent']),
}).partial();

/** Refuses malformed hardcron variables and unknown HARDCRON_* ones, naming the variable. */
export function checkEnvironment(env: Env): void {
  for (const name of Object.keys(env)) {
    if (name.startsWith('HARDCRON_') && !(name in ENV_SCHEMA.shape)) {
      throw new ConfigError('HC_CONFIG_UNKNOWN', `${name} is not a hardcron setting (known: ${Object.keys(ENV_SCHEMA.shape).filter((n) => n.startsWith('HARDCRON_')).join(', ')})`);
    }
  }
  for (const name of URL_VARIABLES) {
    const value = env[name];
    if (value) parseDatabaseUrl(name, value);
  }
  // Empty values count as unset, as everywhere in hardcron.
  const present = Object.fromEntries(Object.keys(ENV_SCHEMA.shape).flatMap((name) => (env[name] ? [[name, env[name]]] : [])));
  const result = ENV_SCHEMA.safeParse(present);
  if (!result.success) {
    const issue = result.error.issues[0];
    const name = String(issue?.path[0] ?? '');
    // The message names the variable and the rule, never the value (it may be a secret).
    throw new ConfigError('HC_CONFIG_INVALID', `${name} ${describeIssue(issue)}`);
  }
}

function describeIssue(issue: z.core.$ZodIssue | undefined): string {
  if (!issue) return 'is invalid';
  if (issue.code === 'too_small' || issue.code === 'too_big') return `is out of range: ${issue.message}`;
  if (issue.code === 'invalid_value') return `must be one of ${issue.values.join(', ')}`;
  if (issue.code === 'invalid_type') return 'must be a number';
  return issue.message;
}
