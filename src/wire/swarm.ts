import DHT, { type KeyPair } from 'hyperdht'
import Hyperswarm from 'hyperswarm'

export interface SwarmOptions {
  keyPair: KeyPair
  /** DHT bootstrap nodes; omit for the public network */
  bootstrap?: Array<{ host: string; port: number }>
  /** most connections this swarm keeps (a provider sets it from --max-sessions) */
  maxPeers?: number
}

/**
 * A Hyperswarm with our key pair. With explicit bootstrap nodes (the devnet)
 * the DHT binds loopback and declares itself unfirewalled: on this machine the
 * other interface leads nowhere, and a firewalled node on a local testnet is
 * only reached after a ~15 s retry (DESIGN.md §3).
 */
export function createSwarm(opts: SwarmOptions): Hyperswarm {
  const local = opts.bootstrap !== undefined
  const dht = local
    ? new DHT({ bootstrap: opts.bootstrap, host: '127.0.0.1', firewalled: false, keyPair: opts.keyPair })
    : new DHT({ keyPair: opts.keyPair })
  const swarm = new Hyperswarm({ keyPair: opts.keyPair, dht, maxPeers: opts.maxPeers ?? 1024 })
  // Connection errors (resets, timeouts) reach whoever uses the connection as
  // its close; one nobody picked up must not crash the process.
  swarm.on('connection', (conn) => conn.on('error', () => {}))
  return swarm
}
