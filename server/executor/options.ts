import { hostname } from 'node:os';
import { randomBytes } from 'node:crypto';
import type { Logger } from '../logger.ts';
import type { ExecutorMetrics } from './metrics.ts';
import { checkWholeNumber, type WholeSettingWithDefault } from '../settings.ts';

/** Options of an executor process. Every field but `connectionString` has a documented default. */
export interface ExecutorOptions {
  /** URL that logs in as the database's `$executor` role (never a superuser). */
  connectionString: string;
  /** Names this executor in run records and leases. Default: `<host>:<pid>:<random>`. */
  executorId?: string;
  /** Connections running runs in parallel, one run each, each run its own transaction. Default: 4. */
  concurrency?: number;
  /**
   * Most of those connections that one owner's runs may hold at once, so that no owner can slow
   * another's runs. Default: half of `concurrency` (at least 1).
   */
  maxRunsPerOwner?: number;
  /** Most runs claimed in one claim (it claims no more than there are idle connections). Default: 100. */
  batchSize?: number;
  /**
   * The longest a run may take, whatever its job's `timeout_seconds` says: the operator's ceiling
   * on how long one owner's run may hold a connection. Default: 3600 s.
   */
  maxRunSeconds?: number;
  /** Longest sleep when idle: the polling fallback. Default: 1000 ms. */
  pollIntervalMs?: number;
  /** Wake up on LISTEN/NOTIFY as well as by polling. Default: true. */
  listen?: boolean;
  /** Runs of an executor silent this long are declared lost. Renewed every third of it. Default: 30 s. */
  leaseSeconds?: number;
  /**
   * How often the run history is maintained (partitions opened and created ahead, retention
   * applied: code.maintain_run_history), on a connection opened for it. One executor at a time
   * does the work. Default: 60 s.
   */
  historySeconds?: number;
  /** On stop, how long running runs may finish before they are cancelled. Default: 10,000 ms. */
  shutdownGraceMs?: number;
  /** Extra time over a run's timeout before the executor cancels it itself. Default: 5,000 ms. */
  cancelMarginMs?: number;
  logger?: Logger;
  metrics?: ExecutorMetrics;
}

export type ResolvedExecutorOptions = Required<Omit<ExecutorOptions, 'logger' | 'metrics'>> &
  Pick<ExecutorOptions, 'logger' | 'metrics'>;

/**
 * Bounds and defaults of the executor's options: the executor applies the defaults and checks
 * the bounds of what a program gives it; the configuration (HARDCRON_EXECUTOR_*, flags) checks
 * the same bounds from here.
 */
export const EXECUTOR_SETTINGS = {
  concurrency: { min: 1, max: 64, default: 4 },
  maxRunsPerOwner: { min: 1, max: 64, default: 2 },
  maxRunSeconds: { min: 1, max: 86_400, default: 3600 },
  batchSize: { min: 1, max: 10_000, default: 100 },
  pollIntervalMs: { min: 10, max: 3_600_000, default: 1000 },
  leaseSeconds: { min: 1, max: 3600, default: 30 },
  historySeconds: { min: 1, max: 86_400, default: 60 },
} as const satisfies Record<string, WholeSettingWithDefault>;

/** Defaults of the options without bounds. */
export const EXECUTOR_DEFAULTS = { listen: true, shutdownGraceMs: 10_000, cancelMarginMs: 5_000 } as const;

/** The longest executor id (it names the executor in run records and leases). */
export const MAX_EXECUTOR_ID_LENGTH = 200;

export function resolveExecutorOptions(options: ExecutorOptions): ResolvedExecutorOptions {
  const whole = (name: keyof typeof EXECUTOR_SETTINGS): number =>
    checkWholeNumber(name, options[name] ?? EXECUTOR_SETTINGS[name].default, EXECUTOR_SETTINGS[name]);
  const concurrency = whole('concurrency');
  return {
    ...options,
    executorId: options.executorId ?? `${hostname()}:${process.pid}:${randomBytes(3).toString('hex')}`,
    concurrency,
    // Half of the connections unless told otherwise; never more than there are.
    maxRunsPerOwner: Math.min(
      checkWholeNumber('maxRunsPerOwner', options.maxRunsPerOwner ?? Math.max(1, Math.floor(concurrency / 2)), EXECUTOR_SETTINGS.maxRunsPerOwner),
      concurrency,
    ),
    batchSize: whole('batchSize'),
    maxRunSeconds: whole('maxRunSeconds'),
    pollIntervalMs: whole('pollIntervalMs'),
    listen: options.listen ?? EXECUTOR_DEFAULTS.listen,
    leaseSeconds: whole('leaseSeconds'),
    historySeconds: whole('historySeconds'),
    shutdownGraceMs: options.shutdownGraceMs ?? EXECUTOR_DEFAULTS.shutdownGraceMs,
    cancelMarginMs: options.cancelMarginMs ?? EXECUTOR_DEFAULTS.cancelMarginMs,
  };
}
