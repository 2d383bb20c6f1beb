import { defineConfig } from 'vitest/config'

// One project per test tier; scripts/run-tiers.mjs checks each tier's
// prerequisites before it runs, so a tier can never be skipped silently.
export default defineConfig({
  test: {
    projects: [
      { test: { name: 'unit', include: ['test/unit/**/*.test.ts'], testTimeout: 10_000 } },
      { test: { name: 'netns', include: ['test/netns/**/*.test.ts'], testTimeout: 60_000, hookTimeout: 60_000, fileParallelism: false } },
      { test: { name: 'e2e', include: ['test/e2e/**/*.test.ts'], testTimeout: 180_000, hookTimeout: 120_000, fileParallelism: false } },
      { test: { name: 'kernel', include: ['test/kernel/**/*.test.ts'], testTimeout: 600_000, hookTimeout: 300_000, fileParallelism: false } },
      { test: { name: 'bench', include: ['bench/**/*.bench.ts'], testTimeout: 600_000, hookTimeout: 300_000, fileParallelism: false } },
    ],
  },
})
