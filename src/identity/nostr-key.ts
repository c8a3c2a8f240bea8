import { readFile } from 'node:fs/promises'
import { join } from 'node:path'
import { generateSecretKey, getPublicKey, nip19 } from 'nostr-tools'
import { bytesToHex, hexToBytes } from '@noble/hashes/utils.js'
import { writeFileAtomic } from '../util/atomic-file.js'

export interface Identity {
  secretKey: Uint8Array
  /** hex x-only public key */
  pubkey: string
  npub: string
}

export function identityFromSecret(secretKey: Uint8Array): Identity {
  const pubkey = getPublicKey(secretKey)
  return { secretKey, pubkey, npub: nip19.npubEncode(pubkey) }
}

/** Read a 32-byte key stored as hex (or nsec) in `file`, creating it (mode 0600) if absent. */
export async function loadOrCreateKey(file: string): Promise<Uint8Array> {
  try {
    const text = (await readFile(file, 'utf8')).trim()
    if (text.startsWith('nsec1')) {
      const d = nip19.decode(text)
      if (d.type !== 'nsec') throw new Error('not an nsec')
      return d.data
    }
    if (!/^[0-9a-f]{64}$/i.test(text)) throw new Error('not 64 hex characters')
    return hexToBytes(text)
  } catch (err) {
    if ((err as NodeJS.ErrnoException).code !== 'ENOENT') {
      throw new Error(`the key file ${file} is unreadable (${(err as Error).message}); fix or remove it`)
    }
  }
  const sk = generateSecretKey()
  await writeFileAtomic(file, bytesToHex(sk) + '\n', 0o600)
  return sk
}

/** Where the agent's Nostr secret key lives in its data dir. */
export function identityFile(dataDir: string): string {
  return join(dataDir, 'nostr.key')
}

/** The agent's Nostr identity: `<dataDir>/nostr.key`, created on first run. */
export async function loadOrCreateIdentity(dataDir: string): Promise<Identity> {
  return identityFromSecret(await loadOrCreateKey(identityFile(dataDir)))
}

/** Accept an npub or 64-hex pubkey; return hex. */
export function parsePubkey(input: string): string {
  if (input.startsWith('npub1')) {
    const d = nip19.decode(input)
    if (d.type !== 'npub') throw new Error(`${input} is not an npub`)
    return d.data
  }
  if (/^[0-9a-f]{64}$/i.test(input)) return input.toLowerCase()
  throw new Error(`"${input}" is not a Nostr public key (give an npub1… or 64 hex characters)`)
}
