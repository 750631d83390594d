import { parseArgs } from 'node:util';
import { executorConfig } from '../config.ts';
import { connectClient } from '../db/connect.ts';
import { checkRuntimeLogin } from '../db/login.ts';
import { Executor } from '../executor/executor.ts';
import { startHealthServer } from '../executor/http.ts';
import { stopOnSignals } from '../signals.ts';
import { EXECUTOR_SETTINGS } from '../executor/options.ts';
import { createLogger, DEFAULT_LOG_LEVEL } from '../logger.ts';
import { LOOPBACK } from '../settings.ts';
import type { Command } from './command.ts';

export const executorCommand: Command = {
  help: `Usage: hardcron executor [--concurrency N] [--max-runs-per-owner N] [--batch-size N] [--poll-ms N] [--no-listen] [--id ID] [--http-port N]

Connects as the database's $executor role and runs due jobs until SIGTERM or SIGINT.

Environment (flags win):
  EXECUTOR_DATABASE_URL          postgres://<db>$executor:<password>@host/<db> (required)
  HARDCRON_EXECUTOR_CONCURRENCY  connections running runs in parallel, each run its own transaction (default ${EXECUTOR_SETTINGS.concurrency.default})
  HARDCRON_EXECUTOR_MAX_RUNS_PER_OWNER  most of those one owner's runs may hold at once (default: half of them, at least 1)
  HARDCRON_EXECUTOR_MAX_RUN_SECONDS  the longest a run may take, whatever its job's timeout (default ${EXECUTOR_SETTINGS.maxRunSeconds.default})
  HARDCRON_EXECUTOR_BATCH_SIZE   most runs claimed at once (default ${EXECUTOR_SETTINGS.batchSize.default})
  HARDCRON_EXECUTOR_POLL_MS      longest idle sleep; the polling fallback (default ${EXECUTOR_SETTINGS.pollIntervalMs.default})
  HARDCRON_EXECUTOR_LISTEN       false: no LISTEN/NOTIFY, polling only (default true)
  HARDCRON_EXECUTOR_ID           the executor's name in run records (default host:pid:random)
  HARDCRON_EXECUTOR_LEASE_SECONDS  silence after which its running runs are lost (default ${EXECUTOR_SETTINGS.leaseSeconds.default})
  HARDCRON_EXECUTOR_HISTORY_SECONDS  how often run history partitions and retention are maintained (default ${EXECUTOR_SETTINGS.historySeconds.default})
  HARDCRON_EXECUTOR_HTTP_PORT    serve /healthz, /readyz and /metrics on this port (default: none)
  HARDCRON_EXECUTOR_HTTP_HOST    address for that (default ${LOOPBACK})
  LOG_LEVEL                      pino level (default ${DEFAULT_LOG_LEVEL})`,

  async run(args, env) {
    const { values } = parseArgs({
      args: [...args],
      options: {
        concurrency: { type: 'string' },
        'max-runs-per-owner': { type: 'string' },
        'batch-size': { type: 'string' },
        'poll-ms': { type: 'string' },
        'no-listen': { type: 'boolean' },
        id: { type: 'string' },
        'http-port': { type: 'string' },
      },
      strict: true,
    });
    const config = executorConfig(env, values);
    const { connectionString } = config.executor;
    const check = await connectClient(connectionString, 'hardcron executor check');
    try {
      await checkRuntimeLogin(check, 'executor', 'EXECUTOR_DATABASE_URL', connectionString);
    } finally {
      await check.end();
    }
    const logger = createLogger('hardcron-executor', config.logLevel);
    const executor = new Executor({ ...config.executor, logger });
    let health: Awaited<ReturnType<typeof startHealthServer>> | undefined;
    let stopped: Promise<void> | undefined;
    const stop = (): Promise<void> =>
      (stopped ??= (async () => {
        await health?.stop();
        await executor.stop();
      })());
    // Before start(): it waits while the database is read-only (a standby behind the address),
    // and a signal meanwhile must still stop the process.
    stopOnSignals(stop, logger);
    await executor.start();
    health =
      config.health === undefined
        ? undefined
        : await startHealthServer({ ...config.health, ready: () => executor.isReady(), registry: executor.metrics.registry, logger });
    if (health) logger.info({ url: health.url }, 'executor health and metrics listening');
    // Started by `hardcron start` (an IPC channel): stop when it goes away without stopping us.
    if (process.send) {
      process.once('disconnect', () => {
        logger.warn('the parent process is gone: stopping');
        void stop().then(() => process.exit(0), () => process.exit(1));
      });
    }
    await new Promise(() => {}); // runs until a signal stops the process
  },
};
