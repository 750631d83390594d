import { SignJWT } from 'jose';
import { ConfigError } from '../errors.ts';
import { MIN_SECRET_BYTES } from './auth.ts';

const DURATION = /^([1-9][0-9]{0,5})(s|m|h|d)$/;
const SECONDS: Readonly<Record<string, number>> = { s: 1, m: 60, h: 3600, d: 86400 };
const MAX_TTL_SECONDS = 30 * 86400;

/** Seconds in a duration such as `90s`, `15m`, `12h` or `7d` (at most 30 days). */
export function parseTtl(value: string): number {
  const match = DURATION.exec(value);
  const seconds = match ? Number(match[1]) * (SECONDS[match[2] as string] as number) : NaN;
  if (!(seconds > 0 && seconds <= MAX_TTL_SECONDS)) {
    throw new ConfigError('HC_CONFIG_INVALID', `--ttl must be a duration such as 90s, 15m, 12h or 7d (at most 30d), not ${JSON.stringify(value)}`);
  }
  return seconds;
}

/** An HS256 token for a user's nickname: the claims the server's verifier expects. */
export async function signToken(secret: string, nickname: string, ttlSeconds: number, claims: { audience?: string | undefined; issuer?: string | undefined } = {}): Promise<string> {
  if (Buffer.byteLength(secret, 'utf8') < MIN_SECRET_BYTES) {
    throw new ConfigError('HC_CONFIG_INVALID', `JWT_SECRET must be at least ${MIN_SECRET_BYTES} bytes long`);
  }
  let jwt = new SignJWT({ role: nickname })
    .setProtectedHeader({ alg: 'HS256', typ: 'JWT' })
    .setIssuedAt()
    .setExpirationTime(`${ttlSeconds}s`);
  if (claims.audience) jwt = jwt.setAudience(claims.audience);
  if (claims.issuer) jwt = jwt.setIssuer(claims.issuer);
  return jwt.sign(new TextEncoder().encode(secret));
}
