import { parseArgs } from 'node:util';
import { parseTtl, signToken } from '../api/tokens.ts';
import { ConfigError } from '../errors.ts';
import type { Command } from './command.ts';

const NICKNAME = /^[a-z_][a-z0-9_]*$/;

export const tokenCommand: Command = {
  summary: 'print a JWT for a user, signed with JWT_SECRET (for GraphiQL and scripts)',
  help: `Usage: hardcron token <nickname> [--ttl 1h]

Prints an HS256 token whose "role" claim is <nickname>; the GraphQL server runs requests with it
as the database role <db>$<nickname>. Whether that user exists is the database's business: the
server refuses tokens of unknown users.

Environment:
  JWT_SECRET    the server's secret (at least 32 bytes; required)
  JWT_AUDIENCE  sets "aud" when the server requires one
  JWT_ISSUER    sets "iss" when the server requires one`,

  async run(args) {
    const { values, positionals } = parseArgs({ args: [...args], options: { ttl: { type: 'string' } }, allowPositionals: true, strict: true });
    const [nickname, ...extra] = positionals;
    if (!nickname || extra.length > 0) throw new ConfigError('HC_CONFIG_INVALID', 'give exactly one nickname: hardcron token <nickname>');
    if (!NICKNAME.test(nickname)) throw new ConfigError('HC_CONFIG_INVALID', `${JSON.stringify(nickname)} is not a nickname (lower-case letters, digits, _)`);
    const secret = process.env.JWT_SECRET;
    if (!secret) throw new ConfigError('HC_CONFIG_MISSING', 'JWT_SECRET is not set: the token is signed with the server\'s secret');
    const token = await signToken(secret, nickname, parseTtl(values.ttl ?? '1h'), {
      audience: process.env.JWT_AUDIENCE || undefined,
      issuer: process.env.JWT_ISSUER || undefined,
    });
    process.stdout.write(`${token}\n`);
  },
};
