-- The hard shell's schemas, each created by the role that owns it:
--
--   data      tables                                  owned by $data
--   code      security definer logic                  owned by $code
--   api       shims and security_barrier views        owned by $api; all $client may use
--   executor  the executor process's own API          owned by $api; $executor only
--   server    the GraphQL server's own API            owned by $api; $authenticator only
--   mgr       role provisioning                       owned by the installing superuser
--   frames    one SECURITY DEFINER frame per user     owned by the installing superuser
--
-- Each layer may use only the layer below it. Functions and types are usable by PUBLIC by
-- default in PostgreSQL; the owners turn that default off for everything they will ever create.
--
-- mgr and frames are owned by the installing superuser, not by $mgr: a schema owner may drop
-- any object in its schema and create look-alikes, and mgr.re_create_role runs as its
-- superuser owner. $mgr gets USAGE and EXECUTE only. A frame's owner may alter its frame (it
-- owns it) but not replace it (no CREATE on schema frames); see sql/routines/mgr/frames.sql.

select set_config('role', current_database() || '$data', true);
create schema data;
alter default privileges revoke execute on functions from public;
alter default privileges revoke usage on types from public;

select set_config('role', current_database() || '$code', true);
create schema code;
alter default privileges revoke execute on functions from public;
alter default privileges revoke usage on types from public;

select set_config('role', current_database() || '$api', true);
create schema api;
create schema executor;
create schema server;
alter default privileges revoke execute on functions from public;
alter default privileges revoke usage on types from public;

reset role;
create schema mgr;
create schema frames;
revoke all on schema frames from public;

do $grants$
declare
  db constant text := current_database();
begin
  execute format('set local role %I', db || '$data');
  execute format('grant usage on schema data to %I, %I', db || '$code', db || '$api');
  execute format('set local role %I', db || '$code');
  execute format('grant usage on schema code to %I', db || '$api');
  execute format('set local role %I', db || '$api');
  -- The runtime roles see the views too (and, in their own sessions, no rows).
  execute format('grant usage on schema api to %I, %I, %I, %I', db || '$client', db || '$executor', db || '$authenticator', db || '$anonymous');
  execute format('grant usage on schema executor to %I', db || '$executor');
  execute format('grant usage on schema server to %I', db || '$authenticator');
  reset role;
  -- The eligibility check (owned by $code) locks the definitions it approves through mgr.
  execute format('grant usage on schema mgr to %I, %I', db || '$mgr', db || '$code');
  -- Job owners reach their frame (after SET ROLE to them) through $job_scheduler; $code looks
  -- frames up to check them.
  execute format('grant usage on schema frames to %I, %I', db || '$job_scheduler', db || '$code');
end;
$grants$;
