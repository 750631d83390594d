import { defineConfig } from 'vitest/config';

export default defineConfig({
  test: {
    include: ['test/**/*.test.ts'],
    // One PostgreSQL cluster per test run; each test file gets its own database and roles.
    globalSetup: ['test/support/global-setup.ts'],
    pool: 'forks',
    // Test files spend most of their time waiting: on PostgreSQL, and on executors and servers
    // doing real work in real time (leases, retries, per-second schedules). Four files at a time
    // on a 2-core machine took the suite from about 8 to under 4 minutes with the same results;
    // every test waits for states with generous ceilings, so a busier machine is slower, not red.
    maxWorkers: 4,
    // Memory tests collect garbage before they measure (global.gc).
    execArgv: ['--expose-gc'],
    // Ceilings, not expectations: a test that waits for states passes as soon as they hold.
    testTimeout: 120_000,
    hookTimeout: 120_000,
  },
});
