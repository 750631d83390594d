import { hostname } from 'node:os';
import { randomBytes } from 'node:crypto';
import type { Logger } from '../logger.ts';
import type { ExecutorMetrics } from './metrics.ts';

/** Options of an executor process. Every field but `connectionString` has a documented default. */
export interface ExecutorOptions {
  /** URL that logs in as the database's `$executor` role (never a superuser). */
  connectionString: string;
  /** Names this executor in run records and leases. Default: `<host>:<pid>:<random>`. */
  executorId?: string;
  /** Connections running batches in parallel. Default: 2. */
  concurrency?: number;
  /** Most runs claimed and committed together (each in its own subtransaction). Default: 100. */
  batchSize?: number;
  /** Longest sleep when idle: the polling fallback. Default: 1000 ms. */
  pollIntervalMs?: number;
  /** Wake up on LISTEN/NOTIFY as well as by polling. Default: true. */
  listen?: boolean;
  /** Runs of an executor silent this long are declared lost. Renewed every third of it. Default: 30 s. */
  leaseSeconds?: number;
  /** On stop, how long running batches may finish before they are cancelled. Default: 10,000 ms. */
  shutdownGraceMs?: number;
  /** Extra time over a batch's summed timeouts before the executor cancels it itself. Default: 5,000 ms. */
  cancelMarginMs?: number;
  logger?: Logger;
  metrics?: ExecutorMetrics;
}

export type ResolvedExecutorOptions = Required<Omit<ExecutorOptions, 'logger' | 'metrics'>> &
  Pick<ExecutorOptions, 'logger' | 'metrics'>;

export function resolveExecutorOptions(options: ExecutorOptions): ResolvedExecutorOptions {
  return {
    ...options,
    executorId: options.executorId ?? `${hostname()}:${process.pid}:${randomBytes(3).toString('hex')}`,
    concurrency: options.concurrency ?? 2,
    batchSize: options.batchSize ?? 100,
    pollIntervalMs: options.pollIntervalMs ?? 1000,
    listen: options.listen ?? true,
    leaseSeconds: options.leaseSeconds ?? 30,
    shutdownGraceMs: options.shutdownGraceMs ?? 10_000,
    cancelMarginMs: options.cancelMarginMs ?? 5_000,
  };
}
