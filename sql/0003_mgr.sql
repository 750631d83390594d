-- Schema mgr: role provisioning behind security definer procedures (seed 004).
--
-- Deliberate difference from the seed: schema mgr and everything in it are owned by the
-- installing superuser, not by $mgr. re_create_role runs as its (superuser) owner; if $mgr
-- owned the schema it could DROP the helpers in it (a schema owner may drop any object in
-- its schema), create look-alikes, and have them run as superuser. $mgr gets USAGE and
-- EXECUTE only.
--
-- Every procedure here pins search_path and builds statements with format(%I, %L) from
-- validated nicknames only.

create schema mgr;

-- Seed helper: revoke everything on an object from PUBLIC (security invoker: the caller's own rights).
create procedure mgr.revoke_all_from_public(object_kind in text, object in text)
  security invoker
  set search_path = pg_catalog, pg_temp
  language plpgsql
as $body$
declare
  kind constant text not null := case when lower(object_kind) = 'view' then 'table' else object_kind end;
begin
  execute format('revoke all on %s %s from public', kind, object);
end;
$body$;
call mgr.revoke_all_from_public('procedure', 'mgr.revoke_all_from_public');

-- Seed helper: grant a privilege to a local role given by nickname (security invoker).
create procedure mgr.grant_priv(priv in text, object_kind in text, object in text, grantee_nickname in text)
  security invoker
  set search_path = pg_catalog, pg_temp
  language plpgsql
as $body$
declare
  kind   constant text not null := case when lower(object_kind) = 'view' then 'table' else object_kind end;
  r_name constant text not null := case when grantee_nickname = 'public' then 'public'
                                        else current_database() || '$' || grantee_nickname end;
begin
  execute format('grant %s on %s %s to %I', priv, kind, object, r_name);
end;
$body$;
call mgr.revoke_all_from_public('procedure', 'mgr.grant_priv');

-- The one place that turns a nickname into a local role name, refusing anything that is not a
-- plain lower-case identifier, is too long, or (unless allowed) names one of hardcron's own roles.
create function mgr.local_role_name(nickname text, allow_reserved boolean default false)
  returns text
  security invoker
  stable
  set search_path = pg_catalog, pg_temp
  language plpgsql
as $body$
declare
  reserved constant text[] := array['mgr', 'data', 'code', 'api', 'client', 'job_scheduler',
                                    'executor', 'authenticator', 'anonymous'];
  max_len  constant int := 63 - octet_length(current_database()) - 1;
begin
  if nickname is null or nickname !~ '^[a-z_][a-z0-9_]*$' then
    raise exception using
      errcode = 'HC101',
      message = format('invalid nickname %s: use lower-case letters, digits and "_", starting with a letter or "_"',
                       coalesce(quote_literal(left(nickname, 100)), 'NULL'));
  end if;
  if octet_length(nickname) > max_len then
    raise exception using
      errcode = 'HC101',
      message = format('invalid nickname %L: at most %s characters in this database', nickname, max_len);
  end if;
  if not allow_reserved and nickname = any (reserved) then
    raise exception using
      errcode = 'HC102',
      message = format('nickname %L is reserved for hardcron''s own roles', nickname),
      hint    = 'Reserved nicknames: ' || array_to_string(reserved, ', ') || '.';
  end if;
  return current_database() || '$' || nickname;
end;
$body$;
call mgr.revoke_all_from_public('function', 'mgr.local_role_name(text, boolean)');

-- Seed procedure: drop (with everything it owns here) and create a local role, e.g. an owner
-- role such as $billing. A null password creates a NOLOGIN role.
create procedure mgr.re_create_role(nickname in text, passwd in text, cr_on_db in boolean)
  security definer
  set search_path = pg_catalog, pg_temp
  language plpgsql
as $body$
declare
  r_name constant text not null := mgr.local_role_name(nickname);
begin
  begin
    execute format('drop owned by %I', r_name);
  exception when undefined_object then null;
  end;
  execute format('drop role if exists %I', r_name);
  if passwd is null then
    execute format('create role %I nologin', r_name);
  else
    execute format('create role %I login password %L', r_name, passwd);
  end if;
  execute format('grant connect on database %I to %I', current_database(), r_name);
  if cr_on_db then
    execute format('grant create on database %I to %I', current_database(), r_name);
  end if;
  execute format('grant usage on schema mgr to %I', r_name);
  execute format('grant execute on procedure mgr.revoke_all_from_public(text, text) to %I', r_name);
  execute format('grant execute on procedure mgr.grant_priv(text, text, text, text) to %I', r_name);
end;
$body$;
call mgr.revoke_all_from_public('procedure', 'mgr.re_create_role');

-- Provision an end user $<nickname>: member of $client, optionally of $job_scheduler and of
-- existing owner roles (by nickname). The GraphQL server may assume it; the executor may
-- assume it when it schedules jobs. A null password creates a user that cannot log in directly.
create procedure mgr.add_user(
  nickname  in text,
  passwd    in text    default null,
  scheduler in boolean default false,
  member_of in text[]  default '{}')
  security definer
  set search_path = pg_catalog, pg_temp
  language plpgsql
as $body$
declare
  db     constant text := current_database();
  r_name constant text not null := mgr.local_role_name(nickname);
  owner_nickname text;
  owner_role     text;
begin
  if to_regrole(quote_ident(r_name)) is not null then
    raise exception using errcode = 'HC103', message = format('user %L already exists', nickname);
  end if;
  if member_of is null or cardinality(member_of) > 100 then
    raise exception using errcode = 'HC101', message = 'member_of must be a list of at most 100 nicknames';
  end if;

  if passwd is null then
    execute format('create role %I nologin inherit', r_name);
  else
    execute format('create role %I login inherit password %L', r_name, passwd);
  end if;
  execute format('grant %I to %I', db || '$client', r_name);
  if scheduler then
    execute format('grant %I to %I', db || '$job_scheduler', r_name);
  end if;

  foreach owner_nickname in array member_of loop
    owner_role := mgr.local_role_name(owner_nickname);
    if to_regrole(quote_ident(owner_role)) is null then
      raise exception using errcode = 'HC104', message = format('role %L does not exist', owner_nickname);
    end if;
    execute format('grant %I to %I', owner_role, r_name);
  end loop;

  execute format('grant %I to %I', r_name, db || '$authenticator');
  if scheduler then
    execute format('grant %I to %I', r_name, db || '$executor');
  end if;
end;
$body$;
call mgr.revoke_all_from_public('procedure', 'mgr.add_user');

-- Remove an end user created by add_user, with everything it owns in this database.
create procedure mgr.remove_user(nickname in text)
  security definer
  set search_path = pg_catalog, pg_temp
  language plpgsql
as $body$
declare
  r_name constant text not null := mgr.local_role_name(nickname);
begin
  if not exists (
    select from pg_auth_members m
    where m.member = to_regrole(quote_ident(r_name))
      and m.roleid = to_regrole(quote_ident(current_database() || '$client'))
  ) then
    raise exception using errcode = 'HC104', message = format('user %L does not exist', nickname);
  end if;
  execute format('drop owned by %I', r_name);
  execute format('drop role %I', r_name);
end;
$body$;
call mgr.revoke_all_from_public('procedure', 'mgr.remove_user');

-- Holds a share lock on a function's catalog row until the end of the transaction, so that
-- ALTER FUNCTION, CREATE OR REPLACE and DROP FUNCTION wait for it: the eligibility check and the
-- call it allows see the same definition (no check-then-call race). Row locks on pg_proc need a
-- superuser, hence here; it takes an oid and does nothing else. Returns whether the row exists.
create function mgr.lock_function_definition(function_oid oid)
  returns boolean
  security definer
  set search_path = pg_catalog, pg_temp
  language plpgsql
as $body$
begin
  perform from pg_catalog.pg_proc where oid = function_oid for share;
  return found;
end;
$body$;
call mgr.revoke_all_from_public('function', 'mgr.lock_function_definition(oid)');

do $grants$
declare
  mgr_role constant text := current_database() || '$mgr';
begin
  execute format('grant usage on schema mgr to %I', mgr_role);
  execute format('grant execute on procedure mgr.revoke_all_from_public(text, text), mgr.grant_priv(text, text, text, text), '
                 'mgr.re_create_role(text, text, boolean), mgr.add_user(text, text, boolean, text[]), '
                 'mgr.remove_user(text) to %I', mgr_role);
  -- The eligibility check (owned by $code) locks the definition it approves.
  execute format('grant usage on schema mgr to %I', current_database() || '$code');
  execute format('grant execute on function mgr.lock_function_definition(oid) to %I', current_database() || '$code');
end;
$grants$;
