import { existsSync } from 'node:fs';
import { join } from 'node:path';
import { parseArgs } from 'node:util';
import { signToken } from '../api/tokens.ts';
import { tokenConfig, type TokenConfig } from '../config.ts';
import { loadLocalSecrets, SECRETS_FILE } from '../db/provision.ts';
import { ConfigError } from '../errors.ts';
import type { Command } from './command.ts';

const NICKNAME = /^[a-z_][a-z0-9_]*$/;

export const tokenCommand: Command = {
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

  async run(args, env) {
    const { values, positionals } = parseArgs({ args: [...args], options: { ttl: { type: 'string' } }, allowPositionals: true, strict: true });
    const config = tokenConfig(env, values);
    const [nickname, ...extra] = positionals;
    if (!nickname || extra.length > 0) throw new ConfigError('HC_CONFIG_INVALID', 'give exactly one nickname: hardcron token <nickname>');
    if (!NICKNAME.test(nickname)) throw new ConfigError('HC_CONFIG_INVALID', `${JSON.stringify(nickname)} is not a nickname (lower-case letters, digits, _)`);
    const secret = await serverSecret(config);
    const token = await signToken(secret, nickname, config.ttlSeconds, { audience: config.audience, issuer: config.issuer });
    process.stdout.write(`${token}\n`);
  },
};

/**
 * The secret of the server the token is for: JWT_SECRET when set (it wins in `hardcron start`
 * too), else the one `hardcron start` keeps in the data directory. Never made here: a secret no
 * server knows would only give tokens that every server refuses.
 */
async function serverSecret(config: TokenConfig): Promise<string> {
  if (config.jwtSecret !== undefined) return config.jwtSecret;
  if (existsSync(join(config.dataDir, SECRETS_FILE))) return (await loadLocalSecrets(config.dataDir, undefined)).jwtSecret;
  throw new ConfigError(
    'HC_CONFIG_MISSING',
    `JWT_SECRET is not set and there is no ${join(config.dataDir, SECRETS_FILE)} (kept by hardcron start): the token is signed with the server's secret`,
  );
}
