-- Frames: a job's code never runs where it could change roles.
--
-- The executor becomes a job's owner with SET LOCAL ROLE, so $executor is a member of every
-- scheduler, and PostgreSQL checks SET ROLE against the session user's memberships. Code of the
-- job that ran outside its SECURITY DEFINER function (a cast or a domain CHECK of an argument,
-- a parameter default, a deferred trigger fired by SET CONSTRAINTS, the query of a WITH HOLD
-- cursor materialised at COMMIT) could RESET ROLE (back to $executor) and then SET ROLE to any
-- other scheduler: one user could act as every other.
--
-- So every statement of a run that can reach user code runs inside a frame: a SECURITY DEFINER
-- function owned by the job's owner, `frames."<owner role>"(call_sql, arguments)`, entered after
-- SET LOCAL ROLE <owner>. Inside a SECURITY DEFINER function PostgreSQL refuses any change of
-- role or session authorization, whatever is called from it; the code still runs as the owner,
-- and current_setting('role') still names the owner (the caller identity, code.caller()). The
-- frame executes the call and fires the deferred triggers; the run's clean-up closes every
-- cursor (CLOSE ALL) before anything can materialise one. mgr.add_user creates a frame for every
-- scheduler; its owner may alter it (it owns it) but not replace it (no CREATE on schema
-- frames), so the executor checks it (code.frame_problem), under a lock, before every call.

-- The body of every frame; code.frame_problem compares against it.
create or replace function mgr.frame_body()
  returns text
  language sql
  immutable
  set search_path = pg_catalog, pg_temp
as $body$
  select $frame$
declare
  returned bigint;
begin
  execute call_sql into returned using arguments;
  -- Deferred triggers fire now, inside this frame, as the owner; not at COMMIT as the executor.
  set constraints all immediate;
  return returned;
end;
$frame$::text
$body$;

-- (Re)creates the frame of a scheduler role, owned by it and executable by it alone. Also the
-- way to mend a frame its owner altered.
create or replace procedure mgr.create_frame(user_role in text)
  security definer
  set search_path = pg_catalog, pg_temp
  language plpgsql
as $body$
begin
  if to_regrole(quote_ident(user_role)) is null then
    raise exception using errcode = 'HC104', message = format('role %L does not exist', user_role);
  end if;
  -- Dropped first: CREATE OR REPLACE would keep grants its owner may have made.
  execute format('drop function if exists frames.%I(text, text[])', user_role);
  execute format('create function frames.%I(call_sql text, arguments text[]) returns bigint
                    language plpgsql security definer set search_path = pg_catalog, pg_temp as %L',
                 user_role, mgr.frame_body());
  execute format('alter function frames.%I(text, text[]) owner to %I', user_role, user_role);
  execute format('revoke all on function frames.%I(text, text[]) from public', user_role);
end;
$body$;

do $grants$
declare
  db constant text := current_database();
begin
  execute format('revoke all on function mgr.frame_body() from public');
  execute format('grant execute on function mgr.frame_body() to %I', db || '$code');
  execute format('revoke all on procedure mgr.create_frame(text) from public');
end;
$grants$;
