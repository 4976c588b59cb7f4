import { defineConfig } from 'vitest/config';

export default defineConfig({
  test: {
    include: ['test/**/*.test.ts'],
    // Separate processes: native modules (FUSE, SQLite, zstd) and real signals behave as in production.
    pool: 'forks',
    poolOptions: { forks: { maxForks: 2, minForks: 1 } },
    testTimeout: 180_000,
    hookTimeout: 300_000,
    globalSetup: ['test/setup/global.ts'],
    reporters: process.env.AEGIS_JSON_REPORT ? ['default', ['json', { outputFile: process.env.AEGIS_JSON_REPORT }]] : ['default'],
  },
});
