-- The hard shell: data (tables) -> code (security definer logic) -> api (shims, views).
--
-- Each schema is created by the role that owns it. Each layer may use only the layer below it,
-- and $client may use only api. Functions are executable by PUBLIC by default in PostgreSQL;
-- the owners turn that default off for everything they will ever create.

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
alter default privileges revoke execute on functions from public;
alter default privileges revoke usage on types from public;

reset role;

do $grants$
declare
  db constant text := current_database();
begin
  execute format('set local role %I', db || '$data');
  execute format('grant usage on schema data to %I', db || '$code');
  execute format('set local role %I', db || '$code');
  execute format('grant usage on schema code to %I', db || '$api');
  execute format('set local role %I', db || '$api');
  execute format('grant usage on schema api to %I', db || '$client');
end;
$grants$;

reset role;
