-- Run events as clients see them.

-- The events of the runs the caller may see: those whose run api.job_runs shows, by the same
-- rule in the same form (see api/jobs.sql): the caller's roles are computed once per statement, before
-- any row is read ("One-Time Filter"), and an event is shown when its run's owner or function
-- owner is among them, a comparison with no call in it. It is not written as a lookup in
-- api.job_runs because that view computes the roles when it is first entered, that is when the
-- first event is met: a statement about another owner's job would then call code.caller_roles
-- and one about a missing job would not, which tells them apart (docs/security.md).
-- The run is looked up per event, by primary key, in a LATERAL subquery with LIMIT 1, which
-- PostgreSQL cannot turn into a hash join over every run (it did, for a range of 5,000 ids):
-- reading n events costs n lookups, however many runs exist.
create or replace view api.job_run_events with (security_barrier) as
  with seen as materialized (select code.caller_roles() as roles)
  select e.id, e.run_id, e.job_id, e.status::api.job_run_status as status, e.at
    from data.job_run_events e
    cross join lateral (
      select from data.job_runs r
       where r.id = e.run_id and array[r.owner, r.function_owner] && (select s.roles from seen s)
       limit 1) visible
   where cardinality((select s.roles from seen s)) > 0;

comment on view api.job_run_events is
$$@primaryKey id
@foreignKey (run_id) references api.job_runs (id)|@fieldName run|@backwardBehavior -*
@behavior -insert -update -delete -query:resource:list -query:resource:connection -query:resource:single
A state change of a run you may see: running when it starts, then its outcome. Kept for an hour.$$;

comment on column api.job_run_events.id is 'The event''s id: a subscription resumes after the last id it received.';

comment on column api.job_run_events.run_id is E'@notNull\nThe run that changed state.';

comment on column api.job_run_events.job_id is E'@notNull\nThe run''s job.';

comment on column api.job_run_events.status is E'@notNull\nThe status the run took: running when it starts, then how it ended (a run recorded as skipped or missed has that one event).';

comment on column api.job_run_events.at is E'@notNull\nWhen the run took it.';

do $grants$
declare
  db constant text := current_database();
begin
  execute format('grant select on api.job_run_events to %I', db || '$anonymous');
  execute format('grant select on api.job_run_events to %I', db || '$authenticator');
  execute format('grant select on api.job_run_events to %I', db || '$client');
  execute format('grant select on api.job_run_events to %I', db || '$executor');
end;
$grants$;
