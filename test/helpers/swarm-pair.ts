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

/** Two fresh agents on a private loopback testnet, connected over a kind topic. */
export async function connectedPair(bootstrap?: Array<{ host: string; port: number }>): Promise<Connected> {
  const testnet = bootstrap ? null : await createTestnet(3, { host: '127.0.0.1' })
  const boot = bootstrap ?? testnet!.bootstrap
  const pid = identityFromSecret(generateSecretKey())
  const cid = identityFromSecret(generateSecretKey())
  const ps = createSwarm({ keyPair: deriveSwarmKeyPair(pid.secretKey), bootstrap: boot })
  const cs = createSwarm({ keyPair: deriveSwarmKeyPair(cid.secretKey), bootstrap: boot })
  const pConn = new Promise<NoiseSecretStream>((r) => ps.once('connection', r))
  const cConn = new Promise<NoiseSecretStream>((r) => cs.once('connection', r))
  const topic = topicForKind(65000)
  await ps.join(topic, { server: true, client: false }).flushed()
  cs.join(topic, { server: false, client: true })
  const [pc, cc] = await Promise.all([pConn, cConn])
  return {
    provider: { identity: pid, swarm: ps, conn: pc },
    customer: { identity: cid, swarm: cs, conn: cc },
    async destroy() {
      await Promise.all([ps.destroy(), cs.destroy()])
      await testnet?.destroy()
    },
  }
}
