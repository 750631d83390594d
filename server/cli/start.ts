import { spawn, type ChildProcess } from 'node:child_process';
import { fileURLToPath } from 'node:url';
import { parseArgs } from 'node:util';
import { formatDuration } from '../api/auth.ts';
import { startGraphQLServer, type RunningGraphQLServer } from '../api/server.ts';
import { signToken } from '../api/tokens.ts';
import { startConfig, type StartConfig } from '../config.ts';
import { connectClient } from '../db/connect.ts';
import { migrate } from '../db/migrate.ts';
import { DEMO, loadLocalSecrets, provisionLocal } from '../db/provision.ts';
import { openAdminTarget, redactUrl, withLogin, type DatabaseTarget } from '../db/targets.ts';
import { ConfigError, HardcronError } from '../errors.ts';
import { createLogger, type Logger } from '../logger.ts';
import { stopOnSignals } from '../signals.ts';
import type { Command } from './command.ts';

const BIN = fileURLToPath(new URL('../../bin/hardcron.js', import.meta.url));
const DEMO_TOKEN_HOURS = 12;
const EXECUTOR_READY_TIMEOUT_MS = 30_000;

export const startCommand: Command = {
  help: `Usage: hardcron start   (also: npm start)

Starts embedded PostgreSQL (kept under HARDCRON_DATA_DIR), or uses DATABASE_URL; applies the
migrations; gives $authenticator and $executor generated passwords (kept with mode 0600 in
HARDCRON_DATA_DIR/secrets.json, never printed); provisions the user "demo" with the job
function demo.heartbeat(); starts the GraphQL server and one executor (a child process); and
prints the GraphiQL URL, a dashboard link that signs "demo" in, a token for "demo" valid for
${DEMO_TOKEN_HOURS} hours (or JWT_MAX_TTL if shorter) and a mutation to try.
While it runs, hardcron user, token, jobs and migrate use its cluster and its secret (it records
where the cluster listens in HARDCRON_DATA_DIR/postgres/running.json, mode 0600).
Ctrl-C stops all of it: the executor (its runs finish, its lease is released), the server, and
PostgreSQL last.

Environment:
  DATABASE_URL       an admin (superuser) URL to use instead of embedded PostgreSQL
  PORT               GraphQL server port (default 5678)
  HOST               address to listen on (default 127.0.0.1)
  CORS_ORIGINS       origins whose pages may call /graphql from a browser, e.g. a frontend's
                     development server (see hardcron server --help; default: none)
  JWT_SECRET         token secret, at least 32 bytes (default: generated, kept in the data dir)
  JWT_MAX_TTL        longest token lifetime the server accepts (default 24h)
  HARDCRON_DATA_DIR  local state (default .hardcron/)
  HARDCRON_SERVER_STATEMENT_TIMEOUT_MS, _LOCK_TIMEOUT_MS, _CONNECTIONS_PER_USER, _QUEUE_PER_USER
                     the GraphQL server's request limits (see hardcron server --help)
  LOG_LEVEL          pino level of the JSON logs on stderr (default warn)`,

  async run(args, env) {
    const { positionals } = parseArgs({ args: [...args], options: {}, allowPositionals: true, strict: true });
    if (positionals.length > 0) throw new ConfigError('HC_USAGE', 'hardcron start takes no arguments');
    const config = startConfig(env);
    const { dataDir, maxTtlSeconds } = config;
    const logger = createLogger('hardcron', config.logLevel, process.stderr);
    const secrets = await loadLocalSecrets(dataDir, config.jwtSecret);

    const say = (line = ''): boolean => process.stdout.write(`${line}\n`);
    // Recorded (HARDCRON_DATA_DIR/postgres/running.json), so that hardcron user, jobs, migrate
    // and friends use this cluster while it runs.
    const target = await openAdminTarget(config.target, { record: true });
    const stack = new Shutdown(logger, say);
    // Steps run in reverse: the executor (it stops claiming, lets its runs finish and releases
    // its lease), then the server, and PostgreSQL last, when nothing uses it any more.
    if (target.kind === 'embedded') stack.push('database', () => target.stop());
    try {
      say(target.kind === 'embedded' ? `PostgreSQL: embedded, data in ${dataDir}` : `PostgreSQL: ${redactUrl(target.adminUrl)}`);
      await migrate({ connectionString: target.adminUrl });
      await provisionLocal(target.adminUrl, secrets);
      const database = new URL(target.adminUrl).pathname.slice(1);

      const server = await startGraphQLServer({
        connectionString: withLogin(target.adminUrl, `${database}$authenticator`, secrets.authenticatorPassword),
        auth: { secret: secrets.jwtSecret, maxTtlSeconds },
        logger,
        ...config.server,
      });
      stack.push('server', () => server.stop());

      const executorId = `start:${process.pid}`;
      const executor = spawnExecutor(withLogin(target.adminUrl, `${database}$executor`, secrets.executorPassword), executorId, config);
      stack.push('executor', () => stopChild(executor));
      await waitForExecutor(target, executorId, executor);
      await waitForServer(server);

      // The demo token must pass the server's own lifetime check.
      const demoTtl = Math.min(DEMO_TOKEN_HOURS * 3600, maxTtlSeconds);
      const token = await signToken(secrets.jwtSecret, DEMO.user, demoTtl);
      // Before saying ready: whoever reads "ready" may press Ctrl-C at once.
      stopOnSignals(() => stack.run(), logger);
      printWelcome(say, server, token, demoTtl === DEMO_TOKEN_HOURS * 3600 ? `${DEMO_TOKEN_HOURS} hours` : formatDuration(demoTtl));
      say(`hardcron ready at ${server.url}/ (Ctrl-C stops)`);
      executor.once('exit', (code, signal) => {
        if (stack.stopping) return;
        logger.error({ code, signal }, 'the executor exited; stopping');
        void stack.run().then(() => process.exit(1));
      });
    } catch (error) {
      await stack.run();
      throw error;
    }
    await new Promise(() => {}); // until a signal
  },
};

/**
 * Stops what was started, in reverse order, once, with one plain line per part on stdout: a
 * clean stop is not a warning. A step that fails is logged (its message, not the error object:
 * a database client's error drags its whole connection state along).
 */
class Shutdown {
  stopping = false;
  private readonly steps: Array<{ name: string; step: () => Promise<void> }> = [];

  constructor(
    private readonly logger: Logger,
    private readonly say: (line?: string) => boolean,
  ) {}

  push(name: string, step: () => Promise<void>): void {
    this.steps.push({ name, step });
  }

  async run(): Promise<void> {
    if (this.stopping) return;
    this.stopping = true;
    for (const { name, step } of this.steps.reverse()) {
      this.say(`stopping: ${name}`);
      await step().catch((error: unknown) => {
        const code = error instanceof HardcronError ? error.code : (error as { code?: unknown } | null)?.code;
        this.logger.error({ part: name, code, message: error instanceof Error ? error.message : String(error) }, 'error while stopping');
      });
    }
    this.say('stopped');
  }
}

/**
 * The executor as a separate process; its database URL travels in the environment, not argv.
 * It gets a process group of its own, so a terminal's Ctrl-C reaches only `start`, which then
 * stops it once (SIGTERM); an IPC channel lets it notice if `start` dies without stopping it.
 * Its JSON logs go to stderr with ours, leaving stdout to the lines meant for people.
 */
function spawnExecutor(connectionString: string, executorId: string, config: Pick<StartConfig, 'inherited' | 'logLevel'>): ChildProcess {
  return spawn(process.execPath, [BIN, 'executor'], {
    detached: true,
    env: {
      ...config.inherited,
      EXECUTOR_DATABASE_URL: connectionString,
      HARDCRON_EXECUTOR_ID: executorId,
      LOG_LEVEL: config.logLevel,
    },
    stdio: ['ignore', 2, 2, 'ipc'],
  });
}

function stopChild(child: ChildProcess): Promise<void> {
  if (child.exitCode !== null || child.signalCode !== null) return Promise.resolve();
  return new Promise((done) => {
    child.once('exit', () => done());
    child.kill('SIGTERM');
  });
}

/** The executor runs once its lease is in data.executors (it writes it when it starts). */
async function waitForExecutor(target: DatabaseTarget, executorId: string, child: ChildProcess): Promise<void> {
  const client = await connectClient(target.adminUrl, 'hardcron start');
  try {
    const deadline = Date.now() + EXECUTOR_READY_TIMEOUT_MS;
    for (;;) {
      if (child.exitCode !== null) throw new HardcronError('HC_EXECUTOR_EXITED', `the executor exited at start-up (code ${child.exitCode})`);
      const { rows } = await client.query('select 1 from data.executors where id = $1', [executorId]);
      if (rows.length > 0) return;
      if (Date.now() > deadline) throw new HardcronError('HC_EXECUTOR_TIMEOUT', 'the executor did not start within 30 s');
      await new Promise((resolve) => setTimeout(resolve, 100));
    }
  } finally {
    await client.end();
  }
}

async function waitForServer(server: RunningGraphQLServer): Promise<void> {
  const response = await fetch(`${server.url}/healthz`);
  if (!response.ok) throw new HardcronError('HC_SERVER_UNHEALTHY', `the GraphQL server answered ${response.status} on /healthz`);
}

function printWelcome(say: (line?: string) => boolean, server: RunningGraphQLServer, token: string, validFor: string): void {
  say();
  say(`GraphiQL:  ${server.url}/`);
  // The token travels in the fragment, which browsers never send to a server (so no access log
  // or proxy sees it); the page moves it to sessionStorage and clears the address bar.
  say(`Dashboard: ${server.url}/dashboard/#token=${token}`);
  say(`GraphQL:   ${server.url}/graphql (websockets on the same path)`);
  say();
  say(`Token for the user "${DEMO.user}", valid ${validFor}. In GraphiQL, open the Headers tab and paste:`);
  say(`  {"Authorization": "Bearer ${token}"}`);
  say();
  say('Then schedule the demo job every 5 seconds:');
  say(`  mutation { scheduleJob(input: { functionSignature: "${DEMO.functionSignature}", schedule: "*/5 * * * * *", name: "heartbeat" }) { job { id nextRunAt } } }`);
  say('and watch its runs arrive:');
  say('  subscription { jobRunEvents { id status at jobId run { rowsAffected errorMessage } } }');
  say();
}
