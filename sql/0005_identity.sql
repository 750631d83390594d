-- Who is calling? The one definition of the caller, used by every check and every view.
--
-- Inside the security definer chain (api shim -> code) current_user is the definer. The caller
-- is the role of a SET ROLE in force (the GraphQL server and the executor always set one; it
-- survives into security definer frames), else the session user. Both can only name roles this
-- session may be. Settings anyone can set (jwt.claims.*, request.jwt.claims) are never read.

select set_config('role', current_database() || '$code', true);

create function code.caller()
  returns text
  language sql
  stable
  security invoker
  set search_path = pg_catalog, pg_temp
as $$
  select case when current_setting('role') = 'none' then session_user::text else current_setting('role') end
$$;

-- May the caller see a job or run with these roles? Roles are stored by name and may have been
-- dropped since: to_regrole() turns an unknown name into null (pg_has_role(text) would raise,
-- naming the role, and break the views for everyone). USAGE, not MEMBER: MEMBER is also true
-- for NOINHERIT members such as $executor and $authenticator.
create function code.caller_has_role(role_name text)
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

-- Functions used in views are checked as the querying role, which has no USAGE on schema code:
-- it can run these from the views and the shims, never name them.
do $grants$
declare
  db constant text := current_database();
begin
  execute format('grant execute on function code.caller(), code.caller_has_role(text) to %I, %I, %I, %I, %I',
                 db || '$api', db || '$client', db || '$executor', db || '$authenticator', db || '$anonymous');
end;
$grants$;

reset role;
