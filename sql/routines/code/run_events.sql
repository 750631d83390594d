-- Run events: every state change of a run is a row of data.job_run_events, read through
-- api.job_run_events, and a notification with a constant, empty payload that says "something
-- happened", nothing more (any session may LISTEN on any channel). The GraphQL server reads the
-- log with one question per wake-up (server/run_events.sql) and only then lets subscribers read
-- through api as themselves. The executor prunes events older than an hour in bounded chunks.

-- The event is logged in the caller's transaction, so it exists exactly when the state change
-- does. Without a notification: the run and claim transactions of the executor log their events
-- with this, and the executor announces them after they committed (one notification for many
-- commits, sent from its control connection). A transaction that notifies holds a lock for the
-- whole server from just before its commit until the commit is flushed, so runs that each
-- notified would commit one at a time, never sharing a disk flush.
create or replace function code.log_run_event(run_id bigint, job_id bigint, status text)
  returns void
  language sql
  set search_path = pg_catalog, pg_temp
as $$
  insert into data.job_run_events (run_id, job_id, status, at)
  values (log_run_event.run_id, log_run_event.job_id, log_run_event.status, clock_timestamp());
$$;

-- Logs the event and notifies at once: for the rare state changes made outside the executor's
-- run and claim transactions (a sweep declaring runs lost, say).
create or replace function code.notify_run(run_id bigint, job_id bigint, status text)
  returns void
  language plpgsql
  set search_path = pg_catalog, pg_temp
as $$
begin
  perform code.log_run_event(run_id, job_id, status);
  -- A constant payload: nothing about any job or run, and one notification per transaction
  -- (PostgreSQL drops a repeat of a channel and payload already pending in the transaction).
  perform pg_notify('hardcron_run_events', '');
end;
$$;

-- Where the log stands: its newest event id (for an empty log, the last id ever taken), where a
-- reader starts, and its oldest (newest + 1 when empty), so that a reader catching up from an
-- old id skips what was pruned.
create or replace function code.run_events_bounds(out oldest bigint, out newest bigint)
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
create or replace function code.run_events_since(after bigint, missing bigint[], max_rows integer)
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
create or replace function code.prune_run_events(max_rows integer)
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
declare
  db constant text := current_database();
begin
  execute format('grant execute on function code.run_events_bounds() to %I', db || '$api');
  execute format('grant execute on function code.run_events_since(bigint,bigint[],integer) to %I', db || '$api');
  execute format('grant execute on function code.prune_run_events(integer) to %I', db || '$api');
end;
$grants$;
