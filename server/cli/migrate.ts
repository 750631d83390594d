import { parseArgs } from 'node:util';
import { wholeNumber } from '../config.ts';
import { ConfigError } from '../errors.ts';
import { migrate } from '../db/migrate.ts';
import { openAdminTarget, redactUrl } from '../db/targets.ts';
import { withAdminTransaction } from '../db/admin.ts';
import { setRuntimePasswords } from '../db/provision.ts';
import type { Command } from './command.ts';

export const migrateCommand: Command = {
  summary: 'install or upgrade hardcron in the database',
  help: `Usage: hardcron migrate

Applies hardcron's pending SQL migrations (sql/NNNN_*.sql), each in a transaction, under a
lock on the migrations ledger that only a superuser can take, so concurrent runs are safe and a
second run changes nothing. A lock that another session holds for longer than
HARDCRON_MIGRATE_LOCK_TIMEOUT_MS (default 60000) stops it with HC_MIGRATION_LOCK_TIMEOUT,
naming the sessions that hold locks; nothing of the blocked migration is applied.

Target: DATABASE_URL (a superuser URL of the database to install into) when set; otherwise the
embedded PostgreSQL kept under HARDCRON_DATA_DIR (default .hardcron/), database d0.

AUTHENTICATOR_PASSWORD and EXECUTOR_PASSWORD, when set, become the login passwords of the
database's $authenticator (GraphQL server) and $executor roles (they are never printed).`,

  async run(args) {
    const { positionals } = parseArgs({ args: [...args], options: {}, allowPositionals: true, strict: true });
    if (positionals.length > 0) throw new ConfigError('HC_USAGE', `migrate takes no arguments (got ${positionals.join(' ')})`);
    const lockTimeoutMs = wholeNumber('HARDCRON_MIGRATE_LOCK_TIMEOUT_MS', process.env.HARDCRON_MIGRATE_LOCK_TIMEOUT_MS, 1, 86_400_000);
    const target = await openAdminTarget();
    try {
      const result = await migrate({
        connectionString: target.adminUrl,
        onApplied: (name) => process.stdout.write(`applied ${name}\n`),
        ...(lockTimeoutMs !== undefined && { lockTimeoutMs }),
      });
      await setPasswordsFromEnvironment(target.adminUrl);
      const where = target.kind === 'embedded' ? 'embedded PostgreSQL' : redactUrl(target.adminUrl);
      process.stdout.write(
        result.applied.length === 0
          ? `${where}: up to date (${result.alreadyApplied} migrations applied earlier)\n`
          : `${where}: applied ${result.applied.length} migration(s)\n`,
      );
    } finally {
      await target.stop();
    }
  },
};

/** AUTHENTICATOR_PASSWORD / EXECUTOR_PASSWORD, when set, become the runtime roles' passwords. */
async function setPasswordsFromEnvironment(adminUrl: string): Promise<void> {
  const passwords = { authenticator: process.env.AUTHENTICATOR_PASSWORD || undefined, executor: process.env.EXECUTOR_PASSWORD || undefined };
  if (!passwords.authenticator && !passwords.executor) return;
  await withAdminTransaction(adminUrl, null, (client) => setRuntimePasswords(client, passwords));
  for (const [nickname, password] of Object.entries(passwords)) if (password) process.stdout.write(`set the password of $${nickname}\n`);
}
