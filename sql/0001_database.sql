-- The database itself and hardcron's local roles (seed 004, "hard shell").
--
-- Every role is named current_database() || '$' || nickname, so the database name never
-- appears in code and two databases on one cluster never share a role.
--
-- Runs as the installing superuser: roles are cluster objects that no local role may create.
-- Roles are created with plain CREATE ROLE, so a role that already exists under one of these
-- names (say, pre-created by someone hoping to be adopted) aborts the install.

drop schema if exists public;  -- no CASCADE: a public schema that holds objects stops the install

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

  -- The layer owners create their schemas; client members and the runtime processes connect.
  execute format('grant create on database %I to %I, %I, %I',
                 db, db || '$data', db || '$code', db || '$api');
  execute format('grant connect on database %I to %I, %I, %I',
                 db, db || '$client', db || '$executor', db || '$authenticator');

  -- Unauthenticated GraphQL requests run as $anonymous.
  execute format('grant %I to %I', db || '$anonymous', db || '$authenticator');
end;
$install$;
