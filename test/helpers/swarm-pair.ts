import createTestnet from 'hyperdht/testnet.js'
import type Hyperswarm from 'hyperswarm'
import type { NoiseSecretStream } from 'hyperswarm'
import { generateSecretKey } from 'nostr-tools'
import { identityFromSecret, type Identity } from '../../src/identity/nostr-key.js'
import { deriveSwarmKeyPair } from '../../src/identity/swarm-key.js'
import { createSwarm } from '../../src/wire/swarm.js'
import { topicForKind } from '../../src/wire/topic.js'

export interface Connected {
  provider: { identity: Identity; swarm: Hyperswarm; conn: NoiseSecretStream }
  customer: { identity: Identity; swarm: Hyperswarm; conn: NoiseSecretStream }
  destroy(): Promise<void>
}

/** On loopback this takes well under a second; the bound is for a loaded machine. */
const CONNECT_TIMEOUT_MS = 20_000

/**
 * Two fresh agents on a private loopback testnet, connected over a kind topic.
 * Rejects, with everything it started torn down, if they are not connected
 * within `timeoutMs`, naming the step that did not happen.
 */
export async function connectedPair(bootstrap?: Array<{ host: string; port: number }>, timeoutMs = CONNECT_TIMEOUT_MS): Promise<Connected> {
  const deadline = Date.now() + timeoutMs
  /** `p`, or a rejection saying what did not happen in time. */
  const within = <T>(p: Promise<T>, what: string, detail: () => string = () => ''): Promise<T> => {
    let timer: NodeJS.Timeout | undefined
    return Promise.race([
      p.finally(() => clearTimeout(timer)),
      new Promise<never>((_, reject) => {
        timer = setTimeout(() => reject(new Error(`connectedPair: ${what} within ${timeoutMs} ms${detail()}`)), Math.max(0, deadline - Date.now()))
      }),
    ])
  }

  let testnet: Awaited<ReturnType<typeof createTestnet>> | null = null
  if (!bootstrap) {
    const starting = createTestnet(3, { host: '127.0.0.1' })
    try {
      testnet = await within(starting, 'the loopback DHT testnet did not start')
    } catch (err) {
      starting.then((t) => t.destroy(), () => {}) // if it comes up after all
      throw err
    }
  }
  const boot = bootstrap ?? testnet!.bootstrap
  const pid = identityFromSecret(generateSecretKey())
  const cid = identityFromSecret(generateSecretKey())
  const ps = createSwarm({ keyPair: deriveSwarmKeyPair(pid.secretKey), bootstrap: boot })
  const cs = createSwarm({ keyPair: deriveSwarmKeyPair(cid.secretKey), bootstrap: boot })
  const destroy = async (): Promise<void> => {
    await Promise.all([ps.destroy(), cs.destroy()])
    await testnet?.destroy()
  }
  let pc: NoiseSecretStream | undefined
  let cc: NoiseSecretStream | undefined
  const pConn = new Promise<void>((r) => ps.once('connection', (c: NoiseSecretStream) => r(void (pc = c))))
  const cConn = new Promise<void>((r) => cs.once('connection', (c: NoiseSecretStream) => r(void (cc = c))))
  const topic = topicForKind(65000)
  try {
    await within(ps.join(topic, { server: true, client: false }).flushed(), 'the provider swarm did not finish announcing itself on the topic')
    cs.join(topic, { server: false, client: true })
    await within(Promise.all([pConn, cConn]), 'the provider and customer swarms did not connect over the topic', () =>
      ` (the provider ${pc ? 'got' : 'never got'} a connection, the customer ${cc ? 'got' : 'never got'} one)`)
  } catch (err) {
    await destroy()
    throw err
  }
  return {
    provider: { identity: pid, swarm: ps, conn: pc! },
    customer: { identity: cid, swarm: cs, conn: cc! },
    destroy,
  }
}
