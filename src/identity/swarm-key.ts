import DHT, { type KeyPair } from 'hyperdht'
import { sha256 } from '@noble/hashes/sha2.js'
import { utf8ToBytes, concatBytes } from '@noble/hashes/utils.js'

const SWARM_SEED_TAG = utf8ToBytes('dvm-agent/swarm-key/v1')

/**
 * The Hyperswarm key pair is derived from the Nostr secret key, so a provider's
 * swarm public key is stable across restarts and can be published in its
 * NIP-89 handler. A tagged hash keeps the two keys unrelated to an observer.
 */
export function deriveSwarmKeyPair(nostrSecretKey: Uint8Array): KeyPair {
  const seed = sha256(concatBytes(SWARM_SEED_TAG, nostrSecretKey))
  return DHT.keyPair(Buffer.from(seed))
}
