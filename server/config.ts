import { resolve } from 'node:path';
import { z } from 'zod';
import { DEFAULT_MAX_TTL_SECONDS, formatDuration, MIN_SECRET_BYTES, type AuthOptions } from './api/auth.ts';
import { corsOriginsProblem } from './api/cors.ts';
import { POOL_SIZE, REQUEST_LIMITS, type RequestLimits } from './api/limits.ts';
import type { GraphQLServerOptions } from './api/server.ts';
import { durationSeconds } from './api/tokens.ts';
import { DEFAULT_DATA_DIR, parseDatabaseUrl, type AdminTargetConfig } from './db/targets.ts';
import { ConfigError } from './errors.ts';
import { EXECUTOR_SETTINGS, MAX_EXECUTOR_ID_LENGTH, type ExecutorOptions } from './executor/options.ts';
import { DEFAULT_LOG_LEVEL } from './logger.ts';
import { LOOPBACK, MIGRATE_LOCK_TIMEOUT_MS, PORT, wholeNumberProblem, type WholeSetting, type WholeSettingWithDefault } from './settings.ts';

/**
 * The configuration of each hardcron command: one typed object per process, made once when the
 * command starts, from the environment and the command's flags, by the schema below. A flag is
 * checked by the same rule as the variable it overrides, and refused in the same words (HC_CONFIG_INVALID,
 * naming the flag or variable, never its value: some are secrets). Bounds and defaults are not
 * written here but next to the options they belong to (settings.ts, api/limits.ts,
 * executor/options.ts, …), where the libraries apply them to what a program passes directly.
 */

/** The process environment, or any stand-in for it. */
export type Env = Readonly<Record<string, string | undefined>>;

const DURATION_RULE = 'must be a duration such as 3600s, 90m, 24h or 7d (at most 30d)';

/** A rule's failure with its own words: they follow the setting's name. */
function fail(ctx: z.core.$RefinementCtx, message: string): never {
  ctx.addIssue({ code: 'custom', message });
  return z.NEVER as never;
}

const text = z.string().min(1, 'must not be empty');
const whole = (setting: WholeSetting) =>
  z.string().transform((value, ctx) => {
    const problem = wholeNumberProblem(value, setting);
    return problem === undefined ? Number(value) : fail(ctx, problem);
  });
const port = whole(PORT);
const boolean = z.enum(['true', 'false', '1', '0']).transform((value) => value === 'true' || value === '1');
const duration = z.string().transform((value, ctx) => durationSeconds(value) ?? fail(ctx, DURATION_RULE));
/** Exact origins, comma-separated (spaces around the commas allowed): the server's CORS allow-list. */
const origins = z.string().transform((value, ctx) => {
  const list = value.split(',').map((entry) => entry.trim());
  const problem = corsOriginsProblem(list);
  return problem === undefined ? list : fail(ctx, problem);
});
/** A PostgreSQL URL; parseDatabaseUrl says precisely what is wrong, naming the variable itself. */
const postgresUrl = (variable: string) =>
  z.string().transform((value, ctx) => {
    try {
      return parseDatabaseUrl(variable, value);
    } catch (error) {
      if (!(error instanceof ConfigError)) throw error;
      ctx.addIssue({ code: 'custom', message: error.message, params: { named: true } });
      return z.NEVER;
    }
  });

/**
 * Every environment variable hardcron reads, with its rule: checked all at once when a command
 * starts, so a typo'd HARDCRON_* name or a malformed value is refused with the variable's name
 * before anything runs, whichever command uses it.
 */
export const ENV_SCHEMA = z
  .object({
    DATABASE_URL: postgresUrl('DATABASE_URL'),
    HARDCRON_DATA_DIR: text,
    HARDCRON_DEBUG: text,
    HARDCRON_TEST_TARGET: z.enum(['url', 'container', 'embedded']),
    AUTHENTICATOR_PASSWORD: text,
    EXECUTOR_PASSWORD: text,
    EXECUTOR_DATABASE_URL: postgresUrl('EXECUTOR_DATABASE_URL'),
    HARDCRON_EXECUTOR_CONCURRENCY: whole(EXECUTOR_SETTINGS.concurrency),
    HARDCRON_EXECUTOR_MAX_RUNS_PER_OWNER: whole(EXECUTOR_SETTINGS.maxRunsPerOwner),
    HARDCRON_EXECUTOR_MAX_RUN_SECONDS: whole(EXECUTOR_SETTINGS.maxRunSeconds),
    HARDCRON_EXECUTOR_BATCH_SIZE: whole(EXECUTOR_SETTINGS.batchSize),
    HARDCRON_EXECUTOR_POLL_MS: whole(EXECUTOR_SETTINGS.pollIntervalMs),
    HARDCRON_EXECUTOR_LISTEN: boolean,
    HARDCRON_EXECUTOR_ID: text.max(MAX_EXECUTOR_ID_LENGTH, `must be at most ${MAX_EXECUTOR_ID_LENGTH} characters long`),
    HARDCRON_EXECUTOR_LEASE_SECONDS: whole(EXECUTOR_SETTINGS.leaseSeconds),
    HARDCRON_EXECUTOR_HISTORY_SECONDS: whole(EXECUTOR_SETTINGS.historySeconds),
    HARDCRON_EXECUTOR_HTTP_PORT: port,
    HARDCRON_EXECUTOR_HTTP_HOST: text,
    SERVER_DATABASE_URL: postgresUrl('SERVER_DATABASE_URL'),
    JWT_SECRET: z.string().refine((value) => Buffer.byteLength(value, 'utf8') >= MIN_SECRET_BYTES, `must be at least ${MIN_SECRET_BYTES} bytes long`),
    JWKS_URL: z.string().refine((value) => /^https?:\/\/\S+$/.test(value), 'must be an http(s) URL'),
    JWT_AUDIENCE: text,
    JWT_ISSUER: text,
    JWT_MAX_TTL: duration,
    PORT: port,
    HOST: text,
    CORS_ORIGINS: origins,
    HARDCRON_SERVER_POOL_SIZE: whole(POOL_SIZE),
    HARDCRON_SERVER_STATEMENT_TIMEOUT_MS: whole(REQUEST_LIMITS.statementTimeoutMs),
    HARDCRON_SERVER_LOCK_TIMEOUT_MS: whole(REQUEST_LIMITS.lockTimeoutMs),
    HARDCRON_SERVER_CONNECTIONS_PER_USER: whole(REQUEST_LIMITS.connectionsPerUser),
    HARDCRON_SERVER_QUEUE_PER_USER: whole(REQUEST_LIMITS.queuedPerUser),
    HARDCRON_MIGRATE_LOCK_TIMEOUT_MS: whole(MIGRATE_LOCK_TIMEOUT_MS),
    LOG_LEVEL: z.enum(['fatal', 'error', 'warn', 'info', 'debug', 'trace', 'silent']),
  })
  .partial();

/** The environment's hardcron variables, typed: numbers, booleans, seconds. */
export type Environment = z.output<typeof ENV_SCHEMA>;
type Variable = keyof typeof ENV_SCHEMA.shape;

/** Refuses unknown HARDCRON_* variables and malformed hardcron ones, naming the variable. */
export function readEnvironment(env: Env): Environment {
  const known = Object.keys(ENV_SCHEMA.shape);
  for (const name of Object.keys(env)) {
    if (name.startsWith('HARDCRON_') && !known.includes(name)) {
      throw new ConfigError('HC_CONFIG_UNKNOWN', `${name} is not a hardcron setting (known: ${known.filter((n) => n.startsWith('HARDCRON_')).join(', ')})`);
    }
  }
  // Empty values count as unset, as everywhere in hardcron.
  const present = Object.fromEntries(known.flatMap((name) => (env[name] ? [[name, env[name]]] : [])));
  const result = ENV_SCHEMA.safeParse(present);
  if (!result.success) throw invalid(String(result.error.issues[0]?.path[0] ?? ''), result.error.issues[0]);
  return result.data;
}

/** A flag's value, checked by the rule of the variable it stands for. */
function flag<V extends Variable>(name: string, variable: V, value: string | undefined): Environment[V] | undefined {
  if (value === undefined) return undefined;
  const result = ENV_SCHEMA.shape[variable].safeParse(value);
  if (!result.success) throw invalid(name, result.error.issues[0]);
  return result.data as Environment[V];
}

/** The one wording of a refused setting: its name and the rule, never the value. */
function invalid(name: string, issue: z.core.$ZodIssue | undefined): ConfigError {
  if (issue?.code === 'custom' && (issue.params as { named?: boolean } | undefined)?.named) return new ConfigError('HC_CONFIG_INVALID', issue.message);
  const rule = issue === undefined ? 'is invalid' : issue.code === 'invalid_value' ? `must be one of ${issue.values.join(', ')}` : issue.message;
  return new ConfigError('HC_CONFIG_INVALID', `${name} ${rule}`);
}

/** A URL a command cannot do without. */
function required<T>(value: T | undefined, variable: string, purpose: string): T {
  if (value === undefined) throw new ConfigError('HC_CONFIG_MISSING', `${variable} is not set: ${purpose}`);
  return value;
}

function adminTarget(environment: Environment): AdminTargetConfig {
  return { databaseUrl: environment.DATABASE_URL, dataDir: dataDir(environment) };
}

function dataDir(environment: Environment): string {
  return resolve(environment.HARDCRON_DATA_DIR ?? DEFAULT_DATA_DIR);
}

function requestLimits(environment: Environment): Partial<RequestLimits> {
  return {
    statementTimeoutMs: environment.HARDCRON_SERVER_STATEMENT_TIMEOUT_MS,
    lockTimeoutMs: environment.HARDCRON_SERVER_LOCK_TIMEOUT_MS,
    connectionsPerUser: environment.HARDCRON_SERVER_CONNECTIONS_PER_USER,
    queuedPerUser: environment.HARDCRON_SERVER_QUEUE_PER_USER,
  };
}

/** `hardcron server`: options of the GraphQL server but its logger; unset ones keep the server's defaults. */
export interface ServerConfig {
  readonly server: Omit<GraphQLServerOptions, 'logger'> & { readonly auth: AuthOptions & { readonly maxTtlSeconds: number } };
  readonly logLevel: string;
}

export function serverConfig(env: Env, flags: { port?: string | undefined; host?: string | undefined }): ServerConfig {
  const environment = readEnvironment(env);
  const connectionString = required(environment.SERVER_DATABASE_URL, 'SERVER_DATABASE_URL', 'the URL of the $authenticator role');
  return {
    server: {
      connectionString,
      auth: {
        secret: environment.JWT_SECRET,
        jwksUrl: environment.JWKS_URL,
        audience: environment.JWT_AUDIENCE,
        issuer: environment.JWT_ISSUER,
        maxTtlSeconds: environment.JWT_MAX_TTL ?? DEFAULT_MAX_TTL_SECONDS,
      },
      port: flag('--port', 'PORT', flags.port) ?? environment.PORT,
      host: flag('--host', 'HOST', flags.host) ?? environment.HOST,
      poolSize: environment.HARDCRON_SERVER_POOL_SIZE,
      corsOrigins: environment.CORS_ORIGINS,
      ...requestLimits(environment),
    },
    logLevel: environment.LOG_LEVEL ?? DEFAULT_LOG_LEVEL,
  };
}

/** `hardcron executor`: options of the executor but its logger, and where its health endpoints listen (if anywhere). */
export interface ExecutorConfig {
  readonly executor: Omit<ExecutorOptions, 'logger' | 'metrics'>;
  readonly health: { readonly port: number; readonly host: string } | undefined;
  readonly logLevel: string;
}

export interface ExecutorFlags {
  readonly concurrency?: string | undefined;
  readonly 'max-runs-per-owner'?: string | undefined;
  readonly 'batch-size'?: string | undefined;
  readonly 'poll-ms'?: string | undefined;
  readonly 'no-listen'?: boolean | undefined;
  readonly id?: string | undefined;
  readonly 'http-port'?: string | undefined;
}

export function executorConfig(env: Env, flags: ExecutorFlags): ExecutorConfig {
  const environment = readEnvironment(env);
  const connectionString = required(environment.EXECUTOR_DATABASE_URL, 'EXECUTOR_DATABASE_URL', 'the URL of the $executor role');
  const httpPort = flag('--http-port', 'HARDCRON_EXECUTOR_HTTP_PORT', flags['http-port']) ?? environment.HARDCRON_EXECUTOR_HTTP_PORT;
  return {
    executor: {
      connectionString,
      executorId: flag('--id', 'HARDCRON_EXECUTOR_ID', flags.id) ?? environment.HARDCRON_EXECUTOR_ID,
      listen: flags['no-listen'] ? false : environment.HARDCRON_EXECUTOR_LISTEN,
      concurrency: flag('--concurrency', 'HARDCRON_EXECUTOR_CONCURRENCY', flags.concurrency) ?? environment.HARDCRON_EXECUTOR_CONCURRENCY,
      maxRunSeconds: environment.HARDCRON_EXECUTOR_MAX_RUN_SECONDS,
      maxRunsPerOwner:
        flag('--max-runs-per-owner', 'HARDCRON_EXECUTOR_MAX_RUNS_PER_OWNER', flags['max-runs-per-owner']) ?? environment.HARDCRON_EXECUTOR_MAX_RUNS_PER_OWNER,
      batchSize: flag('--batch-size', 'HARDCRON_EXECUTOR_BATCH_SIZE', flags['batch-size']) ?? environment.HARDCRON_EXECUTOR_BATCH_SIZE,
      pollIntervalMs: flag('--poll-ms', 'HARDCRON_EXECUTOR_POLL_MS', flags['poll-ms']) ?? environment.HARDCRON_EXECUTOR_POLL_MS,
      leaseSeconds: environment.HARDCRON_EXECUTOR_LEASE_SECONDS,
      historySeconds: environment.HARDCRON_EXECUTOR_HISTORY_SECONDS,
    },
    health: httpPort === undefined ? undefined : { port: httpPort, host: environment.HARDCRON_EXECUTOR_HTTP_HOST ?? LOOPBACK },
    logLevel: environment.LOG_LEVEL ?? DEFAULT_LOG_LEVEL,
  };
}

/** `hardcron migrate`. */
export interface MigrateConfig {
  readonly target: AdminTargetConfig;
  readonly lockTimeoutMs: number;
  /** The runtime roles' new login passwords, when set. */
  readonly passwords: { readonly authenticator: string | undefined; readonly executor: string | undefined };
}

export function migrateConfig(env: Env): MigrateConfig {
  const environment = readEnvironment(env);
  return {
    target: adminTarget(environment),
    lockTimeoutMs: environment.HARDCRON_MIGRATE_LOCK_TIMEOUT_MS ?? MIGRATE_LOCK_TIMEOUT_MS.default,
    passwords: { authenticator: environment.AUTHENTICATOR_PASSWORD, executor: environment.EXECUTOR_PASSWORD },
  };
}

/** `hardcron start` logs warnings and worse only: its terminal is for the lines meant for people. */
const START_LOG_LEVEL = 'warn';

/** `hardcron start`: everything on one machine. */
export interface StartConfig {
  readonly target: AdminTargetConfig;
  /** Where the generated secrets are kept. */
  readonly dataDir: string;
  /** Wins over the generated secret. */
  readonly jwtSecret: string | undefined;
  readonly server: Pick<GraphQLServerOptions, 'port' | 'host' | 'corsOrigins' | keyof RequestLimits>;
  readonly maxTtlSeconds: number;
  /** Of the JSON logs on stderr, ours and the executor's. */
  readonly logLevel: string;
  /** What the executor's process inherits of ours (its settings travel separately). */
  readonly inherited: { readonly PATH: string | undefined; readonly HOME: string | undefined };
}

export function startConfig(env: Env): StartConfig {
  const environment = readEnvironment(env);
  return {
    target: adminTarget(environment),
    dataDir: dataDir(environment),
    jwtSecret: environment.JWT_SECRET,
    server: { port: environment.PORT, host: environment.HOST, corsOrigins: environment.CORS_ORIGINS, ...requestLimits(environment) },
    maxTtlSeconds: environment.JWT_MAX_TTL ?? DEFAULT_MAX_TTL_SECONDS,
    logLevel: environment.LOG_LEVEL ?? START_LOG_LEVEL,
    inherited: { PATH: env.PATH, HOME: env.HOME },
  };
}

/** A token's lifetime when --ttl is not given (or JWT_MAX_TTL if shorter). */
const DEFAULT_TOKEN_TTL_SECONDS = 3600;

/** `hardcron token`. */
export interface TokenConfig {
  readonly dataDir: string;
  /** The server's secret when given; else `hardcron start`'s, kept in dataDir. */
  readonly jwtSecret: string | undefined;
  readonly audience: string | undefined;
  readonly issuer: string | undefined;
  readonly ttlSeconds: number;
}

export function tokenConfig(env: Env, flags: { ttl?: string | undefined }): TokenConfig {
  const environment = readEnvironment(env);
  const maxTtl = environment.JWT_MAX_TTL ?? DEFAULT_MAX_TTL_SECONDS;
  const ttl = flag('--ttl', 'JWT_MAX_TTL', flags.ttl);
  // Refused here rather than by the server later, once the token is in use.
  if (ttl !== undefined && ttl > maxTtl) {
    throw new ConfigError(
      'HC_CONFIG_INVALID',
      `--ttl ${flags.ttl} is longer than the ${formatDuration(maxTtl)} the server accepts (JWT_MAX_TTL): give a shorter --ttl, or raise JWT_MAX_TTL for the server and here`,
    );
  }
  return {
    dataDir: dataDir(environment),
    jwtSecret: environment.JWT_SECRET,
    audience: environment.JWT_AUDIENCE,
    issuer: environment.JWT_ISSUER,
    ttlSeconds: ttl ?? Math.min(DEFAULT_TOKEN_TTL_SECONDS, maxTtl),
  };
}

/** `hardcron user`. */
export interface UserConfig {
  readonly target: AdminTargetConfig;
  /** The login password, from the variable --password-env names; null: none. */
  readonly password: string | null;
}

export function userConfig(env: Env, flags: { 'password-env'?: string | undefined }): UserConfig {
  const environment = readEnvironment(env);
  const variable = flags['password-env'];
  let password: string | null = null;
  if (variable !== undefined) {
    password = env[variable] || null;
    if (password === null) throw new ConfigError('HC_CONFIG_MISSING', `--password-env names ${variable}, which is not set`);
  }
  return { target: adminTarget(environment), password };
}

/** How many jobs `hardcron jobs` lists by default, and at most. */
const JOBS_LIMIT: WholeSettingWithDefault = { min: 1, max: 100_000, default: 100 };

/** `hardcron jobs`. */
export interface JobsConfig {
  readonly target: AdminTargetConfig;
  readonly limit: number;
}

export function jobsConfig(env: Env, flags: { limit?: string | undefined }): JobsConfig {
  const environment = readEnvironment(env);
  let limit = JOBS_LIMIT.default;
  if (flags.limit !== undefined) {
    const result = whole(JOBS_LIMIT).safeParse(flags.limit);
    if (!result.success) throw invalid('--limit', result.error.issues[0]);
    limit = result.data;
  }
  return { target: adminTarget(environment), limit };
}

/** `hardcron uninstall`. */
export interface UninstallConfig {
  readonly target: AdminTargetConfig;
}

export function uninstallConfig(env: Env): UninstallConfig {
  return { target: adminTarget(readEnvironment(env)) };
}
