-- What a client may schedule now (api.schedulable_functions): the functions api.schedule_job
-- would accept from the caller, by the eligibility rules themselves (code.schedulable_functions
-- in code/eligibility.sql), with what a client needs to call them.
--
-- A security_barrier view over a security definer function of $code, as the other views read
-- code.caller_roles(): the function decides who is calling (code.caller()) and looks at the
-- functions of the caller's roles only, so another owner's functions cost it nothing and tell
-- nothing. Nothing is locked: a function listed here may change before it is scheduled, and
-- scheduling checks it again.

create or replace view api.schedulable_functions with (security_barrier) as
  select s.function_signature, s.function_owner, s.argument_names, s.argument_types, s.argument_defaults
    from code.schedulable_functions() s;

comment on view api.schedulable_functions is
$$@primaryKey function_signature
@behavior -insert -update -delete
A function you may schedule now: a security definer function with a safe pinned search_path, owned by a role you have (not a superuser), as api.schedule_job would accept it from you. Empty unless you may schedule jobs at all.$$;

comment on column api.schedulable_functions.function_signature is
  'The function as api.schedule_job takes it (function_signature): schema-qualified name and argument types, e.g. billing.close_day(date).';

comment on column api.schedulable_functions.function_owner is
  'The role that owns the function: you have it, and the job runs the function with its rights.';

comment on column api.schedulable_functions.argument_names is
  'The names of the parameters, in order (null for an unnamed one).';

comment on column api.schedulable_functions.argument_types is
  'The types of the parameters, in order: the arguments of a job are a JSON array with one element per parameter.';

comment on column api.schedulable_functions.argument_defaults is
  'How many of the last parameters have defaults: a job may leave them out.';

do $grants$
declare
  db constant text := current_database();
begin
  -- Clients only: neither the executor nor the server itself has a use for it.
  execute format('grant select on api.schedulable_functions to %I', db || '$anonymous');
  execute format('grant select on api.schedulable_functions to %I', db || '$client');
end;
$grants$;
