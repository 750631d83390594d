import pg from 'pg';
import { pinSearchPath } from '../db/connect.ts';
import { sessionConfig } from '../db/session.ts';
import { createLogger, type Logger } from '../logger.ts';
import { ExecutorMetrics } from './metrics.ts';
import { resolveExecutorOptions, type ExecutorOptions, type ResolvedExecutorOptions } from './options.ts';
import { announceRunEvents } from './sql/announce-run-events.ts';
import { cancelBackends } from './sql/cancel-backends.ts';
import { cancelRequestedRuns, listenRunsCancelled, RUNS_CANCELLED_CHANNEL } from './sql/cancel-requested-runs.ts';
import { claimRuns, type ClaimedRun } from './sql/claim-runs.ts';
import { dueBacklog } from './sql/due-backlog.ts';
import { releaseLease, renewLease } from './sql/lease.ts';
import { listenJobsChanged } from './sql/listen-jobs-changed.ts';
import { msUntilNextDue } from './sql/next-due-at.ts';
import { ping } from './sql/ping.ts';
import { maintainRunHistory, type HistoryAction } from './sql/maintain-run-history.ts';

/** Passes of run history upkeep in a row, each emptying or dropping one partition (then the next turn). */
const MAX_HISTORY_PASSES = 50;
const EMPTYING: ReadonlySet<HistoryAction['action']> = new Set(['truncated', 'compacted', 'dropped']);
import { pruneRunEvents } from './sql/prune-run-events.ts';
import { recordInterruptedRun, runOne, type RunOutcome } from './sql/run-one.ts';
import { sweepRuns } from './sql/sweep-runs.ts';
import { terminateBackends } from './sql/terminate-backends.ts';
import { Waker } from './waker.ts';

const MAX_BACKOFF_MS = 5_000;
/**
 * At most one announcement of run events per this many milliseconds: the GraphQL server reads
 * the event log at most every 100 ms, so subscribers see no difference, and the announcements
 * cost a few commits a second, whatever the rate of runs.
 */
const ANNOUNCE_INTERVAL_MS = 25;

/** A connection error (as opposed to an error of a statement on a healthy connection). */
function isConnectionError(error: unknown): boolean {
  const code = (error as { code?: string }).code;
  if (code === undefined || !/^[0-9A-Z]{5}$/.test(code)) return true; // socket-level: ECONNRESET, "Connection terminated", …
  return code.startsWith('08') || code === '57P01' || code === '57P02' || code === '57P03';
}

/** A database that refuses writes: a standby (in recovery) or one set read-only behind the address. */
function isReadOnlyError(error: unknown): boolean {
  return (error as { code?: string }).code === '25006';
}

/** The claim's or the renewal's answer when this executor's lease is gone (it expired while cut off). */
function isLeaseGone(error: unknown): boolean {
  return (error as { code?: string }).code === 'HC302';
}

type Trouble = 'unavailable' | 'read-only' | 'lease';

const TROUBLE_MESSAGES: Record<Trouble, string> = {
  unavailable: 'the database cannot be reached: retrying with backoff (runs nobody is running are retried once it is back)',
  'read-only': 'the database is read-only (a standby in recovery, or set read-only): waiting until it accepts writes',
  lease: "this executor's lease is gone (it expired while the database was away): renewing it now",
};

function troubleOf(error: unknown): Trouble | null {
  if (isReadOnlyError(error)) return 'read-only';
  if (isLeaseGone(error)) return 'lease';
  return isConnectionError(error) ? 'unavailable' : null;
}

function describe(error: unknown): { code?: string; message: string } {
  const { code, message } = error as { code?: string; message?: string };
  return { ...(code ? { code } : {}), message: message ?? String(error) };
}

/** One of the executor's run connections, and the run it is running, if any. */
interface Slot {
  client: pg.Client | undefined;
  run: ClaimedRun | undefined;
  /** When the watchdog cancels the run: its timeout and a margin after it started. */
  deadline: number;
}

/**
 * Claims due occurrences and runs each as its own transaction on a connection of its own. A
 * dispatcher claims, in one short transaction, as many runs as there are idle connections,
 * giving no owner more than `maxRunsPerOwner` of them, and hands each to an idle connection;
 * when nothing is due it sleeps until the next due time, a NOTIFY, a connection coming free or
 * the poll interval. A control connection renews the lease, sweeps runs that
 * nobody is running, listens, announces run events, and cancels runs that overrun.
 */
export class Executor {
  readonly options: ResolvedExecutorOptions;
  readonly metrics: ExecutorMetrics;
  private readonly logger: Logger;
  private readonly waker = new Waker();
  private stopping = false;
  private control: pg.Client | undefined;
  private claimer: pg.Client | undefined;
  /** The one loop that renews the lease and sweeps; `leaseWaker` wakes it early. */
  private leaseLoop: Promise<void> | undefined;
  private historyLoop: Promise<void> | undefined;
  private readonly historyWaker = new Waker();
  private readonly leaseWaker = new Waker();
  /** When the lease was last renewed (ms since the epoch), for /readyz. */
  private renewedAt = 0;
  /** What is wrong with the database now, logged once when it starts and once when it ends. */
  private trouble: Trouble | null = null;
  private watchdog: NodeJS.Timeout | undefined;
  private cancelPoll: NodeJS.Timeout | undefined;
  private dispatcher: Promise<void> | undefined;
  private readonly slots: Slot[];
  /** Runs started and not yet finished, by owner. */
  private readonly runningByOwner = new Map<string, number>();
  private readonly inFlight = new Set<Promise<void>>();
  /** The end of the queue of operations on the control connection: one statement at a time. */
  private controlTail: Promise<unknown> = Promise.resolve();
  private announceTimer: NodeJS.Timeout | undefined;
  private lastAnnounced = 0;

  constructor(options: ExecutorOptions) {
    this.options = resolveExecutorOptions(options);
    this.logger = options.logger ?? createLogger('hardcron-executor');
    this.metrics = options.metrics ?? new ExecutorMetrics();
    this.metrics.readBacklog = () => this.dueBacklog();
    this.slots = Array.from({ length: this.options.concurrency }, () => ({ client: undefined, run: undefined, deadline: 0 }));
  }

  /**
   * Whether the database answers on the control connection and the lease was renewed within its
   * length (for /readyz): a read-only database answers, but takes no renewal.
   */
  async isReady(): Promise<boolean> {
    const control = this.control;
    if (this.stopping || !control || Date.now() - this.renewedAt > this.options.leaseSeconds * 1000) return false;
    try {
      await withTimeout(this.serially(() => ping(control)), 2000);
      return true;
    } catch {
      return false;
    }
  }

  /** Occurrences due and not yet claimed, or null when the database does not answer. */
  async dueBacklog(): Promise<number | null> {
    const control = this.control;
    if (!control) return null;
    try {
      return await withTimeout(this.serially(() => dueBacklog(control)), 2000);
    } catch {
      return null;
    }
  }

  get id(): string {
    return this.options.executorId;
  }

  /**
   * Connects, takes the lease, and starts claiming. Resolves once it is running. A database that
   * is read-only (a standby behind the address) is waited for, with one log line, until it
   * accepts writes or stop() is called; any other failure to start rejects.
   */
  async start(): Promise<void> {
    for (let attempt = 0; !this.control; attempt++) {
      try {
        this.control = await this.connectControl();
      } catch (error) {
        if (!isReadOnlyError(error) || this.stopping) throw error;
        this.troubled(error, 'start');
        await this.backoff(attempt);
      }
    }
    this.fine();
    // Runs recorded under this id before now are nobody's: this process holds none yet.
    const control = this.control;
    await this.serially(() => sweepRuns(control, this.graceSeconds(), this.id));
    this.leaseLoop = this.renewLeases();
    this.historyLoop = this.maintainHistory();
    this.watchdog = setInterval(() => void this.cancelOverrunRuns(), 250);
    // Without LISTEN, requests to cancel runs (paused or unscheduled jobs) are looked for while
    // runs are going, once per poll interval.
    this.cancelPoll = setInterval(() => {
      if (this.slots.some((slot) => slot.run)) void this.cancelRequested();
    }, this.options.pollIntervalMs);
    this.dispatcher = this.dispatch();
    this.logger.info(
      { executorId: this.id, concurrency: this.options.concurrency, maxRunsPerOwner: this.options.maxRunsPerOwner, listen: this.options.listen },
      'executor started',
    );
  }

  /**
   * Stops claiming, lets running runs finish within the grace period, terminates what is still
   * running after it (those runs become lost and are retried), and releases the lease.
   */
  async stop(): Promise<void> {
    if (this.stopping) return;
    this.stopping = true;
    this.waker.wakeAll();
    this.leaseWaker.wakeAll();
    this.historyWaker.wakeAll();
    await this.dispatcher;
    const finished = Promise.all([...this.inFlight]);
    const inTime = await Promise.race([
      finished.then(() => true),
      new Promise<boolean>((resolve) => setTimeout(() => resolve(false), this.options.shutdownGraceMs).unref()),
    ]);
    if (!inTime) {
      const running = this.busyPids();
      this.logger.warn({ runs: running.length }, 'grace period over: terminating running runs');
      await this.controlQuery((control) => terminateBackends(control, running)).catch(() => {});
      await finished;
    }
    await this.leaseLoop;
    await this.historyLoop;
    clearInterval(this.watchdog);
    clearInterval(this.cancelPoll);
    if (this.announceTimer) {
      clearTimeout(this.announceTimer);
      this.announceTimer = undefined;
      await this.sendAnnouncement();
    }
    try {
      const control = this.control;
      if (control) await this.serially(() => releaseLease(control, this.id));
    } catch (error) {
      this.logger.warn({ err: describe(error) }, 'could not release the lease; it will expire');
    }
    await Promise.all([this.control, this.claimer, ...this.slots.map((slot) => slot.client)].map((client) => client?.end().catch(() => {})));
    this.logger.info({ executorId: this.id }, 'executor stopped');
  }

  /**
   * How long a claimed run may wait for its first statement before the sweep takes it for
   * abandoned: a third of the lease, so that with sweeps every third of the lease a stranded run
   * is lost within the lease time.
   */
  private graceSeconds(): number {
    return this.options.leaseSeconds / 3;
  }

  /**
   * The executor's one lease loop: renews the lease and sweeps every third of the lease, sooner
   * when woken (a claim found the lease gone), and after a failure retries with backoff, never
   * more than one attempt at a time.
   */
  private async renewLeases(): Promise<void> {
    const every = (this.options.leaseSeconds * 1000) / 3;
    for (let attempt = 0; !this.stopping; ) {
      let renewed = false;
      try {
        await this.controlQuery(async (control) => {
          await renewLease(control, this.id, this.options.leaseSeconds);
          this.renewedAt = Date.now();
          const lost = await sweepRuns(control, this.graceSeconds());
          if (lost > 0) this.logger.warn({ runs: lost }, 'runs nobody was running declared lost');
        });
        renewed = true;
      } catch (error) {
        this.troubled(error, 'lease renewal');
      }
      if (renewed) {
        if (attempt > 0) {
          this.fine();
          this.waker.wakeAll(); // the dispatcher may be backing off: claim now
          void this.sendAnnouncement(); // events committed before the outage may not have been announced
        }
        attempt = 0;
        // Run events older than an hour, in bounded chunks (it logs its own failures).
        await this.serially(() => pruneRunEvents(this.control, this.logger));
      } else {
        attempt++;
      }
      if (this.stopping) return;
      await this.leaseWaker.wait(renewed ? every : Math.min(every, backoffMs(attempt)));
    }
  }

  /**
   * Run history upkeep every `historySeconds` (code.maintain_run_history): on a connection of its
   * own, opened for each pass and closed after it, so that a long retention pass never delays
   * the lease renewal and never holds one of the runs' connections. A failed pass is logged and
   * the next one tries again.
   */
  private async maintainHistory(): Promise<void> {
    while (!this.stopping) {
      let client: pg.Client | undefined;
      try {
        client = await this.connect();
        // A pass that empties or drops a partition returns at once, to commit its locks away:
        // passes follow each other until one does neither (at most MAX_HISTORY_PASSES).
        for (let pass = 0; pass < MAX_HISTORY_PASSES && !this.stopping; pass++) {
          const actions = await maintainRunHistory(client);
          for (const done of actions) {
            if (done.action === 'kept' || done.action === 'empty') this.logger.debug(done, 'run history partition');
            else this.logger.info(done, 'run history partition');
          }
          if (!actions.some((done) => EMPTYING.has(done.action))) break;
        }
      } catch (error) {
        // Logged once per outage (a database gone or read-only), like the lease loop's troubles;
        // any other failure each time. The next pass tries again.
        this.troubled(error, 'run history upkeep');
      } finally {
        await client?.end().catch(() => {});
      }
      if (this.stopping) return;
      await this.historyWaker.wait(this.options.historySeconds * 1000);
    }
  }

  /** Logs what is wrong with the database once, when it starts (and a new kind of trouble). */
  private troubled(error: unknown, where: string): void {
    const trouble = troubleOf(error);
    if (trouble === null) {
      this.logger.warn({ err: describe(error), where }, 'database operation failed');
      return;
    }
    if (trouble === 'lease') this.leaseWaker.wakeAll();
    if (this.trouble === trouble) return;
    this.trouble = trouble;
    this.logger.warn({ err: describe(error), where }, TROUBLE_MESSAGES[trouble]);
  }

  /** The database works again: logged once after trouble. */
  private fine(): void {
    if (this.trouble === null) return;
    this.trouble = null;
    this.logger.info('the database works again: claiming');
  }

  private async connect(): Promise<pg.Client> {
    const client = new pg.Client(
      sessionConfig(this.options.connectionString, `hardcron executor ${this.id}`, {
        // If this process dies mid-run, the server notices within a quarter second and rolls the
        // run back (the sweep then finds it and it is retried) instead of running it to the end.
        client_connection_check_interval: 250,
      }),
    );
    // The failure reaches the statement that was running, or the next one; logged there, once per
    // outage. A connection that broke while idle is dropped at once, so that no run is sent on it.
    client.on('error', (error) => {
      this.logger.debug({ err: describe(error) }, 'database connection lost');
      this.forget(client);
    });
    try {
      await client.connect();
      await pinSearchPath(client);
    } catch (error) {
      await client.end().catch(() => {});
      throw error;
    }
    this.metrics.openConnections.inc();
    client.once('end', () => {
      this.metrics.openConnections.dec();
      this.forget(client);
    });
    return client;
  }

  /** A new control connection, with the lease renewed on it; closed again if that fails. */
  private async connectControl(): Promise<pg.Client> {
    const client = await this.connect();
    try {
      await renewLease(client, this.id, this.options.leaseSeconds);
      this.renewedAt = Date.now();
      if (this.options.listen) {
        client.on('notification', (message) => {
          if (message.channel === RUNS_CANCELLED_CHANNEL) void this.cancelRequested();
          else this.waker.wakeAll();
        });
        await listenJobsChanged(client);
        await listenRunsCancelled(client);
      }
    } catch (error) {
      await client.end().catch(() => {});
      throw error;
    }
    return client;
  }

  /** Drops a connection that broke or ended from wherever it is kept; the next user connects anew. */
  private forget(client: pg.Client): void {
    if (this.control === client) this.control = undefined;
    if (this.claimer === client) this.claimer = undefined;
    for (const slot of this.slots) if (slot.client === client) slot.client = undefined;
  }

  /**
   * Runs `operation` on the control connection, connecting it first if it is gone. One attempt:
   * on failure the connection is dropped (the next operation connects anew) and the error
   * rethrown; the lease loop is what keeps trying.
   */
  private async controlQuery(operation: (control: pg.Client) => Promise<void>): Promise<void> {
    await this.serially(async () => {
      try {
        this.control ??= await this.connectControl();
        await operation(this.control);
      } catch (error) {
        if (troubleOf(error) !== null) {
          await this.control?.end().catch(() => {});
          this.control = undefined;
        }
        throw error;
      }
    });
  }

  /**
   * Runs `operation` after the control connection's earlier operations have settled: the lease,
   * the sweep, cancels, announcements, pruning and readiness checks share that connection, and a
   * connection runs one statement at a time.
   */
  private serially<T>(operation: () => Promise<T>): Promise<T> {
    const result = this.controlTail.then(operation, operation);
    this.controlTail = result.catch(() => {});
    return result;
  }

  private busyPids(): number[] {
    return this.slots.flatMap((slot) => (slot.run && slot.client ? [backendPid(slot.client)] : []));
  }

  /** The server enforces each run's timeout; this cancels a run that overran it anyway. */
  private async cancelOverrunRuns(): Promise<void> {
    const now = Date.now();
    const overrun = this.slots.filter((slot) => slot.run && slot.client && slot.deadline < now);
    if (overrun.length === 0) return;
    const pids = overrun.map((slot) => backendPid(slot.client as pg.Client));
    this.logger.warn({ pids }, 'cancelling runs past their deadline');
    for (const slot of overrun) slot.deadline = now + this.options.cancelMarginMs;
    await this.controlQuery((control) => cancelBackends(control, pids)).catch(() => {});
  }

  /** Cancels the runs of this executor whose job was paused or unscheduled. */
  private async cancelRequested(): Promise<void> {
    try {
      await this.controlQuery(async (control) => {
        const cancelled = await cancelRequestedRuns(control, this.id);
        if (cancelled > 0) this.logger.info({ runs: cancelled }, 'cancelled runs of paused or unscheduled jobs');
      });
    } catch (error) {
      this.troubled(error, 'looking for runs to cancel');
    }
  }

  private backoff(attempt: number): Promise<void> {
    return new Promise((resolve) => setTimeout(resolve, backoffMs(attempt)));
  }

  /** How many more runs each owner with runs on this executor may start now. */
  private ownerRoom(): Map<string, number> {
    return new Map([...this.runningByOwner].map(([owner, running]) => [owner, this.options.maxRunsPerOwner - running]));
  }

  /**
   * Claims for the idle connections, one claim at a time, as many runs as there are idle
   * connections: a claim costs about as much as a run, so claiming for several connections at
   * once, rather than each connection claiming its own next run, leaves more of the machine to
   * the runs (measured in docs/performance.md).
   */
  private async dispatch(): Promise<void> {
    let attempt = 0;
    while (!this.stopping) {
      const idle = this.slots.filter((slot) => !slot.run);
      if (idle.length === 0) {
        await this.waker.wait(this.options.pollIntervalMs); // a run finishing wakes it
        continue;
      }
      try {
        this.claimer ??= await this.connect();
        const max = Math.min(idle.length, this.options.batchSize);
        const claimed = await claimRuns(this.claimer, this.id, max, this.ownerRoom(), this.options.maxRunsPerOwner);
        this.metrics.claimBatchSize.observe(claimed.length);
        attempt = 0;
        this.fine(); // a claim needs a writable database and a live lease
        if (claimed.length > 0) this.announce();
        claimed.forEach((run, i) => this.begin(idle[i] as Slot, run));
        if (claimed.length === 0) {
          // With runs going, what is due may be waiting for its owner's room: wait for a run to
          // finish (it wakes the dispatcher) rather than for the next due time, which has passed.
          const waitMs = idle.length < this.slots.length ? null : await msUntilNextDue(this.claimer);
          await this.waker.wait(Math.min(waitMs ?? Infinity, this.options.pollIntervalMs));
        }
      } catch (error) {
        this.troubled(error, 'claim'); // a lost lease wakes the lease loop
        if (troubleOf(error) !== 'lease') {
          await this.claimer?.end().catch(() => {});
          this.claimer = undefined;
        }
        await this.waker.wait(backoffMs(attempt++)); // the lease loop wakes it when the database is back
      }
    }
  }

  private begin(slot: Slot, run: ClaimedRun): void {
    slot.run = run;
    this.runningByOwner.set(run.owner, (this.runningByOwner.get(run.owner) ?? 0) + 1);
    this.metrics.busyConnections.inc();
    const done = this.runOn(slot, run).finally(() => {
      slot.run = undefined;
      const left = (this.runningByOwner.get(run.owner) ?? 1) - 1;
      if (left > 0) this.runningByOwner.set(run.owner, left);
      else this.runningByOwner.delete(run.owner);
      this.metrics.busyConnections.dec();
      this.inFlight.delete(done);
      this.waker.wakeAll();
    });
    this.inFlight.add(done);
  }

  /**
   * Runs one claimed run on its slot's connection. If its transaction fails outside the job's
   * own error handling on a healthy connection, the failure is recorded; if the connection broke,
   * the run is left to the sweep (its transaction may still be running on the server, and
   * waiting for it would let a cut-off server stall this connection).
   */
  private async runOn(slot: Slot, run: ClaimedRun): Promise<void> {
    try {
      slot.client ??= await this.connect();
    } catch (error) {
      this.logger.warn({ runId: run.runId, err: describe(error) }, 'no connection for a claimed run; the sweep will retry it');
      return;
    }
    const client = slot.client;
    // The job's timeout, within the operator's ceiling.
    const timeoutMs = Math.min(run.timeoutMs, this.options.maxRunSeconds * 1000);
    slot.deadline = Date.now() + timeoutMs + this.options.cancelMarginMs;
    const sentAt = new Date();
    try {
      this.report(await runOne(client, this.id, { ...run, timeoutMs }));
    } catch (error) {
      if (isConnectionError(error)) {
        slot.client = undefined;
        await client.end().catch(() => {});
        await this.abandon(slot, run, error);
        return;
      }
      try {
        const status = await recordInterruptedRun(client, run, sentAt, describe(error));
        this.report({ runId: run.runId, jobId: run.jobId, status, latenessMs: 0, durationMs: 0 });
      } catch (recordError) {
        // HC303: no longer running (swept as lost meanwhile): nothing to do.
        this.logger.warn({ runId: run.runId, err: describe(recordError) }, 'run not recorded after its failure');
      }
    }
  }

  /**
   * After the connection broke under a run: on a new connection, the run is declared lost and
   * retried at once if no transaction holds it any more (the server ended the old one); if one
   * still does (the server has not noticed yet), the sweep will, without anyone waiting on it.
   */
  private async abandon(slot: Slot, run: ClaimedRun, error: unknown): Promise<void> {
    try {
      slot.client = await this.connect();
      const lost = await sweepRuns(slot.client, 0, this.id, run);
      this.logger.warn({ runId: run.runId, err: describe(error), lost: lost > 0 }, 'connection lost during a run');
    } catch (sweepError) {
      this.logger.warn({ runId: run.runId, err: describe(sweepError) }, 'connection lost during a run; the sweep will retry it');
    }
  }

  /**
   * Announces run events after run or claim transactions committed: at once if none was sent in
   * the last ANNOUNCE_INTERVAL_MS, else once at the end of it, for all the commits in between.
   */
  private announce(): void {
    if (this.announceTimer) return;
    const wait = Math.max(0, this.lastAnnounced + ANNOUNCE_INTERVAL_MS - Date.now());
    this.announceTimer = setTimeout(() => {
      this.announceTimer = undefined;
      this.lastAnnounced = Date.now();
      void this.sendAnnouncement();
    }, wait);
  }

  private async sendAnnouncement(): Promise<void> {
    try {
      await this.controlQuery(announceRunEvents);
    } catch (error) {
      this.troubled(error, 'announcing run events');
    }
  }

  private report(outcome: RunOutcome): void {
    this.announce();
    this.metrics.runs.inc({ status: outcome.status });
    this.metrics.lateness.observe(outcome.latenessMs / 1000);
    this.metrics.duration.observe(outcome.durationMs / 1000);
    this.logger.info(
      { runId: outcome.runId, jobId: outcome.jobId, status: outcome.status, durationMs: outcome.durationMs, latenessMs: outcome.latenessMs },
      'run finished',
    );
  }
}

/** 50 ms doubling up to MAX_BACKOFF_MS. */
function backoffMs(attempt: number): number {
  return Math.min(MAX_BACKOFF_MS, 50 * 2 ** attempt);
}

/** The server process behind a connection (node-pg keeps it from the start-up handshake). */
function backendPid(client: pg.Client): number {
  return (client as unknown as { processID: number }).processID;
}

/** `promise`, or a rejection after `ms` (the promise itself is left to settle on its own). */
function withTimeout<T>(promise: Promise<T>, ms: number): Promise<T> {
  let timer: NodeJS.Timeout | undefined;
  const timeout = new Promise<never>((_, reject) => {
    timer = setTimeout(() => reject(new Error(`no answer within ${ms} ms`)), ms);
  });
  return Promise.race([promise, timeout]).finally(() => clearTimeout(timer));
}
