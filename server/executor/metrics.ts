import { Counter, Gauge, Histogram, Registry } from 'prom-client';

/** The executor's Prometheus metrics, in a registry of their own (served by the metrics endpoint). */
export class ExecutorMetrics {
  readonly registry = new Registry();
  readonly runs = new Counter({
    name: 'hardcron_runs_total',
    help: 'Runs finished, by terminal status',
    labelNames: ['status'] as const,
    registers: [this.registry],
  });
  readonly lateness = new Histogram({
    name: 'hardcron_run_lateness_seconds',
    help: 'Start of a run minus the time it was due',
    buckets: [0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1, 2.5, 5, 10, 30, 60],
    registers: [this.registry],
  });
  readonly duration = new Histogram({
    name: 'hardcron_run_duration_seconds',
    help: 'Time from the start of a run to its record',
    buckets: [0.0005, 0.001, 0.005, 0.01, 0.05, 0.1, 0.5, 1, 5, 30, 300],
    registers: [this.registry],
  });
  readonly claimBatchSize = new Histogram({
    name: 'hardcron_claim_batch_size',
    help: 'Runs claimed per claim',
    buckets: [0, 1, 2, 5, 10, 20, 50, 100, 200, 500, 1000],
    registers: [this.registry],
  });
  readonly openConnections = new Gauge({
    name: 'hardcron_executor_open_connections',
    help: 'Database connections the executor holds (control and workers)',
    registers: [this.registry],
  });
  /** Set by the executor: reads the backlog at scrape time (null when the database is away). */
  readBacklog: (() => Promise<number | null>) | undefined;
  readonly dueBacklog = new Gauge({
    name: 'hardcron_due_backlog',
    help: 'Occurrences due and not yet claimed, read at scrape time',
    registers: [this.registry],
    collect: async () => {
      const backlog = await this.readBacklog?.();
      if (backlog !== undefined && backlog !== null) this.dueBacklog.set(backlog);
    },
  });
  readonly busyConnections = new Gauge({
    name: 'hardcron_executor_busy_connections',
    help: 'Worker connections running a batch',
    registers: [this.registry],
  });
}
