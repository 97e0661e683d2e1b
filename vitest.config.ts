import { defineConfig } from 'vitest/config';

export default defineConfig({
  test: {
    include: ['test/**/*.test.ts'],
    // one temp root per run, removed at the end (test/helpers/global-setup.ts)
    globalSetup: ['test/helpers/global-setup.ts'],
    pool: 'forks',
    maxWorkers: 2,
    // fixtures are built by real tools on first use and cached in .cache/fixtures
    testTimeout: 600_000,
    hookTimeout: 1_200_000,
    reporters: ['default'],
  },
});
