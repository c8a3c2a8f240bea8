import { defineConfig } from 'vitest/config'

export default defineConfig({
  test: {
    include: ['test/**/*.test.ts'],
    // One shared devnet (DHT testnet, relay, mint) for the whole run; tests that
    // need to kill a service start their own.
    globalSetup: ['test/helpers/global-devnet.ts'],
    testTimeout: 60_000,
    hookTimeout: 120_000,
    // Two cores: more workers only add contention.
    maxWorkers: 2,
  },
})
