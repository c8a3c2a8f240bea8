import DHT, { type KeyPair } from 'hyperdht'
import Hyperswarm from 'hyperswarm'

export interface SwarmOptions {
  keyPair: KeyPair
  /** DHT bootstrap nodes; omit for the public network */
  bootstrap?: Array<{ host: string; port: number }>
  /** most connections this swarm keeps (a provider sets it from --max-sessions) */
  maxPeers?: number
  /** ms before redialing a peer after its 1st, 2nd, 3rd and later failed dials (Hyperswarm's default: 1 s, 5 s, 15 s, 10 min) */
  backoffs?: [number, number, number, number]
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
  const swarm = new Hyperswarm({ keyPair: opts.keyPair, dht, maxPeers: opts.maxPeers ?? 1024, ...(opts.backoffs ? { backoffs: opts.backoffs } : {}) })
  // The kernel's default UDP receive buffer holds only ~90 small datagrams: a
  // burst of many customers connecting at once overflows it and drops packets.
  dht.ready().then(() => enlargeReceiveBuffers(dht), () => {})
  // Connection errors (resets, timeouts) reach whoever uses the connection as
  // its close; one nobody picked up must not crash the process.
  swarm.on('connection', (conn) => conn.on('error', () => {}))
  return swarm
}

const RECEIVE_BUFFER = 4 * 1024 * 1024

function enlargeReceiveBuffers(dht: DHT): void {
  const io = (dht as unknown as { io?: { serverSocket?: UdxSocket | null; clientSocket?: UdxSocket | null } }).io
  for (const socket of [io?.serverSocket, io?.clientSocket]) {
    try {
      if (socket && socket.getRecvBufferSize() < RECEIVE_BUFFER) socket.setRecvBufferSize(RECEIVE_BUFFER)
    } catch {
      // capped by net.core.rmem_max or unsupported: the default still works
    }
  }
}

interface UdxSocket {
  getRecvBufferSize(): number
  setRecvBufferSize(size: number): void
}
