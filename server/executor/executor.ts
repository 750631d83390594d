import pg from 'pg';
import { pinSearchPath } from '../db/connect.ts';
import { sessionConfig } from '../db/session.ts';
import { createLogger, type Logger } from '../logger.ts';
import { ExecutorMetrics } from './metrics.ts';
import { resolveExecutorOptions, type ExecutorOptions, type ResolvedExecutorOptions } from './options.ts';
import { cancelBackends } from './sql/cancel-backends.ts';
import { claimRuns, type ClaimedRun } from './sql/claim-runs.ts';
import { dueBacklog } from './sql/due-backlog.ts';
import { releaseLease, renewLease } from './sql/lease.ts';
import { listenJobsChanged } from './sql/listen-jobs-changed.ts';
import { msUntilNextDue } from './sql/next-due-at.ts';
import { ping } from './sql/ping.ts';
import { pruneRunEvents } from './sql/prune-run-events.ts';
import { rollback } from './sql/rollback.ts';
import { recordCrashedRun, runBatch, type RunOutcome } from './sql/run-batch.ts';
import { terminateBackends } from './sql/terminate-backends.ts';
import { Waker } from './waker.ts';

const MAX_BACKOFF_MS = 5_000;

/** A connection error (as opposed to an error of a statement on a healthy connection). */
function isConnectionError(error: unknown): boolean {
  const code = (error as { code?: string }).code;
  if (code === undefined || !/^[0-9A-Z]{5}$/.test(code)) return true; // socket-level: ECONNRESET, "Connection terminated", …
  return code.startsWith('08') || code === '57P01' || code === '57P02' || code === '57P03';
}

function describe(error: unknown): { code?: string; message: string } {
  const { code, message } = error as { code?: string; message?: string };
  return { ...(code ? { code } : {}), message: message ?? String(error) };
}

/**
 * Claims due occurrences and runs them. Each worker owns one connection: claim (a short
 * transaction), then run the batch (one transaction, one subtransaction per run), repeat; when
 * nothing is due it sleeps until the next due time, a NOTIFY, or the poll interval. A control
 * connection renews the lease, listens, and cancels batches that overrun.
 */
export class Executor {
  readonly options: ResolvedExecutorOptions;
  readonly metrics: ExecutorMetrics;
  private readonly logger: Logger;
  private readonly waker = new Waker();
  private stopping = false;
  private control: pg.Client | undefined;
  private leaseTimer: NodeJS.Timeout | undefined;
  private readonly workers: Promise<void>[] = [];
  /** Backend pid of each worker connection running a batch, with its deadline. */
  private readonly busy = new Map<number, number>();
  private watchdog: NodeJS.Timeout | undefined;

  constructor(options: ExecutorOptions) {
    this.options = resolveExecutorOptions(options);
    this.logger = options.logger ?? createLogger('hardcron-executor');
    this.metrics = options.metrics ?? new ExecutorMetrics();
    this.metrics.readBacklog = () => this.dueBacklog();
  }

  /** Whether the database answers on the control connection (for /readyz). */
  async isReady(): Promise<boolean> {
    if (this.stopping || !this.control) return false;
    try {
      await withTimeout(ping(this.control), 2000);
      return true;
    } catch {
      return false;
    }
  }

  /** Occurrences due and not yet claimed, or null when the database does not answer. */
  async dueBacklog(): Promise<number | null> {
    if (!this.control) return null;
    try {
      return await withTimeout(dueBacklog(this.control), 2000);
    } catch {
      return null;
    }
  }

  get id(): string {
    return this.options.executorId;
  }

  /** Connects, takes the lease, and starts the workers. Resolves once it is running. */
  async start(): Promise<void> {
    this.control = await this.connectControl();
    this.leaseTimer = setInterval(() => {
      void this.renewLeaseQuietly();
      void pruneRunEvents(this.control, this.logger); // run events older than an hour, in bounded chunks
    }, (this.options.leaseSeconds * 1000) / 3);
    this.watchdog = setInterval(() => void this.cancelOverrunBatches(), 250);
    for (let i = 0; i < this.options.concurrency; i++) this.workers.push(this.work(i));
    this.logger.info({ executorId: this.id, concurrency: this.options.concurrency, listen: this.options.listen }, 'executor started');
  }

  /**
   * Stops claiming, lets running batches finish within the grace period, terminates what is
   * still running after it (those runs become lost and are retried), and releases the lease.
   */
  async stop(): Promise<void> {
    if (this.stopping) return;
    this.stopping = true;
    this.waker.wakeAll();
    const finished = Promise.all(this.workers);
    const inTime = await Promise.race([
      finished.then(() => true),
      new Promise<boolean>((resolve) => setTimeout(() => resolve(false), this.options.shutdownGraceMs).unref()),
    ]);
    if (!inTime) {
      this.logger.warn({ batches: this.busy.size }, 'grace period over: terminating running batches');
      const running = [...this.busy.keys()];
      await this.controlQuery((control) => terminateBackends(control, running));
      await finished;
    }
    clearInterval(this.leaseTimer);
    clearInterval(this.watchdog);
    try {
      if (this.control) await releaseLease(this.control, this.id);
    } catch (error) {
      this.logger.warn({ err: describe(error) }, 'could not release the lease; it will expire');
    }
    await this.control?.end().catch(() => {});
    this.logger.info({ executorId: this.id }, 'executor stopped');
  }

  private async connect(): Promise<pg.Client> {
    const client = new pg.Client(
      sessionConfig(this.options.connectionString, `hardcron executor ${this.id}`, {
        // If this process dies mid-batch, the server notices within a quarter second and rolls the
        // batch back (its runs become lost and are retried) instead of running it to the end.
        client_connection_check_interval: 250,
      }),
    );
    client.on('error', (error) => this.logger.warn({ err: describe(error) }, 'database connection lost'));
    await client.connect();
    await pinSearchPath(client);
    this.metrics.openConnections.inc();
    client.once('end', () => this.metrics.openConnections.dec());
    return client;
  }

  private async connectControl(): Promise<pg.Client> {
    const client = await this.connect();
    await renewLease(client, this.id, this.options.leaseSeconds);
    if (this.options.listen) {
      client.on('notification', () => this.waker.wakeAll());
      await listenJobsChanged(client);
    }
    client.on('end', () => {
      if (this.control === client) this.control = undefined;
    });
    return client;
  }

  /**
   * Runs `operation` on the control connection, reconnecting (with backoff) until it succeeds;
   * once stopping, it gives up after a few attempts and rejects.
   */
  private async controlQuery(operation: (control: pg.Client) => Promise<void>): Promise<void> {
    for (let attempt = 0; ; attempt++) {
      try {
        this.control ??= await this.connectControl();
        await operation(this.control);
        return;
      } catch (error) {
        await this.control?.end().catch(() => {});
        this.control = undefined;
        if (this.stopping && attempt >= 3) throw error;
        await this.backoff(attempt);
      }
    }
  }

  private async renewLeaseQuietly(): Promise<void> {
    try {
      await this.controlQuery((control) => renewLease(control, this.id, this.options.leaseSeconds));
    } catch (error) {
      this.logger.warn({ err: describe(error) }, 'lease renewal failed');
    }
  }

  /** The server enforces each run's timeout; this cancels a batch that overran them all anyway. */
  private async cancelOverrunBatches(): Promise<void> {
    const now = Date.now();
    const overrun = [...this.busy].filter(([, deadline]) => deadline < now).map(([pid]) => pid);
    if (overrun.length === 0) return;
    this.logger.warn({ pids: overrun }, 'cancelling batches past their deadline');
    for (const pid of overrun) this.busy.set(pid, now + this.options.cancelMarginMs);
    await this.controlQuery((control) => cancelBackends(control, overrun)).catch(() => {});
  }

  private backoff(attempt: number): Promise<void> {
    return new Promise((resolve) => setTimeout(resolve, Math.min(MAX_BACKOFF_MS, 50 * 2 ** attempt)));
  }

  private async work(worker: number): Promise<void> {
    let client: pg.Client | undefined;
    let attempt = 0;
    while (!this.stopping) {
      try {
        client ??= await this.connect();
        const claimed = await claimRuns(client, this.id, this.options.batchSize);
        this.metrics.claimBatchSize.observe(claimed.length);
        attempt = 0;
        if (claimed.length === 0) {
          const waitMs = await msUntilNextDue(client);
          await this.waker.wait(Math.min(waitMs ?? Infinity, this.options.pollIntervalMs));
          continue;
        }
        client = await this.execute(client, claimed);
      } catch (error) {
        this.logger.warn({ worker, err: describe(error) }, 'worker error; reconnecting');
        await client?.end().catch(() => {});
        client = undefined;
        await this.backoff(attempt++);
      }
    }
    await client?.end().catch(() => {});
  }

  /**
   * Runs a claimed batch. If the batch fails as a whole (a run killed its connection, the server
   * restarted, a run was taken over), its runs are run again one by one, so that one bad run
   * cannot take others with it and none runs twice (a finished run cannot be started again).
   * Returns the connection to use next.
   */
  private async execute(client: pg.Client, runs: readonly ClaimedRun[]): Promise<pg.Client> {
    try {
      this.report(await this.timed(client, runs));
      return client;
    } catch (error) {
      if (runs.length === 1) return this.recoverSingle(client, runs[0] as ClaimedRun, error);
      this.logger.warn({ runs: runs.length, err: describe(error) }, 'batch failed; running its runs one by one');
      let current = await this.usable(client, error);
      for (const run of runs) {
        try {
          this.report(await this.timed(current, [run]));
        } catch (runError) {
          current = await this.recoverSingle(current, run, runError);
        }
      }
      return current;
    }
  }

  private async timed(client: pg.Client, runs: readonly ClaimedRun[]): Promise<RunOutcome[]> {
    const pid = (client as unknown as { processID: number }).processID;
    const budget = runs.reduce((sum, run) => sum + run.timeoutMs, 0) + this.options.cancelMarginMs;
    this.busy.set(pid, Date.now() + budget);
    this.metrics.busyConnections.inc();
    try {
      return await runBatch(client, this.id, runs);
    } finally {
      this.busy.delete(pid);
      this.metrics.busyConnections.dec();
    }
  }

  /** After a single run failed outside its own error handling: record it, if it is still ours. */
  private async recoverSingle(client: pg.Client, run: ClaimedRun, error: unknown): Promise<pg.Client> {
    const current = await this.usable(client, error);
    try {
      await recordCrashedRun(current, run.runId, describe(error));
      this.report([{ runId: run.runId, jobId: run.jobId, status: 'failed', latenessMs: 0, durationMs: 0 }]);
    } catch (recordError) {
      // HC303: no longer running (finished before the failure, or declared lost): nothing to do.
      this.logger.warn({ runId: run.runId, err: describe(recordError) }, 'run not recorded after its failure');
    }
    return current;
  }

  /** A connection fit for the next statement: the same one rolled back, or a new one. */
  private async usable(client: pg.Client, error: unknown): Promise<pg.Client> {
    if (!isConnectionError(error)) {
      try {
        await rollback(client);
        return client;
      } catch {
        // fall through to a new connection
      }
    }
    await client.end().catch(() => {});
    for (let attempt = 0; ; attempt++) {
      try {
        return await this.connect();
      } catch (connectError) {
        this.logger.warn({ err: describe(connectError) }, 'reconnect failed');
        await this.backoff(attempt);
      }
    }
  }

  private report(outcomes: readonly RunOutcome[]): void {
    for (const outcome of outcomes) {
      this.metrics.runs.inc({ status: outcome.status });
      this.metrics.lateness.observe(outcome.latenessMs / 1000);
      this.metrics.duration.observe(outcome.durationMs / 1000);
      this.logger.info(
        { runId: outcome.runId, jobId: outcome.jobId, status: outcome.status, durationMs: outcome.durationMs, latenessMs: outcome.latenessMs },
        'run finished',
      );
    }
  }
}

/** `promise`, or a rejection after `ms` (the promise itself is left to settle on its own). */
function withTimeout<T>(promise: Promise<T>, ms: number): Promise<T> {
  let timer: NodeJS.Timeout | undefined;
  const timeout = new Promise<never>((_, reject) => {
    timer = setTimeout(() => reject(new Error(`no answer within ${ms} ms`)), ms);
  });
  return Promise.race([promise, timeout]).finally(() => clearTimeout(timer));
}
