import { defineConfig } from 'vitest/config';

export default defineConfig({
  test: {
    include: ['test/**/*.test.ts'],
    // One PostgreSQL cluster per test run; each test file gets its own database and roles.
    globalSetup: ['test/support/global-setup.ts'],
    pool: 'forks',
    // Memory tests collect garbage before they measure (global.gc).
    execArgv: ['--expose-gc'],
    testTimeout: 30_000,
    hookTimeout: 120_000,
  },
});
