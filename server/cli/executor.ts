import { parseArgs } from 'node:util';
import { booleanValue, requiredUrl, wholeNumber } from '../config.ts';
import { connectClient } from '../db/connect.ts';
import { checkRuntimeLogin } from '../db/login.ts';
import { Executor } from '../executor/executor.ts';
import { startHealthServer } from '../executor/http.ts';
import { stopOnSignals } from '../signals.ts';
import { createLogger } from '../logger.ts';
import type { Command } from './command.ts';

export const executorCommand: Command = {
  summary: 'run due jobs (a long-running process; run several for more throughput)',
  help: `Usage: hardcron executor [--concurrency N] [--batch-size N] [--poll-ms N] [--no-listen] [--id ID] [--http-port N]

Connects as the database's $executor role and runs due jobs until SIGTERM or SIGINT.

Environment (flags win):
  EXECUTOR_DATABASE_URL          postgres://<db>$executor:<password>@host/<db> (required)
  HARDCRON_EXECUTOR_CONCURRENCY  connections running batches in parallel (default 2)
  HARDCRON_EXECUTOR_BATCH_SIZE   runs committed together, each in its own subtransaction (default 100)
  HARDCRON_EXECUTOR_POLL_MS      longest idle sleep; the polling fallback (default 1000)
  HARDCRON_EXECUTOR_LISTEN       false: no LISTEN/NOTIFY, polling only (default true)
  HARDCRON_EXECUTOR_ID           the executor's name in run records (default host:pid:random)
  HARDCRON_EXECUTOR_LEASE_SECONDS  silence after which its running runs are lost (default 30)
  HARDCRON_EXECUTOR_HTTP_PORT    serve /healthz, /readyz and /metrics on this port (default: none)
  HARDCRON_EXECUTOR_HTTP_HOST    address for that (default 127.0.0.1)
  LOG_LEVEL                      pino level (default info)`,

  async run(args) {
    const { values } = parseArgs({
      args: [...args],
      options: {
        concurrency: { type: 'string' },
        'batch-size': { type: 'string' },
        'poll-ms': { type: 'string' },
        'no-listen': { type: 'boolean' },
        id: { type: 'string' },
        'http-port': { type: 'string' },
      },
      strict: true,
    });
    const env = process.env;
    const connectionString = requiredUrl(env, 'EXECUTOR_DATABASE_URL', 'the URL of the $executor role');
    const listen = values['no-listen'] ? false : booleanValue('HARDCRON_EXECUTOR_LISTEN', env.HARDCRON_EXECUTOR_LISTEN);
    const executorId = values.id ?? env.HARDCRON_EXECUTOR_ID;
    const concurrency = wholeNumber('--concurrency', values.concurrency ?? env.HARDCRON_EXECUTOR_CONCURRENCY, 1, 64);
    const batchSize = wholeNumber('--batch-size', values['batch-size'] ?? env.HARDCRON_EXECUTOR_BATCH_SIZE, 1, 10_000);
    const pollIntervalMs = wholeNumber('--poll-ms', values['poll-ms'] ?? env.HARDCRON_EXECUTOR_POLL_MS, 10, 3_600_000);
    const leaseSeconds = wholeNumber('HARDCRON_EXECUTOR_LEASE_SECONDS', env.HARDCRON_EXECUTOR_LEASE_SECONDS, 1, 3600);
    const httpPort = wholeNumber('--http-port', values['http-port'] ?? env.HARDCRON_EXECUTOR_HTTP_PORT, 0, 65535);

    const check = await connectClient(connectionString, 'hardcron executor check');
    try {
      await checkRuntimeLogin(check, 'executor', 'EXECUTOR_DATABASE_URL', connectionString);
    } finally {
      await check.end();
    }
    const logger = createLogger('hardcron-executor');
    const executor = new Executor({
      connectionString,
      logger,
      ...(executorId !== undefined && { executorId }),
      ...(listen !== undefined && { listen }),
      ...(concurrency !== undefined && { concurrency }),
      ...(batchSize !== undefined && { batchSize }),
      ...(pollIntervalMs !== undefined && { pollIntervalMs }),
      ...(leaseSeconds !== undefined && { leaseSeconds }),
    });
    await executor.start();
    const health =
      httpPort === undefined
        ? undefined
        : await startHealthServer({
            port: httpPort,
            host: env.HARDCRON_EXECUTOR_HTTP_HOST || '127.0.0.1',
            ready: () => executor.isReady(),
            registry: executor.metrics.registry,
            logger,
          });
    if (health) logger.info({ url: health.url }, 'executor health and metrics listening');
    let stopped: Promise<void> | undefined;
    const stop = (): Promise<void> =>
      (stopped ??= (async () => {
        await health?.stop();
        await executor.stop();
      })());
    stopOnSignals(stop, logger);
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
