import { lexicographicSortSchema, printSchema } from 'postgraphile/graphql';
import type { PostGraphileInstance } from 'postgraphile';

/** The schema as SDL in a stable order: what graphql/schema.graphql must equal. */
export async function printedSchema(pgl: PostGraphileInstance): Promise<string> {
  return `${printSchema(lexicographicSortSchema(await pgl.getSchema()))}\n`;
}
