import { inject } from 'vitest'
import type { DevnetConfig } from '../../src/config/devnet-config.js'

declare module 'vitest' {
  export interface ProvidedContext {
    /** The shared devnet started by test/helpers/global-devnet.ts for the whole run. */
    devnet: DevnetConfig
    /** Its directory (holds devnet.json): pass it as --devnet / DVM_DEVNET to spawned commands. */
    devnetDir: string
  }
}

/** The run's shared devnet (DHT bootstrap, relay, mint); do not stop its services from a test. */
export function devnet(): DevnetConfig {
  return inject('devnet')
}

export function devnetDir(): string {
  return inject('devnetDir')
}
