-- Local role names (`<database>$<nickname>`) and their creation: the one place that turns a
-- nickname into a role name.
--
-- Everything in schema mgr is owned by the installing superuser (see migrations/0002_schemas.sql),
-- pins search_path, and builds statements with format(%I, %L) from validated nicknames only.

-- The one place that turns a nickname into a local role name, refusing anything that is not a
-- plain lower-case identifier, is too long, or (unless allowed) names one of hardcron's own roles.
create or replace function mgr.local_role_name(nickname text, allow_reserved boolean default false)
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

-- Seed procedure: drop (with everything it owns here) and create a local role, e.g. an owner
-- role such as $billing. A null password creates a NOLOGIN role.
create or replace procedure mgr.re_create_role(nickname in text, passwd in text, cr_on_db in boolean)
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

do $grants$
declare
  db constant text := current_database();
begin
  execute format('revoke all on function mgr.local_role_name(text,boolean) from public');
  execute format('revoke all on procedure mgr.re_create_role(text,text,boolean) from public');
  execute format('grant execute on procedure mgr.re_create_role(text,text,boolean) to %I', db || '$mgr');
end;
$grants$;
