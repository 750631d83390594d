-- Executor leases, and the sweep that finds runs nobody is running: an executor renews its lease
-- (data.executors) from a connection of its own and sweeps at each renewal.

-- An executor announces itself and renews its lease; `lease` is how long it may stay silent.
create or replace function code.renew_executor_lease(executor_id text, lease interval)
  returns void
  language plpgsql
  security definer
  set search_path = pg_catalog, pg_temp
as $$
begin
  if executor_id is null or executor_id !~ '^[A-Za-z0-9_.:-]{1,100}$' then
    perform code.fail('HC301', 'executor_id must be 1 to 100 letters, digits or _ . : -');
  end if;
  if lease is null or lease < interval '1 second' or lease > interval '1 hour' then
    perform code.fail('HC301', 'the executor lease must be from 1 second to 1 hour');
  end if;
  insert into data.executors as e (id, lease_expires_at) values (executor_id, now() + lease)
  on conflict (id) do update set lease_expires_at = excluded.lease_expires_at;
end;
$$;

-- Runs that nobody is running become `lost`: those of executors whose lease expired, and those
-- claimed longer than `grace` ago whose row no transaction holds (a run's transaction locks its
-- row from its first statement to its commit: code.start_run). So a run is never left `running`
-- because its executor died, lost its connection, never read the claim's answer, or came back
-- under the same id: it is lost within the grace, whatever the lease says. SKIP LOCKED: a run
-- being run, even by an executor cut off from the network, is passed over, never waited for;
-- its own statement_timeout ends it. A lost attempt is retried (an executor's death is not the
-- job's failure) up to three times beyond the job's own retries. `own`: an executor that has
-- just started holds no run, so those recorded under its id are lost at once, not after the grace.
-- A run asked to stop (api.cancel_run) ends `cancelled` instead, and is not retried.
-- `only_run` and `only_token`: the one run (this claim of it) an executor's connection broke
-- under, looked at at once.
create or replace function code.sweep_runs(grace interval, own text default null, only_run bigint default null,
                                           only_token uuid default null)
  returns integer
  language plpgsql
  security definer
  set search_path = pg_catalog, pg_temp
  -- The partitions from code.running_floor() on, whatever their number: settled ones hold no
  -- running run, and retention may be truncating them.
  set plan_cache_mode = force_custom_plan
as $$
declare
  run record;
  n integer := 0;
  floor constant bigint := code.running_floor();
begin
  if grace is null or grace < interval '0' or grace > interval '1 hour' then
    perform code.fail('HC301', 'the grace must be from 0 to 1 hour');
  end if;
  delete from data.executors e where e.lease_expires_at < now();
  -- Requests to cancel runs that have ended.
  delete from data.cancel_requests c
   where c.run_id < floor
      or not exists (select from data.job_runs r where r.id = c.run_id and r.status = 'running' and r.id >= floor);
  for run in
    select r.id, r.job_id, r.scheduled_for, r.attempt,
           exists (select from data.cancel_requests c where c.run_id = r.id) as cancelled
      from data.job_runs r
     where r.status = 'running' and r.id >= floor
       and (only_run is null or (r.id = only_run and r.claim_token = only_token))
       and (r.claimed_at < now() - grace
            or r.executor_id = own
            or not exists (select from data.executors e where e.id = r.executor_id))
     for update of r skip locked
  loop
    update data.job_runs r set status = case when run.cancelled then 'cancelled' else 'lost' end, finished_at = clock_timestamp()
     where r.id = run.id;
    n := n + 1;
    perform code.notify_run(run.id, run.job_id, case when run.cancelled then 'cancelled' else 'lost' end);
    if not run.cancelled and run.attempt <= coalesce((select (j.options->>'retries')::integer from data.jobs j where j.id = run.job_id), 0) + 3 then
      perform code.queue_retry(run.job_id, run.scheduled_for, run.attempt + 1, lost => true);
    end if;
  end loop;
  return n;
end;
$$;

-- A stopping executor leaves; its runs that are not being run are lost at once.
create or replace function code.release_executor(executor_id text)
  returns void
  language sql
  security definer
  set search_path = pg_catalog, pg_temp
as $$
  delete from data.executors e where e.id = executor_id;
  select code.sweep_runs(interval '1 hour', executor_id);
$$;

do $grants$
declare
  db constant text := current_database();
begin
  execute format('grant execute on function code.renew_executor_lease(text,interval) to %I', db || '$api');
  execute format('grant execute on function code.sweep_runs(interval,text,bigint,uuid) to %I', db || '$api');
  execute format('grant execute on function code.release_executor(text) to %I', db || '$api');
end;
$grants$;
