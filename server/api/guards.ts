import { costLimitRule } from '@escape.tech/graphql-armor-cost-limit';
import { maxAliasesRule } from '@escape.tech/graphql-armor-max-aliases';
import { maxDepthRule } from '@escape.tech/graphql-armor-max-depth';
import { maxDirectivesRule } from '@escape.tech/graphql-armor-max-directives';
import type { GraphQLError, ValidationRule } from 'postgraphile/graphql';
import type { RequestIdentities } from './identity.ts';

/** Limits on a GraphQL document, checked during validation, before anything is planned or run. */
export interface QueryLimits {
  /** Deepest selection (default 10; "my jobs with their recent runs" needs 5). */
  readonly maxDepth: number;
  /** Aliases in one document (default 20). */
  readonly maxAliases: number;
  /** GraphQL Armor's cost estimate (default 5,000). */
  readonly maxCost: number;
  /** Directives in one document (default 20). */
  readonly maxDirectives: number;
}

export const DEFAULT_QUERY_LIMITS: QueryLimits = { maxDepth: 10, maxAliases: 20, maxCost: 5000, maxDirectives: 20 };

/**
 * GraphQL Armor's validation rules (depth, aliases, cost, directives), and no field suggestions
 * ("Did you mean …?") for callers without a token: they would spell out the schema to someone
 * who has not even identified themselves. Request size is grafserv's maxRequestLength; a body
 * that is a batch (a JSON array) is refused by grafserv itself.
 */
export function makeGuardsPlugin(limits: QueryLimits, identities: RequestIdentities): GraphileConfig.Plugin {
  const rules: ValidationRule[] = [
    maxDepthRule({ n: limits.maxDepth, ignoreIntrospection: true }),
    maxAliasesRule({ n: limits.maxAliases }),
    costLimitRule({ maxCost: limits.maxCost }),
    maxDirectivesRule({ n: limits.maxDirectives }),
  ] as unknown as ValidationRule[]; // armor's rules are typed against its own copy of graphql
  return {
    name: 'HardcronGuardsPlugin',
    version: '1.0.0',
    grafserv: {
      middleware: {
        setPreset(next, event) {
          event.validationRules.push(...rules);
          const getExecutionConfig = event.getExecutionConfig;
          event.getExecutionConfig = async function (ctx) {
            const config = await getExecutionConfig.call(this, ctx);
            const identity = await identities.of(ctx).catch(() => null);
            if (identity && identity.nickname !== null) return config;
            return {
              ...config,
              parseAndValidate(query: string) {
                const result = config.parseAndValidate(query);
                return result.errors ? { errors: result.errors.map(withoutSuggestions) } : result;
              },
            };
          };
          return next();
        },
      },
    },
  };
}

const SUGGESTION = / ?Did you mean .+\?/g;

function withoutSuggestions(error: GraphQLError): GraphQLError {
  // The cached validation result is shared with other callers: change a copy.
  if (!error.message.includes('Did you mean')) return error;
  const copy = Object.create(Object.getPrototypeOf(error) as object, Object.getOwnPropertyDescriptors(error)) as GraphQLError;
  copy.message = error.message.replace(SUGGESTION, '').trim();
  return copy;
}
