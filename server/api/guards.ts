import { costLimitRule } from '@escape.tech/graphql-armor-cost-limit';
import { maxAliasesRule } from '@escape.tech/graphql-armor-max-aliases';
import { maxDepthRule } from '@escape.tech/graphql-armor-max-depth';
import { maxDirectivesRule } from '@escape.tech/graphql-armor-max-directives';
import { GraphQLError, type ValidationRule } from 'postgraphile/graphql';
import type { RequestIdentities } from './identity.ts';

/** Limits on a GraphQL document, checked during validation, before anything is planned or run. */
export interface QueryLimits {
  /** Deepest selection (default 10; "my jobs with their recent runs" needs 5). */
  readonly maxDepth: number;
  /** Aliases in one document (default 20). */
  readonly maxAliases: number;
  /** GraphQL Armor's cost estimate (default 15,000: jobs with every field and their runs with every field cost about 10,500). */
  readonly maxCost: number;
  /** Directives in one document (default 20). */
  readonly maxDirectives: number;
}

export const DEFAULT_QUERY_LIMITS: QueryLimits = { maxDepth: 10, maxAliases: 20, maxCost: 15_000, maxDirectives: 20 };

/**
 * GraphQL Armor's validation rules (depth, aliases, cost, directives), and no field suggestions
 * ("Did you mean …?") for callers without a token: they would spell out the schema to someone
 * who has not even identified themselves. Request size is grafserv's maxRequestLength; a body
 * that is a batch (a JSON array) is refused by grafserv itself.
 */
export function makeGuardsPlugin(limits: QueryLimits, identities: RequestIdentities): GraphileConfig.Plugin {
  // Armor throws on rejection by default, which grafserv answers as an internal error (HTTP
  // 500); reported instead, a rejection is an ordinary validation error.
  const reported = { propagateOnRejection: false, onReject: [reportRejection] };
  const rules: ValidationRule[] = [
    maxDepthRule({ n: limits.maxDepth, ignoreIntrospection: true, ...reported }),
    maxAliasesRule({ n: limits.maxAliases, ...reported }),
    costLimitRule({ maxCost: limits.maxCost, ...reported }),
    maxDirectivesRule({ n: limits.maxDirectives, ...reported }),
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

function reportRejection(context: { reportError(error: GraphQLError): void } | null, error: GraphQLError): void {
  // Armor prefixes its messages with "Syntax Error: " although the syntax is fine.
  context?.reportError(new GraphQLError(error.message.replace(/^Syntax Error: /, '')));
}

const SUGGESTION = / ?Did you mean .+\?/g;

function withoutSuggestions(error: GraphQLError): GraphQLError {
  // The cached validation result is shared with other callers: change a copy.
  if (!error.message.includes('Did you mean')) return error;
  const copy = Object.create(Object.getPrototypeOf(error) as object, Object.getOwnPropertyDescriptors(error)) as GraphQLError;
  copy.message = error.message.replace(SUGGESTION, '').trim();
  return copy;
}
