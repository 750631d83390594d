import type pg from 'pg';
import { AuthError, type Identity } from './auth.ts';

/** How long an answer about a role is reused; a revoked user is refused by SET ROLE anyway. */
const KNOWN_TTL_MS = 10_000;
const UNKNOWN_TTL_MS = 1_000;
const MAX_ENTRIES = 10_000;

/**
 * Whether a token's role is a user the server may act as. The database keeps the facts (who is
 * granted to $authenticator, who is a member of $client); asking first turns "no such user"
 * into a 401 instead of a failed transaction, and a short cache keeps it off the hot path.
 */
export class UserDirectory {
  private readonly answers = new Map<string, { known: boolean; until: number }>();

  /** `database`: role names are `<database>$<nickname>`. */
  constructor(
    private readonly pool: pg.Pool,
    private readonly database: string,
  ) {}

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
    // A user is a role granted directly to $authenticator (mgr.add_user does that) and directly
    // a member of $client. Not "any role $authenticator can reach": through alice it reaches
    // alice's owner roles too, and SET ROLE would let it become them.
    const { rows } = await this.pool.query<{ assumable: boolean }>(
      `select exists (select from pg_catalog.pg_auth_members m
                       where m.roleid = r.oid and m.member = (select oid from pg_catalog.pg_roles where rolname = current_user))
          and exists (select from pg_catalog.pg_auth_members m
                       where m.member = r.oid
                         and m.roleid = (select oid from pg_catalog.pg_roles where rolname = $2::name)) as assumable
         from pg_catalog.pg_roles r where r.rolname = $1::name`,
      [role, `${this.database}$client`],
    );
    const known = rows[0]?.assumable === true;
    if (this.answers.size >= MAX_ENTRIES) this.answers.clear();
    this.answers.set(role, { known, until: now + (known ? KNOWN_TTL_MS : UNKNOWN_TTL_MS) });
    return known;
  }
}
