-- Job functions by name: resolving a schema-qualified name with argument types to one
-- function, never through a search_path, and its canonical signature, which is what jobs store
-- and what every execution resolves again.

-- The canonical signature of a function: schema-qualified name and argument types, quoted as
-- needed. This is what jobs store, and what execution matches against the catalog.
-- (plpgsql rather than sql here and on other hot paths: plpgsql keeps its plans for the session.)
create or replace function code.function_signature(function_oid oid)
  returns text
  language plpgsql
  stable
  set search_path = pg_catalog, pg_temp
as $$
begin
  -- With this search_path, regprocedure output qualifies everything outside pg_catalog.
  return (select case when p.pronamespace = 'pg_catalog'::regnamespace then 'pg_catalog.' else '' end || p.oid::regprocedure::text
            from pg_proc p
           where p.oid = function_oid);
end;
$$;

-- A stored canonical signature -> the function it names now, or null. Resolution reads the
-- catalog by schema and name and compares canonical signatures: no search_path is involved,
-- and no USAGE on the function's schema is needed (which $code does not have). Stored
-- signatures come from code.function_signature, so they always parse.
create or replace function code.resolve_function(signature text)
  returns oid
  language plpgsql
  stable
  set search_path = pg_catalog, pg_temp
as $$
declare
  parts constant text[] := parse_ident(split_part(signature, '(', 1));
begin
  if cardinality(parts) <> 2 then
    return null;
  end if;
  return (select p.oid
            from pg_proc p join pg_namespace n on n.oid = p.pronamespace
           where n.nspname = parts[1] and p.proname = parts[2]
             and code.function_signature(p.oid) = signature);
end;
$$;

-- A user-given function reference -> its canonical signature (code.function_signature).
-- Accepts 'schema.name(argument types)', with type names as PostgreSQL spells them or as
-- aliases (int, timestamptz, …), or 'schema.name' when the name is not overloaded.
create or replace function code.canonical_signature(reference text)
  returns text
  language plpgsql
  stable
  set search_path = pg_catalog, pg_temp
as $$
declare
  parts       text[];
  arg_list    text;
  given_types text[];
  matches     oid[];
begin
  if reference is null or btrim(reference) = '' then
    perform code.fail('HC201', 'function_signature is required, e.g. ''billing.close_day(date)''');
  end if;
  if char_length(reference) > 1000 then
    perform code.fail('HC209', 'function_signature is longer than 1000 characters');
  end if;
  begin
    parts := parse_ident(btrim(split_part(reference, '(', 1)));
  exception when others then
    parts := null;
  end;
  if parts is null or cardinality(parts) <> 2 then
    perform code.fail('HC201', format('function %s not found: give it as schema.name(argument types)', quote_literal(left(reference, 200))),
                      'Functions are never looked up through a search_path; qualify the name with its schema.');
  end if;

  if position('(' in reference) = 0 then
    matches := array(select p.oid from pg_proc p join pg_namespace n on n.oid = p.pronamespace
                      where n.nspname = parts[1] and p.proname = parts[2]);
    if cardinality(matches) > 1 then
      perform code.fail('HC202', format('function name %s is ambiguous: %s functions have it', quote_literal(left(reference, 200)), cardinality(matches)),
                        'Add the argument types, e.g. ' || code.function_signature(matches[1]) || '.');
    end if;
  else
    arg_list := substring(reference from '\((.*)\)\s*$');
    given_types := case when arg_list is null then null
                        when btrim(arg_list) = '' then '{}'
                        else array(select btrim(t) from unnest(regexp_split_to_array(arg_list, ',(?![^(]*\))')) t) end;
    -- The same function: same schema and name, and each given type names its parameter type.
    matches := array(
      select p.oid from pg_proc p join pg_namespace n on n.oid = p.pronamespace
       where n.nspname = parts[1] and p.proname = parts[2]
         and (code.function_signature(p.oid) = btrim(reference)
              or (cardinality(given_types) = p.pronargs
                  and not exists (select from unnest(given_types, p.proargtypes::oid[]) as g(given, actual)
                                   where code.type_oid(g.given) is distinct from g.actual))));
  end if;
  if cardinality(matches) = 0 then
    perform code.fail('HC201', format('function %s not found', quote_literal(left(reference, 200))));
  end if;
  return code.function_signature(matches[1]);
end;
$$;

-- A type name as a user wrote it -> its oid, or null (never raises).
create or replace function code.type_oid(type_name text)
  returns oid
  language plpgsql
  stable
  set search_path = pg_catalog, pg_temp
as $$
begin
  return to_regtype(type_name);
exception when others then
  return null;
end;
$$;
