-- Positive verdicts remembered for the rest of the transaction that reached them
-- (data.verdicts), valid while no catalog row they rest on has been written since.

-- Catalog rows this transaction has written so far (inserted, updated, deleted) in the catalogs
-- a verdict rests on. It only grows, rolled-back subtransactions included.
create or replace function code.catalog_writes()
  returns bigint
  language plpgsql
  volatile
  set search_path = pg_catalog, pg_temp
as $$
begin
  -- One expression, no query: this runs at every check.
  return pg_stat_get_xact_tuples_inserted('pg_proc'::regclass) + pg_stat_get_xact_tuples_updated('pg_proc'::regclass)
       + pg_stat_get_xact_tuples_deleted('pg_proc'::regclass)
       + pg_stat_get_xact_tuples_inserted('pg_namespace'::regclass) + pg_stat_get_xact_tuples_updated('pg_namespace'::regclass)
       + pg_stat_get_xact_tuples_deleted('pg_namespace'::regclass)
       + pg_stat_get_xact_tuples_inserted('pg_authid'::regclass) + pg_stat_get_xact_tuples_updated('pg_authid'::regclass)
       + pg_stat_get_xact_tuples_deleted('pg_authid'::regclass)
       + pg_stat_get_xact_tuples_inserted('pg_auth_members'::regclass) + pg_stat_get_xact_tuples_updated('pg_auth_members'::regclass)
       + pg_stat_get_xact_tuples_deleted('pg_auth_members'::regclass);
end;
$$;

create or replace function code.verdict_key(job_owner text, function_signature text, arguments jsonb)
  returns text
  language plpgsql
  immutable
  set search_path = pg_catalog, pg_temp
as $$
begin
  return md5(job_owner || chr(10) || function_signature || chr(10) || arguments::text);
end;
$$;

-- Remembers a positive verdict for the rest of this transaction, if the function's search_path
-- is the one whose safety rests on nothing but the (locked) function row.
create or replace function code.remember_verdict(job_owner text, function_signature text, arguments jsonb,
                                      function_oid oid, function_owner text, config text[], writes bigint)
  returns void
  language plpgsql
  volatile
  set search_path = pg_catalog, pg_temp
as $$
begin
  if exists (select from unnest(config) c where c in ('search_path=pg_catalog, pg_temp', 'search_path=pg_catalog')) then
    insert into data.verdicts (xact, key, job_owner, function_signature, arguments, function_oid, function_owner, catalog_writes)
    values (pg_current_xact_id(), code.verdict_key(job_owner, function_signature, arguments), job_owner,
            function_signature, arguments, function_oid, function_owner, writes)
    on conflict (xact, key) do nothing;
  end if;
end;
$$;
