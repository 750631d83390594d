-- Who is calling? The one definition of the caller, used by every check and every view.
--
-- Inside the security definer chain (api shim -> code) current_user is the definer. The caller
-- is the role of a SET ROLE in force (the GraphQL server and the executor always set one; it
-- survives into security definer frames), else the session user. Both can only name roles this
-- session may be. Settings anyone can set (jwt.claims.*, request.jwt.claims) are never read.
--
-- Functions used in views are checked as the querying role, which has no USAGE on schema code:
-- it can run these from the views and the shims, never name them.

create or replace function code.caller()
  returns text
  language sql
  stable
  parallel safe
  security invoker
-- A body parsed when the function is created (no search_path is ever consulted), and no SET
-- clause: PostgreSQL may inline it into the query that calls it (code.caller_may_see).
return case when pg_catalog.current_setting('role') = 'none' then session_user::text else pg_catalog.current_setting('role') end;

-- May the caller see a job or run with these roles? Roles are stored by name and may have been
-- dropped since: to_regrole() turns an unknown name into null (pg_has_role(text) would raise,
-- naming the role, and break the views for everyone). USAGE, not MEMBER: MEMBER is also true
-- for NOINHERIT members such as $executor and $authenticator.
create or replace function code.caller_has_role(role_name text)
  returns boolean
  language sql
  stable
  security definer  -- so that it may name code.caller(); the caller is not current_user anyway
  set search_path = pg_catalog, pg_temp
as $$
  select coalesce(pg_has_role(caller.oid, target.oid, 'USAGE'), false)
    from (select to_regrole(quote_ident(code.caller())) as oid) caller,
         (select to_regrole(quote_ident(role_name)) as oid) target
$$;

-- May the caller see a job or run of this owner and function owner? The rule of the row
-- security policies of data.jobs and data.job_runs (data/row_security.sql): it has USAGE on the
-- owner or on the function's owner (a role that no longer exists is no one's). Inlined into the
-- policy (a body parsed at creation, no SET clause, only built-in functions and code.caller()):
-- checking a row calls none of hardcron's functions, so that a row found and then hidden takes
-- the path of a row never found (test/sql/threats-timing.test.ts), and costs a few
-- microseconds. code.caller_roles lists the same roles for the functions that need them all.
create or replace function code.caller_may_see(owner text, function_owner text)
  returns boolean
  language sql
  stable
  parallel safe
  security invoker
return coalesce(pg_catalog.pg_has_role(pg_catalog.to_regrole(pg_catalog.quote_ident(code.caller())),
                                       pg_catalog.to_regrole(pg_catalog.quote_ident(owner)), 'USAGE'), false)
    or coalesce(pg_catalog.pg_has_role(pg_catalog.to_regrole(pg_catalog.quote_ident(code.caller())),
                                       pg_catalog.to_regrole(pg_catalog.quote_ident(function_owner)), 'USAGE'), false);

-- The roles whose privileges the caller has: those for which pg_has_role(caller, role, 'USAGE')
-- is true, as code.caller_has_role tells it for one role (the caller itself included; a role
-- that no longer exists is in no list). A superuser has every role. For anyone else the
-- candidates are the roles the caller belongs to through any chain of grants (whatever their
-- INHERIT) and pg_database_owner (implied for the database's owner); pg_has_role keeps those
-- PostgreSQL says the caller has. So the cost follows the caller's memberships, not the number
-- of roles on the server (~20 µs, against ~12 µs for one caller_has_role).
create or replace function code.caller_roles()
  returns text[]
  language plpgsql
  stable
  security definer  -- so that it may name code.caller(); the caller is not current_user anyway
  set search_path = pg_catalog, pg_temp
as $$
declare
  me constant oid := to_regrole(quote_ident(code.caller()));
begin
  if (select r.rolsuper from pg_roles r where r.oid = me) then
    return array(select r.rolname::text from pg_roles r);
  end if;
  return array(
    with recursive reach(oid) as (
      values (me), ('pg_database_owner'::regrole::oid)
      union
      select m.roleid from pg_auth_members m join reach r on m.member = r.oid
    )
    select pg_get_userbyid(r.oid)::text from reach r where pg_has_role(me, r.oid, 'USAGE'));
end;
$$;

do $grants$
declare
  db constant text := current_database();
begin
  execute format('grant execute on function code.caller() to %I', db || '$anonymous');
  execute format('grant execute on function code.caller() to %I', db || '$api');
  execute format('grant execute on function code.caller() to %I', db || '$authenticator');
  execute format('grant execute on function code.caller() to %I', db || '$client');
  execute format('grant execute on function code.caller() to %I', db || '$executor');
  execute format('grant execute on function code.caller_may_see(text,text) to %I', db || '$anonymous');
  execute format('grant execute on function code.caller_may_see(text,text) to %I', db || '$api');
  execute format('grant execute on function code.caller_may_see(text,text) to %I', db || '$authenticator');
  execute format('grant execute on function code.caller_may_see(text,text) to %I', db || '$client');
  execute format('grant execute on function code.caller_may_see(text,text) to %I', db || '$executor');
  execute format('grant execute on function code.caller_has_role(text) to %I', db || '$anonymous');
  execute format('grant execute on function code.caller_has_role(text) to %I', db || '$api');
  execute format('grant execute on function code.caller_has_role(text) to %I', db || '$authenticator');
  execute format('grant execute on function code.caller_has_role(text) to %I', db || '$client');
  execute format('grant execute on function code.caller_has_role(text) to %I', db || '$executor');
  execute format('grant execute on function code.caller_roles() to %I', db || '$anonymous');
  execute format('grant execute on function code.caller_roles() to %I', db || '$api');
  execute format('grant execute on function code.caller_roles() to %I', db || '$authenticator');
  execute format('grant execute on function code.caller_roles() to %I', db || '$client');
  execute format('grant execute on function code.caller_roles() to %I', db || '$executor');
end;
$grants$;
