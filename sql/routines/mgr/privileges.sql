-- Privilege helpers of the provisioning procedures, and the share locks the eligibility check
-- takes on what a verdict rests on (a function's definition, an owner's role facts), so that
-- nothing it approved changes before the transaction that relies on it ends.

-- Revoke everything on an object from PUBLIC (security invoker: the caller's own rights).
create or replace procedure mgr.revoke_all_from_public(object_kind in text, object in text)
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

-- Grant a privilege to a local role given by nickname (security invoker).
create or replace procedure mgr.grant_priv(priv in text, object_kind in text, object in text, grantee_nickname in text)
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

-- Holds a share lock on a function's catalog row until the end of the transaction, so that
-- ALTER FUNCTION, CREATE OR REPLACE and DROP FUNCTION wait for it: the eligibility check and the
-- call it allows see the same definition (no check-then-call race). Row locks on pg_proc need a
-- superuser, hence here; it takes an oid and does nothing else. Returns whether the row exists.
create or replace function mgr.lock_function_definition(function_oid oid)
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

-- Holds share locks, until the end of the transaction, on what a role's eligibility rests on:
-- its pg_authid row and those of every role it belongs to, directly or not, their memberships
-- (pg_auth_members rows whose member is one of them), and `also` (another role's row). ALTER
-- ROLE, RENAME, DROP ROLE and REVOKE on any of them wait for the transaction. Row locks on
-- these catalogs need a superuser, hence in mgr; it takes oids and does nothing else.
create or replace function mgr.lock_role_facts(role_oid oid, also oid)
  returns void
  security definer
  set search_path = pg_catalog, pg_temp
  language plpgsql
as $body$
declare
  roles oid[];
begin
  with recursive belongs(oid) as (
    select role_oid
    union
    select m.roleid from pg_catalog.pg_auth_members m join belongs b on m.member = b.oid
  )
  select array_agg(b.oid) into roles from belongs b;
  perform from pg_catalog.pg_authid a where a.oid = any(roles) or a.oid = also for share;
  perform from pg_catalog.pg_auth_members m where m.member = any(roles) for share;
end;
$body$;

do $grants$
declare
  db constant text := current_database();
begin
  execute format('revoke all on procedure mgr.revoke_all_from_public(text,text) from public');
  execute format('grant execute on procedure mgr.revoke_all_from_public(text,text) to %I', db || '$mgr');
  execute format('revoke all on procedure mgr.grant_priv(text,text,text,text) from public');
  execute format('grant execute on procedure mgr.grant_priv(text,text,text,text) to %I', db || '$mgr');
  execute format('revoke all on function mgr.lock_function_definition(oid) from public');
  execute format('grant execute on function mgr.lock_function_definition(oid) to %I', db || '$code');
  execute format('revoke all on function mgr.lock_role_facts(oid,oid) from public');
  execute format('grant execute on function mgr.lock_role_facts(oid,oid) to %I', db || '$code');
end;
$grants$;
