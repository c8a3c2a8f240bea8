import createTestnet from 'hyperdht/testnet.js'

export interface DhtNodeAddress {
  host: string
  port: number
}

export interface DhtOptions {
  /** Number of DHT nodes; the first is the bootstrap node (default 3: enough to route, quick to start). */
  size?: number
  /** Port of the bootstrap node; 0 (default) picks a free one. */
  port?: number
}

export interface RunningDht {
  bootstrap: DhtNodeAddress[]
  stop(): Promise<void>
}

/**
 * A HyperDHT testnet on loopback. Every node binds 127.0.0.1: this machine's
 * other interface leads nowhere, and with the default (all interfaces) binding
 * peers never connect.
 */
export async function startDht(options: DhtOptions = {}): Promise<RunningDht> {
  const port = options.port ?? 0
  let testnet
  try {
    testnet = await createTestnet(options.size ?? 3, { host: '127.0.0.1', port })
  } catch (err) {
    const code = (err as NodeJS.ErrnoException).code
    if (code === 'EADDRINUSE') {
      throw new Error(`dht: UDP port ${port} on 127.0.0.1 is already in use; stop whatever holds it or choose another port (0 picks a free one)`)
    }
    throw new Error(`dht: could not start the HyperDHT testnet on 127.0.0.1 (${(err as Error).message})`)
  }
  const bootstrap = testnet.bootstrap.map((b) => ({ host: b.host, port: b.port }))
  let stopping: Promise<void> | undefined
  return {
    bootstrap,
    stop: () => (stopping ??= testnet.destroy()),
  }
}

/**
 * Options for a HyperDHT node that joins the devnet, for whoever creates a
 * Hyperswarm there: `new Hyperswarm({ dht: new DHT(devnetDhtOptions(cfg.bootstrap)) })`.
 * `firewalled: false` matters: with the default, the first connection attempt
 * on the local testnet times out and the second comes about 15 s later;
 * without it a peer is reached in about 25 ms.
 */
export function devnetDhtOptions(bootstrap: DhtNodeAddress[]): {
  bootstrap: DhtNodeAddress[]
  host: string
  firewalled: boolean
} {
  return { bootstrap, host: '127.0.0.1', firewalled: false }
}
