import { existsSync } from 'node:fs';
import { join, resolve } from 'node:path';
import { parseArgs } from 'node:util';
import { DEFAULT_MAX_TTL_SECONDS, formatDuration } from '../api/auth.ts';
import { parseTtl, signToken } from '../api/tokens.ts';
import { jwtMaxTtlSeconds } from '../config.ts';
import { loadLocalSecrets, SECRETS_FILE } from '../db/provision.ts';
import { DEFAULT_DATA_DIR } from '../db/targets.ts';
import { ConfigError } from '../errors.ts';
import type { Command } from './command.ts';

const NICKNAME = /^[a-z_][a-z0-9_]*$/;
const DEFAULT_TTL_SECONDS = 3600;

export const tokenCommand: Command = {
  summary: 'print a JWT for a user, signed with JWT_SECRET or hardcron start\'s secret (for GraphiQL and scripts)',
  help: `Usage: hardcron token <nickname> [--ttl 1h]

Prints an HS256 token whose "role" claim is <nickname>; the GraphQL server runs requests with it
as the database role <db>$<nickname>. Whether that user exists is the database's business: the
server refuses tokens of unknown users. The token carries "iat" and "exp", --ttl apart (default
1h or JWT_MAX_TTL if shorter; a longer --ttl than JWT_MAX_TTL is refused).

Environment:
  JWT_SECRET    the server's secret (at least 32 bytes); when unset, the secret hardcron start
                keeps in HARDCRON_DATA_DIR/secrets.json, if there is one
  HARDCRON_DATA_DIR  hardcron start's local state (default .hardcron/)
  JWT_AUDIENCE  sets "aud" when the server requires one
  JWT_ISSUER    sets "iss" when the server requires one
  JWT_MAX_TTL   the server's longest token lifetime (default 24h)`,

  async run(args) {
    const { values, positionals } = parseArgs({ args: [...args], options: { ttl: { type: 'string' } }, allowPositionals: true, strict: true });
    const [nickname, ...extra] = positionals;
    if (!nickname || extra.length > 0) throw new ConfigError('HC_CONFIG_INVALID', 'give exactly one nickname: hardcron token <nickname>');
    if (!NICKNAME.test(nickname)) throw new ConfigError('HC_CONFIG_INVALID', `${JSON.stringify(nickname)} is not a nickname (lower-case letters, digits, _)`);
    const secret = await serverSecret(process.env);
    const maxTtl = jwtMaxTtlSeconds(process.env) ?? DEFAULT_MAX_TTL_SECONDS;
    const ttl = values.ttl === undefined ? Math.min(DEFAULT_TTL_SECONDS, maxTtl) : parseTtl(values.ttl);
    // Refused here rather than by the server later, once the token is in use.
    if (ttl > maxTtl) {
      throw new ConfigError('HC_CONFIG_INVALID', `--ttl ${values.ttl} is longer than the ${formatDuration(maxTtl)} the server accepts (JWT_MAX_TTL): give a shorter --ttl, or raise JWT_MAX_TTL for the server and here`);
    }
    const token = await signToken(secret, nickname, ttl, {
      audience: process.env.JWT_AUDIENCE || undefined,
      issuer: process.env.JWT_ISSUER || undefined,
    });
    process.stdout.write(`${token}\n`);
  },
};

/**
 * The secret of the server the token is for: JWT_SECRET when set (it wins in `hardcron start`
 * too), else the one `hardcron start` keeps in the data directory. Never made here: a secret no
 * server knows would only give tokens that every server refuses.
 */
async function serverSecret(env: NodeJS.ProcessEnv): Promise<string> {
  if (env.JWT_SECRET) return env.JWT_SECRET;
  const dataDir = resolve(env.HARDCRON_DATA_DIR || DEFAULT_DATA_DIR);
  if (existsSync(join(dataDir, SECRETS_FILE))) return (await loadLocalSecrets(dataDir, undefined)).jwtSecret;
  throw new ConfigError(
    'HC_CONFIG_MISSING',
    `JWT_SECRET is not set and there is no ${join(dataDir, SECRETS_FILE)} (kept by hardcron start): the token is signed with the server's secret`,
  );
}
