import type { CodegenConfig } from '@graphql-codegen/cli';

/**
 * The dashboard's operation types come from the server's schema snapshot: when
 * graphql/schema.graphql changes, `npm run build:web` (and so `npm install`) regenerates them and
 * `npm run typecheck` shows what no longer fits. Paths are relative to the project directory,
 * where npm runs its scripts.
 */
const config: CodegenConfig = {
  schema: 'graphql/schema.graphql',
  documents: ['web/src/**/*.{ts,tsx}', '!web/src/gql/**'],
  ignoreNoDocuments: false,
  silent: true,
  generates: {
    'web/src/gql/': {
      preset: 'client',
      presetConfig: { fragmentMasking: false },
      config: {
        // String unions, not TypeScript enums: a status compares as a plain string.
        enumsAsTypes: true,
        useTypeImports: true,
        strictScalars: true,
        // BigInt ids travel as strings (they may exceed 2^53); Datetime as ISO strings.
        scalars: { BigInt: 'string', Cursor: 'string', Datetime: 'string', JSON: 'unknown' },
      },
    },
  },
};

export default config;
