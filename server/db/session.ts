import type pg from 'pg';

/**
 * The search_path of every session a hardcron process opens. PostgreSQL's default,
 * `"$user", public`, names schemas that any role with CREATE on the database can create, and an
 * operator or function planted there with a closer argument match wins over pg_catalog's
 * (CVE-2018-1058): it would run inside hardcron's session, as the executor, the authenticator or
 * the installing superuser. pg_catalog first and pg_temp last, where PostgreSQL never looks up
 * functions or operators; no user-creatable schema at all.
 */
export const PINNED_SEARCH_PATH = 'pg_catalog, pg_temp';

/**
 * Connection settings for a hardcron session: the pinned search_path goes into the startup
 * packet, so it holds before the first statement (and before any `options` the URL carries,
 * which it overrides). `settings` adds other session settings the same way.
 */
export function sessionConfig(
  connectionString: string,
  applicationName: string,
  settings: Readonly<Record<string, string | number>> = {},
): pg.ClientConfig {
  const url = new URL(connectionString);
  const fromUrl = url.searchParams.get('options') ?? '';
  url.searchParams.delete('options');
  const ours = Object.entries({ ...settings, search_path: PINNED_SEARCH_PATH }).map(
    ([name, value]) => `-c ${name}=${String(value).replaceAll('\\', '\\\\').replaceAll(' ', '\\ ')}`,
  );
  return {
    connectionString: url.toString(),
    application_name: applicationName,
    options: [fromUrl, ...ours].filter((part) => part !== '').join(' '),
  };
}
