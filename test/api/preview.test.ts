import { afterAll, beforeAll, describe, expect, test } from 'vitest';
import type { RunningGraphQLServer } from '../../server/api/server.ts';
import { useTestDatabase } from '../support/database.ts';
import { graphql, startTestServer, tokenFor } from '../support/server.ts';

interface Occurrence { occursAt: string; localTime: string; shifted: boolean; repeated: boolean }

const PREVIEW = `
  query Preview($schedule: String!, $timeZone: String, $count: Int) {
    previewSchedule(schedule: $schedule, timeZone: $timeZone, count: $count) { nodes { occursAt localTime shifted repeated } }
  }`;

/** previewSchedule, a Query field (a connection, as PostGraphile offers a set-returning function) any authenticated user may use; its refusals carry their HC code. */
describe('previewSchedule through GraphQL', () => {
  const db = useTestDatabase();
  let server: RunningGraphQLServer;
  let dave: string;

  beforeAll(async () => {
    await db().addUser('dave'); // no scheduler role: previewing needs none
    server = await startTestServer(db());
    dave = await tokenFor('dave');
  });
  afterAll(async () => {
    await server?.stop();
  });

  test('dave previews the 02:30 of the last Sunday of March in Amsterdam: shifted to 03:30 CEST each year; a bad count is HC210', async () => {
    const { status, body } = await graphql<{ previewSchedule: { nodes: Occurrence[] } }>(server, PREVIEW, { schedule: '30 2 * 3 0L', timeZone: 'Europe/Amsterdam', count: 3 }, dave);
    expect([status, body.errors]).toEqual([200, undefined]);
    const occurrences = body.data?.previewSchedule.nodes ?? [];
    expect(occurrences).toHaveLength(3);
    for (const occurrence of occurrences) {
      expect(occurrence).toEqual({
        occursAt: expect.stringMatching(/^\d{4}-03-\d\dT01:30:00(\.0+)?(Z|\+00:00)$/),
        localTime: expect.stringMatching(/^\d{4}-03-(2[5-9]|3[01])T03:30:00\+02:00$/),
        shifted: true,
        repeated: false,
      });
      expect(occurrence.localTime.slice(0, 10)).toBe(occurrence.occursAt.slice(0, 10));
    }

    const refused = await graphql(server, PREVIEW, { schedule: '0 3 * * *', count: 1001 }, dave);
    expect(refused.body.data?.previewSchedule ?? null).toBeNull();
    expect(refused.body.errors?.map((e) => [e.message, e.extensions?.code])).toEqual([['count must be from 1 to 1000, not 1001', 'HC210']]);

    // Without a token the field is there, but the function is not the anonymous role's.
    const anonymous = await graphql(server, PREVIEW, { schedule: '0 3 * * *' });
    expect(anonymous.body.data?.previewSchedule ?? null).toBeNull();
    expect(anonymous.body.errors?.map((e) => e.extensions?.code)).toEqual(['HC_AUTH_REQUIRED']);
  });
});
