import { parseArgs } from 'node:util';
import { migrateConfig, type MigrateConfig } from '../config.ts';
import { ConfigError } from '../errors.ts';
import { migrate } from '../db/migrate.ts';
import { openAdminTarget, redactUrl } from '../db/targets.ts';
import { withAdminTransaction } from '../db/admin.ts';
import { setRuntimePasswords } from '../db/provision.ts';
import { MIGRATE_LOCK_TIMEOUT_MS } from '../settings.ts';
import type { Command } from './command.ts';

export const migrateCommand: Command = {
  help: `Usage: hardcron migrate

Applies hardcron's pending SQL migrations (sql/migrations/NNNN_*.sql), then the routine files
(sql/routines/<schema>/<concept>.sql) that changed, all in one transaction, under a lock on the
migrations ledger that only a superuser can take, so concurrent runs are safe and a second run
changes nothing. A database installed before 0.1.0 is refused (HC_MIGRATION_BASELINE): see
CHANGELOG.md. A lock that another session holds for longer than
HARDCRON_MIGRATE_LOCK_TIMEOUT_MS (default ${MIGRATE_LOCK_TIMEOUT_MS.default}) stops it with HC_MIGRATION_LOCK_TIMEOUT,
naming the sessions that hold locks; nothing is applied.

Target: DATABASE_URL (a superuser URL of the database to install into) when set; otherwise the
embedded PostgreSQL kept under HARDCRON_DATA_DIR (default .hardcron/), database d0.

AUTHENTICATOR_PASSWORD and EXECUTOR_PASSWORD, when set, become the login passwords of the
database's $authenticator (GraphQL server) and $executor roles (they are never printed).`,

  async run(args, env) {
    const { positionals } = parseArgs({ args: [...args], options: {}, allowPositionals: true, strict: true });
    if (positionals.length > 0) throw new ConfigError('HC_USAGE', `migrate takes no arguments (got ${positionals.join(' ')})`);
    const config = migrateConfig(env);
    const target = await openAdminTarget(config.target);
    try {
      const result = await migrate({
        connectionString: target.adminUrl,
        onApplied: (name) => process.stdout.write(`applied ${name}\n`),
        lockTimeoutMs: config.lockTimeoutMs,
      });
      await setPasswords(target.adminUrl, config.passwords);
      const where = target.kind === 'embedded' ? 'embedded PostgreSQL' : redactUrl(target.adminUrl);
      process.stdout.write(
        result.applied.length === 0 && result.routines.length === 0
          ? `${where}: up to date (${result.alreadyApplied} migrations applied earlier)\n`
          : `${where}: applied ${result.applied.length} migration(s) and ${result.routines.length} routine file(s)\n`,
      );
    } finally {
      await target.stop();
    }
  },
};

/** AUTHENTICATOR_PASSWORD / EXECUTOR_PASSWORD, when set, become the runtime roles' passwords. */
async function setPasswords(adminUrl: string, passwords: MigrateConfig['passwords']): Promise<void> {
  if (!passwords.authenticator && !passwords.executor) return;
  await withAdminTransaction(adminUrl, null, (client) => setRuntimePasswords(client, passwords));
  for (const [nickname, password] of Object.entries(passwords)) if (password) process.stdout.write(`set the password of $${nickname}\n`);
}
