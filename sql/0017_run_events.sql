-- Run events: a log read through api, and notifications that say nothing.
--
-- code.notify_run sent NOTIFY hardcron_run_events with {run_id, job_id, status} for every run
-- state change. Any session may LISTEN on any channel, so every psql user learnt the ids and
-- outcomes of every job, the ones api hides from them included. Now each state change is a row
-- of data.job_run_events, read through api.job_run_events, which shows a caller the events of
-- the runs api.job_runs shows it (the same rule, applied the same way), and the notification
-- carries a constant, empty payload: it says "something happened", nothing more, and PostgreSQL
-- folds the repeats of one transaction into one.
--
-- The GraphQL server reads the log with one question per wake-up (server.run_events_since, for
-- $authenticator alone) and only then lets subscribers read through api as themselves; see
-- DESIGN.md, "Run events". The executor prunes events older than an hour in bounded chunks
-- (executor.prune_run_events).

select set_config('role', current_database() || '$data', true);

-- Append-only. Only the primary key: every reader walks it (past a cursor, or a handful of ids),
-- and pruning walks it from the oldest; each run adds two rows, so no other index is paid for.
-- No foreign key to the run: a log row costs one insert and nothing else.
create table data.job_run_events (
  id     bigint      generated always as identity primary key,
  run_id bigint      not null,
  job_id bigint      not null,
  status text        not null,
  at     timestamptz not null
);

do $grants$
declare
  db constant text := current_database();
begin
  execute format('grant select, insert, delete on data.job_run_events to %I', db || '$code');
  execute format('grant select on data.job_run_events to %I', db || '$api');
  -- The starting point of an empty log is the identity's last value (code.run_events_bounds).
  execute format('grant select on sequence data.job_run_events_id_seq to %I', db || '$code');
end;
$grants$;

select set_config('role', current_database() || '$code', true);

-- Every caller (the claim, start_run, finish_run, expire_leases) stays as it is: the event is
-- logged in the caller's transaction, so it exists exactly when the state change does.
create or replace function code.notify_run(run_id bigint, job_id bigint, status text)
  returns void
  language plpgsql
  set search_path = pg_catalog, pg_temp
as $$
begin
  insert into data.job_run_events (run_id, job_id, status, at)
  values (notify_run.run_id, notify_run.job_id, notify_run.status, clock_timestamp());
  -- A constant payload: nothing about any job or run, and one notification per transaction
  -- (PostgreSQL drops a repeat of a channel and payload already pending in the transaction).
  perform pg_notify('hardcron_run_events', '');
end;
$$;

-- Where the log stands: its newest event id (for an empty log, the last id ever taken), where a
-- reader starts, and its oldest (newest + 1 when empty), so that a reader catching up from an
-- old id skips what was pruned.
create function code.run_events_bounds(out oldest bigint, out newest bigint)
  language plpgsql
  stable
  security definer
  set search_path = pg_catalog, pg_temp
as $$
begin
  newest := coalesce((select e.id from data.job_run_events e order by e.id desc limit 1),
                     pg_sequence_last_value('data.job_run_events_id_seq'::regclass), 0);
  oldest := coalesce((select e.id from data.job_run_events e order by e.id limit 1), newest + 1);
end;
$$;

-- The ids of events committed since a reader last looked: those past `after` (at most
-- `max_rows`, oldest first), and those of `missing` (ids at or below `after` that were not
-- committed when it last looked) that are committed now. Ids only: no job, run, status or time.
create function code.run_events_since(after bigint, missing bigint[], max_rows integer)
  returns table (id bigint)
  language plpgsql
  stable
  security definer
  set search_path = pg_catalog, pg_temp
as $$
begin
  if after is null or after < 0 then
    perform code.fail('HC301', 'after must be an event id (0 or more)');
  end if;
  if max_rows is null or max_rows < 1 or max_rows > 10000 then
    perform code.fail('HC301', 'max_rows must be from 1 to 10000');
  end if;
  if cardinality(missing) > 10000 then
    perform code.fail('HC301', 'at most 10000 missing ids');
  end if;
  return query
    (select e.id from data.job_run_events e where e.id > after order by e.id limit max_rows)
    union all
    (select e.id from data.job_run_events e where e.id = any(missing) and e.id <= after);
end;
$$;

-- Deletes up to max_rows of the oldest events, those logged more than an hour ago. It reads
-- the oldest max_rows ids and nothing beyond them (no index on `at`: ids and times grow
-- together, and an event a little out of order waits for the next round).
create function code.prune_run_events(max_rows integer)
  returns integer
  language plpgsql
  security definer
  set search_path = pg_catalog, pg_temp
as $$
declare
  cutoff constant timestamptz := now() - interval '1 hour';
  n integer;
begin
  if max_rows is null or max_rows < 1 or max_rows > 100000 then
    perform code.fail('HC301', 'max_rows must be from 1 to 100000');
  end if;
  if not exists (select from (select e.at from data.job_run_events e order by e.id limit 1) oldest where oldest.at < cutoff) then
    return 0;  -- the common case: nothing is old enough
  end if;
  delete from data.job_run_events e
   where e.id in (select o.id from (select e2.id, e2.at from data.job_run_events e2 order by e2.id limit max_rows) o
                   where o.at < cutoff);
  get diagnostics n = row_count;
  return n;
end;
$$;

do $grants$
begin
  execute format('grant execute on function code.run_events_bounds(), code.run_events_since(bigint, bigint[], integer),
      code.prune_run_events(integer) to %I', current_database() || '$api');
end;
$grants$;

reset role;

select set_config('role', current_database() || '$api', true);

-- The events of the runs the caller may see: those whose run api.job_runs shows, by the same
-- rule in the same form (sql/0016): the caller's roles are computed once per statement, before
-- any row is read ("One-Time Filter"), and an event is shown when its run's owner or function
-- owner is among them, a comparison with no call in it. It is not written as a lookup in
-- api.job_runs because that view computes the roles when it is first entered, that is when the
-- first event is met: a statement about another owner's job would then call code.caller_roles
-- and one about a missing job would not, which tells them apart (README, "Security model", 10).
-- The run is looked up per event, by primary key, in a LATERAL subquery with LIMIT 1, which
-- PostgreSQL cannot turn into a hash join over every run (it did, for a range of 5,000 ids):
-- reading n events costs n lookups, however many runs exist.
create view api.job_run_events with (security_barrier) as
  with seen as materialized (select code.caller_roles() as roles)
  select e.id, e.run_id, e.job_id, e.status, e.at
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
comment on column api.job_run_events.run_id is 'The run that changed state.';
comment on column api.job_run_events.job_id is 'The run''s job.';
comment on column api.job_run_events.status is 'The status the run took: running, succeeded, failed, rejected, timed_out, skipped or lost.';
comment on column api.job_run_events.at is 'When the run took it.';

-- The GraphQL server's own API (the way schema executor is the executor's): only $authenticator
-- may use it, and it returns event ids only.
create schema server;

create function server.run_events_bounds(out oldest bigint, out newest bigint)
  language sql
  security definer
  set search_path = pg_catalog, pg_temp
as $$ select * from code.run_events_bounds() $$;

create function server.run_events_since(after bigint, missing bigint[], max_rows integer)
  returns table (id bigint)
  language plpgsql
  security definer
  set search_path = pg_catalog, pg_temp
as $$
begin
  return query select s.id from code.run_events_since(after, missing, max_rows) s;
end;
$$;

create function executor.prune_run_events(max_rows integer)
  returns integer
  language sql
  security definer
  set search_path = pg_catalog, pg_temp
as $$ select code.prune_run_events(max_rows) $$;

do $grants$
declare
  db constant text := current_database();
begin
  execute format('grant select on api.job_run_events to %I, %I, %I, %I',
                 db || '$client', db || '$executor', db || '$authenticator', db || '$anonymous');
  execute format('grant usage on schema server to %I', db || '$authenticator');
  execute format('grant execute on function server.run_events_bounds(), server.run_events_since(bigint, bigint[], integer) to %I',
                 db || '$authenticator');
  execute format('grant execute on function executor.prune_run_events(integer) to %I', db || '$executor');
end;
$grants$;

reset role;
