import { readFileSync, writeFileSync } from 'node:fs';
import { fileURLToPath } from 'node:url';
import { afterAll, beforeAll, describe, expect, test } from 'vitest';
import { buildSchema, isObjectType, type GraphQLSchema } from 'postgraphile/graphql';
import type { RunningGraphQLServer } from '../../server/api/server.ts';
import { printedSchema } from '../../server/api/schema.ts';
import { useTestDatabase } from '../support/database.ts';
import { data, startTestServer } from '../support/server.ts';

const SNAPSHOT = fileURLToPath(new URL('../../graphql/schema.graphql', import.meta.url));

/**
 * The schema is the hard shell: built as $client sees schema api, so it has the views and shims
 * of api and nothing derived from code, data, mgr or the executor's schema. Set
 * UPDATE_SCHEMA_SNAPSHOT=1 to rewrite graphql/schema.graphql after an intended change.
 */
describe('the GraphQL schema', () => {
  const db = useTestDatabase();
  let server: RunningGraphQLServer;
  let printed: string;
  let schema: GraphQLSchema;

  beforeAll(async () => {
    server = await startTestServer(db());
    printed = await printedSchema(server.pgl);
    schema = buildSchema(printed);
    if (process.env.UPDATE_SCHEMA_SNAPSHOT) writeFileSync(SNAPSHOT, printed);
  });
  afterAll(async () => {
    await server?.stop();
  });

  test('equals graphql/schema.graphql (UPDATE_SCHEMA_SNAPSHOT=1 rewrites it)', () => {
    expect(printed).toBe(readFileSync(SNAPSHOT, 'utf8'));
  });

  test('has the root fields of the specification, and no others', () => {
    const fields = (type: string): string[] => {
      const t = schema.getType(type);
      return isObjectType(t) ? Object.keys(t.getFields()).sort() : [];
    };
    expect(fields('Query')).toEqual(['job', 'jobRun', 'jobRuns', 'jobs', 'previewSchedule', 'schedulableFunction', 'schedulableFunctions']);
    expect(fields('Mutation')).toEqual(['cancelRun', 'pauseJob', 'resumeJob', 'runJobNow', 'scheduleJob', 'unscheduleJob', 'updateJob']);
    expect(fields('Subscription')).toEqual(['jobRunEvents']);
    // No way to name a channel or topic: a subscriber cannot listen on arbitrary channels.
    const subscription = schema.getSubscriptionType();
    expect(subscription?.getFields().jobRunEvents?.args.map((arg) => `${arg.name}: ${String(arg.type)}`)).toEqual(['after: BigInt', 'jobId: BigInt']);
    expect(String(subscription?.getFields().jobRunEvents?.type)).toBe('JobRunEvent');
  });

  test('types tell the truth: closed sets are enums, and a field is non-null exactly when its column can never be null', () => {
    const fieldTypes = (type: string): Record<string, string> => {
      const t = schema.getType(type);
      if (!isObjectType(t)) throw new Error(`no object type ${type}`);
      return Object.fromEntries(Object.values(t.getFields()).filter((field) => field.args.length === 0).map((field) => [field.name, String(field.type)]));
    };
    expect(fieldTypes('Job')).toEqual({
      id: 'BigInt!', name: 'String', owner: 'String!', functionSignature: 'String!', arguments: 'JSON!', schedule: 'String',
      runAt: 'Datetime', timeZone: 'String!', options: 'JSON!', overlap: 'JobOverlapPolicy!', missed: 'JobMissedPolicy!',
      enabled: 'Boolean!', nextRunAt: 'Datetime', lastRunAt: 'Datetime', lastStatus: 'JobRunStatus', createdAt: 'Datetime!',
      updatedAt: 'Datetime!', pausedReason: 'String', consecutiveFailures: 'Int!',
    });
    expect(fieldTypes('JobRun')).toEqual({
      id: 'BigInt!', jobId: 'BigInt!', job: 'Job', owner: 'String!', scheduledFor: 'Datetime!', startedAt: 'Datetime', finishedAt: 'Datetime',
      status: 'JobRunStatus!', attempt: 'Int!', trigger: 'JobRunTrigger', rowsReturned: 'BigInt', rowsAffected: 'BigInt',
      errorSqlstate: 'String', errorMessage: 'String', errorDetail: 'String', errorHint: 'String', errorContext: 'String',
      rejectReason: 'JobRunRejectReason', executorId: 'String', missedBefore: 'Datetime', latenessMs: 'Float', durationMs: 'Float',
    });
    expect(fieldTypes('JobRunEvent')).toEqual({
      id: 'BigInt!', runId: 'BigInt!', jobId: 'BigInt!', status: 'JobRunStatus!', at: 'Datetime!', run: 'JobRun',
    });
    // Conditions take the enums too (and every field of a condition is optional).
    const condition = (type: string, field: string): string => {
      const t = schema.getType(type);
      return t && 'getFields' in t ? String((t.getFields() as Record<string, { type: unknown }>)[field]?.type) : '';
    };
    expect(['status', 'trigger', 'rejectReason'].map((field) => condition('JobRunCondition', field))).toEqual(['JobRunStatus', 'JobRunTrigger', 'JobRunRejectReason']);
    expect(['lastStatus', 'overlap', 'missed'].map((field) => condition('JobCondition', field))).toEqual(['JobRunStatus', 'JobOverlapPolicy', 'JobMissedPolicy']);
  });

  test('holds nothing derived from code, data, mgr, executor or migrations', async () => {
    // Names PostGraphile would give to what those schemas hold, were they exposed.
    const forbidden = /^(addUser|removeUser|reCreateRole|grantPriv|revokeAllFromPublic|localRoleName|lockFunctionDefinition|checkEligibility|requireEligible|resolveFunction|claimRuns|finishRun|startRun|run|release|renewLease|renewExecutorLease|expireLeases|catchUp|nextDueAt|parseCron|cronNext|caller|callerHasRole|notifyRun|queueRetry|tuplesChanged|executors?|timeZones|timeZonesConnection|appliedMigrations?|migrations?|fail|jobOptions)$/i;
    // JobRunEvent.run is the event's run (a JobRun read through api.job_runs), not executor.run.
    const isEventRun = (type: string, field: { name: string; type: unknown }): boolean =>
      type === 'JobRunEvent' && field.name === 'run' && String(field.type) === 'JobRun';
    const names = Object.values(schema.getTypeMap()).flatMap((type) => [
      type.name,
      ...(isObjectType(type)
        ? Object.values(type.getFields())
            .filter((field) => !isEventRun(type.name, field))
            .flatMap((field) => [field.name, ...field.args.map((arg) => arg.name)])
        : []),
    ]);
    expect(names.filter((name) => forbidden.test(name))).toEqual([]);
    // Every object type is a view of api, a connection/edge/payload of one, or GraphQL's own.
    const own = Object.keys(schema.getTypeMap()).filter((name) => !name.startsWith('__'));
    const allowed = /^(Query|Mutation|Subscription|Job|JobRun|JobRunEvent|JobConnection|JobRunConnection|JobEdge|JobRunEdge|JobCondition|JobRunCondition|JobOrderBy|JobRunOrderBy|PageInfo|Cursor|BigInt|Datetime|JSON|Boolean|String|Int|Float|ID|SchedulableFunction|SchedulableFunctionCondition|SchedulableFunctionConnection|SchedulableFunctionEdge|SchedulableFunctionOrderBy|PreviewScheduleRecord|PreviewScheduleConnection|PreviewScheduleEdge|JobRunStatus|JobRunTrigger|JobRunRejectReason|JobOverlapPolicy|JobMissedPolicy|(ScheduleJob|UpdateJob|PauseJob|ResumeJob|RunJobNow|UnscheduleJob|CancelRun)(Input|Payload))$/;
    expect(own.filter((name) => !allowed.test(name))).toEqual([]);
    // The introspection a client gets is the same schema.
    const { __schema } = await data<{ __schema: { types: Array<{ name: string }> } }>(server, '{ __schema { types { name } } }');
    expect(__schema.types.map((t) => t.name).filter((n) => !n.startsWith('__')).sort()).toEqual(own.sort());
  });
});
