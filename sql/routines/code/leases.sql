-- Executor leases: an executor renews its lease (data.executors) from a connection of its own;
-- the `running` runs of an executor whose lease expired (it died) become `lost`, and are retried
-- when their policy allows.

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

-- Runs of executors that stopped renewing their lease become `lost`. A lost attempt is retried
-- (an executor's death is not the job's failure) up to three times beyond the job's own retries.
create or replace function code.expire_leases()
  returns integer
  language plpgsql
  security definer
  set search_path = pg_catalog, pg_temp
as $$
declare
  run record;
  n integer := 0;
begin
  delete from data.executors e where e.lease_expires_at < now();
  for run in
    update data.job_runs r set status = 'lost', finished_at = now()
     where r.status = 'running'
       and not exists (select from data.executors e where e.id = r.executor_id)
    returning r.id, r.job_id, r.scheduled_for, r.attempt
  loop
    n := n + 1;
    perform code.notify_run(run.id, run.job_id, 'lost');
    if run.attempt <= coalesce((select (j.options->>'retries')::integer from data.jobs j where j.id = run.job_id), 0) + 3 then
      perform code.queue_retry(run.job_id, run.scheduled_for, run.attempt + 1);
    end if;
  end loop;
  return n;
end;
$$;

-- A stopping executor leaves; its runs, if any are still running, are lost at once.
create or replace function code.release_executor(executor_id text)
  returns void
  language sql
  security definer
  set search_path = pg_catalog, pg_temp
as $$
  delete from data.executors e where e.id = executor_id;
  select code.expire_leases();
$$;

do $grants$
declare
  db constant text := current_database();
begin
  execute format('grant execute on function code.renew_executor_lease(text,interval) to %I', db || '$api');
  execute format('grant execute on function code.expire_leases() to %I', db || '$api');
  execute format('grant execute on function code.release_executor(text) to %I', db || '$api');
end;
$grants$;
