-- The database and hardcron's local roles: the hard shell's owners, its groups, and the two
-- processes that log in.
--
-- Every role is named current_database() || '$' || nickname, so the database name never
-- appears in code and two databases on one cluster never share a role.
--
-- Runs as the installing superuser: roles are cluster objects that no local role may create.
-- Roles are created with plain CREATE ROLE, so a role that already exists under one of these
-- names (say, pre-created by someone hoping to be adopted) aborts the install.

-- No CASCADE: a public schema that holds objects stops the install. Without it nothing a user
-- creates can sit on a default search_path.
drop schema if exists public;

do $install$
declare
  db constant text := current_database();
begin
  -- Nobody but hardcron's own roles may connect or create temporary objects.
  execute format('revoke connect, temporary on database %I from public', db);

  -- Owners and groups: never log in.
  execute format('create role %I nologin', db || '$mgr');
  execute format('create role %I nologin', db || '$data');
  execute format('create role %I nologin', db || '$code');
  execute format('create role %I nologin', db || '$api');
  execute format('create role %I nologin', db || '$client');
  execute format('create role %I nologin', db || '$job_scheduler');
  execute format('create role %I nologin', db || '$anonymous');

  -- The two runtime processes. NOINHERIT: being granted every end-user role (so that they can
  -- SET ROLE) must not give them those roles' privileges in their own sessions.
  execute format('create role %I login noinherit', db || '$executor');
  execute format('create role %I login noinherit', db || '$authenticator');

  -- A session that did not pin search_path in its startup packet (a connection pooler that
  -- drops startup options, say) still never looks in a schema a user can create: `public`
  -- (which any role with CREATE on the database can make again) or one named after the role
  -- (the "$user" entry of PostgreSQL's default path).
  execute format('alter role %I set search_path = pg_catalog, pg_temp', db || '$authenticator');
  execute format('alter role %I set search_path = pg_catalog, pg_temp', db || '$executor');

  -- The layer owners create their schemas; client members and the runtime processes connect.
  execute format('grant create on database %I to %I, %I, %I',
                 db, db || '$data', db || '$code', db || '$api');
  execute format('grant connect on database %I to %I, %I, %I',
                 db, db || '$client', db || '$executor', db || '$authenticator');

  -- Unauthenticated GraphQL requests run as $anonymous. The server builds its schema as
  -- $client sees it (SET ROLE $client while introspecting); $authenticator is NOINHERIT, so
  -- the grant gives it no privileges of its own, only the SET ROLE that any end user's session
  -- has anyway. Tokens can never name $client (reserved nickname).
  execute format('grant %I to %I', db || '$anonymous', db || '$authenticator');
  execute format('grant %I to %I', db || '$client', db || '$authenticator');
end;
$install$;
