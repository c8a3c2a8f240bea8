import { sha256 } from '@noble/hashes/sha2.js'
import { utf8ToBytes } from '@noble/hashes/utils.js'

/** Versioned namespace: a protocol change that breaks peers gets a new topic. */
export const TOPIC_NAMESPACE = 'dvm-agent/v1/kind/'

/** The Hyperswarm topic providers of `kind` join. Kinds are plain numbers; no meaning is implied. */
export function topicForKind(kind: number): Buffer {
  if (!Number.isInteger(kind) || kind < 0 || kind > 65535) throw new Error(`job kind ${kind} is not an integer between 0 and 65535`)
  return Buffer.from(sha256(utf8ToBytes(TOPIC_NAMESPACE + kind)))
}
