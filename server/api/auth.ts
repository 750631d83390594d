import { createRemoteJWKSet, decodeProtectedHeader, errors, jwtVerify, type JWTPayload, type JWTVerifyGetKey } from 'jose';
import { ConfigError, HardcronError } from '../errors.ts';

/** How the server checks bearer tokens. At least one of `secret` and `jwksUrl` is required. */
export interface AuthOptions {
  /** Shared secret for HS256 tokens; at least 32 bytes (UTF-8). */
  readonly secret?: string | undefined;
  /** A JSON Web Key Set for RS256 and ES256 tokens (fetched and cached by jose). */
  readonly jwksUrl?: string | undefined;
  /** When set, a token's `aud` must include it. */
  readonly audience?: string | undefined;
  /** When set, a token's `iss` must equal it. */
  readonly issuer?: string | undefined;
  /** Clock skew tolerated for `exp` and `nbf`, in seconds (default 30, at most 30). */
  readonly clockToleranceSeconds?: number | undefined;
  /**
   * The longest lifetime of a token accepted, in seconds (default 24 h; JWT_MAX_TTL): `exp - iat`,
   * and never more than that from now.
   */
  readonly maxTtlSeconds?: number | undefined;
}

/** Who a request runs as. */
export interface Identity {
  /** The PostgreSQL role the request runs as: `<db>$<nickname>`, or `<db>$anonymous`. */
  readonly role: string;
  /** The token's nickname; null for a request without a token. */
  readonly nickname: string | null;
  /** The verified claims (for `request.jwt.claims`; never used for authorization). */
  readonly claims: JWTPayload | null;
  /** When the token stops being valid (ms since the epoch); null without a token. */
  readonly expiresAt: number | null;
}

/**
 * A request the server refuses before anything reaches PostgreSQL: HTTP 401 with a GraphQL
 * error body carrying `code`.
 */
export class AuthError extends HardcronError {
  readonly status = 401;
}

export const MIN_SECRET_BYTES = 32;
export const MAX_CLOCK_TOLERANCE_SECONDS = 30;
export const DEFAULT_MAX_TTL_SECONDS = 24 * 3600;

/** hardcron's own roles: a token can never name them (mirrors mgr.local_role_name). */
const RESERVED_NICKNAMES = new Set(['mgr', 'data', 'code', 'api', 'client', 'job_scheduler', 'executor', 'authenticator', 'anonymous']);
const NICKNAME = /^[a-z_][a-z0-9_]*$/;
const HMAC_ALGORITHMS = ['HS256'];
const PUBLIC_KEY_ALGORITHMS = ['RS256', 'ES256'];

export type VerifyAuthorization = (authorization: string | undefined) => Promise<Identity>;

/**
 * Builds the check of an `Authorization` header for database `database`. Refuses options that
 * would make tokens weak (a short secret, no way to verify, too much clock skew).
 */
export function createTokenVerifier(options: AuthOptions, database: string): VerifyAuthorization {
  const tolerance = options.clockToleranceSeconds ?? MAX_CLOCK_TOLERANCE_SECONDS;
  if (!Number.isInteger(tolerance) || tolerance < 0 || tolerance > MAX_CLOCK_TOLERANCE_SECONDS) {
    throw new ConfigError('HC_CONFIG_INVALID', `the JWT clock tolerance must be 0 to ${MAX_CLOCK_TOLERANCE_SECONDS} seconds`);
  }
  const maxTtl = options.maxTtlSeconds ?? DEFAULT_MAX_TTL_SECONDS;
  if (!Number.isInteger(maxTtl) || maxTtl <= 0) {
    throw new ConfigError('HC_CONFIG_INVALID', 'the longest token lifetime (JWT_MAX_TTL) must be a positive whole number of seconds');
  }
  if (options.secret === undefined && options.jwksUrl === undefined) {
    throw new ConfigError('HC_CONFIG_MISSING', 'JWT_SECRET or JWKS_URL is not set: the server needs a way to verify tokens');
  }
  if (options.secret !== undefined && Buffer.byteLength(options.secret, 'utf8') < MIN_SECRET_BYTES) {
    throw new ConfigError('HC_CONFIG_INVALID', `JWT_SECRET must be at least ${MIN_SECRET_BYTES} bytes long`);
  }
  const hmacKey = options.secret === undefined ? null : new TextEncoder().encode(options.secret);
  const jwks = options.jwksUrl === undefined ? null : createRemoteJWKSet(parseJwksUrl(options.jwksUrl));
  // PostgreSQL role names have at most 63 bytes.
  const maxNicknameLength = 63 - Buffer.byteLength(database, 'utf8') - 1;
  const anonymous: Identity = { role: `${database}$anonymous`, nickname: null, claims: null, expiresAt: null };

  return async (authorization) => {
    if (authorization === undefined || authorization === '') return anonymous;
    const token = bearerToken(authorization);
    const claims = await verifyToken(token, hmacKey, jwks, options, tolerance);
    checkLifetime(claims, maxTtl, tolerance);
    const nickname = nicknameOf(claims.role, maxNicknameLength);
    return { role: `${database}$${nickname}`, nickname, claims, expiresAt: (claims.exp as number) * 1000 };
  };
}

function parseJwksUrl(value: string): URL {
  try {
    const url = new URL(value);
    if (url.protocol === 'https:' || url.protocol === 'http:') return url;
  } catch {
    // refused below
  }
  throw new ConfigError('HC_CONFIG_INVALID', 'JWKS_URL must be an http(s) URL');
}

function bearerToken(authorization: string): string {
  const match = /^Bearer ([A-Za-z0-9_-]+\.[A-Za-z0-9_-]*\.[A-Za-z0-9_-]*)$/.exec(authorization.trim());
  if (!match?.[1]) throw new AuthError('HC_AUTH_INVALID', 'the Authorization header must be "Bearer <JWT>"');
  return match[1];
}

/**
 * Verifies signature, `exp` (required), `nbf`, `aud` and `iss`. The key is chosen by the
 * token's algorithm among the configured ones, so an RS256 token is never checked with the HMAC
 * secret (key confusion) and `alg: none` matches no key.
 */
async function verifyToken(
  token: string,
  hmacKey: Uint8Array | null,
  jwks: JWTVerifyGetKey | null,
  options: AuthOptions,
  tolerance: number,
): Promise<JWTPayload> {
  let algorithm: unknown;
  try {
    algorithm = decodeProtectedHeader(token).alg;
  } catch {
    throw new AuthError('HC_AUTH_INVALID', 'the token is not a valid JWT');
  }
  const verifyOptions = {
    clockTolerance: tolerance,
    requiredClaims: ['exp'],
    ...(options.audience !== undefined && { audience: options.audience }),
    ...(options.issuer !== undefined && { issuer: options.issuer }),
  };
  try {
    if (hmacKey && typeof algorithm === 'string' && HMAC_ALGORITHMS.includes(algorithm)) {
      return (await jwtVerify(token, hmacKey, { ...verifyOptions, algorithms: HMAC_ALGORITHMS })).payload;
    }
    if (jwks && typeof algorithm === 'string' && PUBLIC_KEY_ALGORITHMS.includes(algorithm)) {
      return (await jwtVerify(token, jwks, { ...verifyOptions, algorithms: PUBLIC_KEY_ALGORITHMS })).payload;
    }
  } catch (error) {
    throw describeVerifyError(error);
  }
  throw new AuthError('HC_AUTH_INVALID', `tokens signed with ${JSON.stringify(algorithm)} are not accepted here`);
}

function describeVerifyError(error: unknown): AuthError {
  if (error instanceof errors.JWTExpired) return new AuthError('HC_AUTH_EXPIRED', 'the token has expired');
  if (error instanceof errors.JWTClaimValidationFailed) {
    if (error.claim === 'nbf') return new AuthError('HC_AUTH_NOT_YET_VALID', 'the token is not valid yet');
    if (error.claim === 'exp') return new AuthError('HC_AUTH_INVALID', 'the token must have an expiry (exp)');
    return new AuthError('HC_AUTH_CLAIM', `the token's ${error.claim} claim is not accepted here`);
  }
  if (error instanceof errors.JOSEError && error.code === 'ERR_JWKS_NO_MATCHING_KEY') {
    return new AuthError('HC_AUTH_INVALID', 'the token was not signed by a known key');
  }
  if (error instanceof errors.JOSEError) return new AuthError('HC_AUTH_INVALID', 'the token is invalid');
  return new AuthError('HC_AUTH_UNAVAILABLE', 'tokens cannot be verified right now');
}

/**
 * A stolen token is useful until it expires, so none may be valid for longer than `maxTtl`:
 * neither issued for longer (`exp - iat`) nor valid for longer from now (`exp - now`, which is
 * all there is without `iat`, and which also catches an `iat` set in the future). The issuer's
 * clock may run ahead of ours by the tolerated skew, as for `exp` and `nbf`.
 */
function checkLifetime(claims: JWTPayload, maxTtl: number, tolerance: number): void {
  const exp = claims.exp as number; // required and checked to be a number by jwtVerify
  const now = Math.floor(Date.now() / 1000);
  const issuedAt = typeof claims.iat === 'number' ? Math.min(claims.iat, now) : now;
  if (exp - issuedAt > maxTtl + tolerance) {
    throw new AuthError(
      'HC_AUTH_TOKEN_TOO_LONG',
      `the token is valid for longer than the ${formatDuration(maxTtl)} this server accepts: get a shorter one (hardcron token <nickname> --ttl ${formatDuration(maxTtl)}, or a shorter token lifetime at your identity provider)`,
    );
  }
}

/** Seconds as a duration in the syntax of `hardcron token --ttl` (`24h`, `90m`, `7d`). */
export function formatDuration(seconds: number): string {
  if (seconds % 86400 === 0 && seconds > 2 * 86400) return `${seconds / 86400}d`;
  if (seconds % 3600 === 0) return `${seconds / 3600}h`;
  if (seconds % 60 === 0) return `${seconds / 60}m`;
  return `${seconds}s`;
}

/** The `role` claim is a nickname: a plain identifier that names none of hardcron's own roles. */
function nicknameOf(role: unknown, maxLength: number): string {
  if (typeof role !== 'string' || !NICKNAME.test(role) || role.length > maxLength) {
    throw new AuthError('HC_AUTH_ROLE', 'the token\'s role claim must be a user\'s nickname (lower-case letters, digits, _)');
  }
  if (RESERVED_NICKNAMES.has(role)) throw new AuthError('HC_AUTH_ROLE', `the token's role claim cannot name hardcron's role ${JSON.stringify(role)}`);
  return role;
}
