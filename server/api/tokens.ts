import { SignJWT } from 'jose';
import { ConfigError } from '../errors.ts';
import { MIN_SECRET_BYTES } from './auth.ts';

const DURATION = /^([1-9][0-9]{0,5})(s|m|h|d)$/;
const SECONDS: Readonly<Record<string, number>> = { s: 1, m: 60, h: 3600, d: 86400 };
const MAX_TTL_SECONDS = 30 * 86400;

/**
 * Seconds in a duration such as `90s`, `15m`, `12h` or `7d` (at most 30 days), or undefined when
 * `value` is none. One syntax for `--ttl` and JWT_MAX_TTL, so a maximum can be pasted as a --ttl.
 */
export function durationSeconds(value: string): number | undefined {
  const match = DURATION.exec(value);
  const seconds = match ? Number(match[1]) * (SECONDS[match[2] as string] as number) : NaN;
  return seconds > 0 && seconds <= MAX_TTL_SECONDS ? seconds : undefined;
}

/** An HS256 token for a user's nickname: the claims the server's verifier expects. */
export async function signToken(secret: string, nickname: string, ttlSeconds: number, claims: { audience?: string | undefined; issuer?: string | undefined } = {}): Promise<string> {
  if (Buffer.byteLength(secret, 'utf8') < MIN_SECRET_BYTES) {
    throw new ConfigError('HC_CONFIG_INVALID', `JWT_SECRET must be at least ${MIN_SECRET_BYTES} bytes long`);
  }
  // One clock reading for both, so that exp - iat is exactly the lifetime the server checks.
  const now = Math.floor(Date.now() / 1000);
  let jwt = new SignJWT({ role: nickname })
    .setProtectedHeader({ alg: 'HS256', typ: 'JWT' })
    .setIssuedAt(now)
    .setExpirationTime(now + ttlSeconds);
  if (claims.audience) jwt = jwt.setAudience(claims.audience);
  if (claims.issuer) jwt = jwt.setIssuer(claims.issuer);
  return jwt.sign(new TextEncoder().encode(secret));
}
