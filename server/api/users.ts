import type pg from 'pg';
import { AuthError, type Identity } from './auth.ts';

/** How long an answer about a role is reused; a revoked user is refused by SET ROLE anyway. */
const KNOWN_TTL_MS = 10_000;
const UNKNOWN_TTL_MS = 1_000;
const MAX_ENTRIES = 10_000;

/**
 * Whether the server's login role ($authenticator) may become a token's role. The database
 * decides (only roles granted to $authenticator can be assumed); asking first turns "no such
 * user" into a 401 instead of a failed transaction, and a short cache keeps it off the hot path.
 */
export class UserDirectory {
  private readonly answers = new Map<string, { known: boolean; until: number }>();

  constructor(private readonly pool: pg.Pool) {}

  async requireAssumable(identity: Identity): Promise<void> {
    if (identity.nickname === null) return; // $anonymous is granted at installation
    if (!(await this.isAssumable(identity.role))) {
      throw new AuthError('HC_AUTH_UNKNOWN_USER', `the token's user ${JSON.stringify(identity.nickname)} does not exist here`);
    }
  }

  private async isAssumable(role: string): Promise<boolean> {
    const now = Date.now();
    const cached = this.answers.get(role);
    if (cached && cached.until > now) return cached.known;
    const { rows } = await this.pool.query<{ assumable: boolean }>(
      `select pg_catalog.pg_has_role(current_user, r.oid, 'MEMBER') as assumable
         from pg_catalog.pg_roles r where r.rolname = $1`,
      [role],
    );
    const known = rows[0]?.assumable === true;
    if (this.answers.size >= MAX_ENTRIES) this.answers.clear();
    this.answers.set(role, { known, until: now + (known ? KNOWN_TTL_MS : UNKNOWN_TTL_MS) });
    return known;
  }
}
