import { parseArgs } from 'node:util';
import { withAdminTransaction } from '../db/admin.ts';
import { userConfig } from '../config.ts';
import { openAdminTarget } from '../db/targets.ts';
import { ConfigError } from '../errors.ts';
import type { Command } from './command.ts';

export const userCommand: Command = {
  help: `Usage: hardcron user add <nickname> [--scheduler] [--member-of <owner>]... [--password-env VAR]
       hardcron user remove <nickname>

add     creates the role <db>$<nickname>: a member of $client, of $job_scheduler with
        --scheduler, and of each owner role given with --member-of (whose functions the user
        may then schedule). The GraphQL server may act as the user (see hardcron token). The
        user can log in with psql only when given a password, read from the environment
        variable named by --password-env (never from the command line).
remove  drops the user's role and what it owns.

Target: DATABASE_URL (a superuser URL) when set; otherwise the embedded PostgreSQL kept under
HARDCRON_DATA_DIR (default .hardcron/).`,

  async run(args, env) {
    const { values, positionals } = parseArgs({
      args: [...args],
      options: {
        scheduler: { type: 'boolean', default: false },
        'member-of': { type: 'string', multiple: true, default: [] },
        'password-env': { type: 'string' },
      },
      allowPositionals: true,
      strict: true,
    });
    const [action, nickname, ...extra] = positionals;
    if ((action !== 'add' && action !== 'remove') || !nickname || extra.length > 0) {
      throw new ConfigError('HC_USAGE', 'usage: hardcron user add <nickname> [options] | hardcron user remove <nickname>');
    }
    if (action === 'remove' && (values.scheduler || values['member-of'].length > 0 || values['password-env'])) {
      throw new ConfigError('HC_USAGE', 'hardcron user remove takes only a nickname');
    }
    const config = userConfig(env, values);
    const target = await openAdminTarget(config.target);
    try {
      await withAdminTransaction(target.adminUrl, 'mgr', async (client) => {
        if (action === 'add') {
          await client.query('call mgr.add_user($1, $2, $3, $4)', [nickname, config.password, values.scheduler, values['member-of']]);
        } else {
          await client.query('call mgr.remove_user($1)', [nickname]);
        }
      });
    } finally {
      await target.stop();
    }
    process.stdout.write(action === 'add' ? `added user ${nickname}\n` : `removed user ${nickname}\n`);
  },
};
