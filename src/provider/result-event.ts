import { ciphertextChars, type EncryptionScheme } from '../nostr/encryption.js'
import type { EventTemplate } from '../nostr/events.js'

/**
 * A result has to fit in one relay event. Common relays refuse events over
 * 64 KiB (strfry's default; others take 128 KiB), and a refused result never
 * reaches the customer, so the provider keeps every result event within
 * MAX_RESULT_EVENT_BYTES of JSON:
 * - first as NIP-90 has it, echoing the request (`request` tag) and its `i` tags;
 * - if that is too large, without the echo: the `e` tag still names the
 *   request, which is on the relays already;
 * - if the output alone is too large, the job fails with an error saying so.
 */
export const MAX_RESULT_EVENT_BYTES = 64_000

const HEX64 = '0'.repeat(64)
const SIG = '0'.repeat(128)

/** JSON size of the event once signed: id, pubkey and sig have fixed lengths. */
export function signedEventBytes(t: EventTemplate): number {
  return Buffer.byteLength(JSON.stringify({ id: HEX64, pubkey: HEX64, created_at: t.created_at, kind: t.kind, tags: t.tags, content: t.content, sig: SIG }))
}

export type FitResult = { ok: true; template: EventTemplate; echoDropped: boolean } | { ok: false; bytes: number }

/** The result template, trimmed of the echoed request if need be, or how large it is when even that does not fit. */
export function fitResultEvent(t: EventTemplate, max = MAX_RESULT_EVENT_BYTES): FitResult {
  if (signedEventBytes(t) <= max) return { ok: true, template: t, echoDropped: false }
  const trimmed = { ...t, tags: t.tags.filter((tag) => tag[0] !== 'request' && tag[0] !== 'i') }
  const bytes = signedEventBytes(trimmed)
  return bytes <= max ? { ok: true, template: trimmed, echoDropped: true } : { ok: false, bytes }
}

export function resultTooLargeMessage(bytes: number, max = MAX_RESULT_EVENT_BYTES): string {
  return `the output is too large for a relay event (about ${bytes} bytes as a result event; relays take about ${max}); ask for less output`
}

/**
 * What the output will weigh in the result's content while it streams, so a
 * job whose output cannot fit is stopped early rather than at the end: JSON
 * escaping for plain output, the ciphertext's size for encrypted output.
 */
export class ResultSizeMeter {
  private plainBytes = 0
  private escapedBytes = 0
  /** the smallest result event without content: kind, created_at, e, p, amount and encrypted tags */
  private static readonly overhead = signedEventBytes({
    kind: 6999,
    created_at: 9_999_999_999,
    content: '',
    tags: [['e', HEX64], ['p', HEX64], ['amount', '9'.repeat(19)], ['encrypted']],
  })

  constructor(
    private readonly scheme: EncryptionScheme | undefined,
    private readonly max = MAX_RESULT_EVENT_BYTES,
  ) {}

  add(text: string): void {
    const bytes = Buffer.byteLength(text)
    this.plainBytes += bytes
    // Escapes (quotes, backslashes, control characters) make the JSON larger than the text.
    if (!this.scheme && /["\\\u0000-\u001f]/.test(text)) this.escapedBytes += Buffer.byteLength(JSON.stringify(text)) - 2 - bytes
  }

  /** Output that is plain ASCII without escapes (base64 of binary output). */
  addAscii(chars: number): void {
    this.plainBytes += chars
  }

  /** Bytes the content will take in the event. */
  get contentBytes(): number {
    return this.scheme ? ciphertextChars(this.plainBytes, this.scheme) : this.plainBytes + this.escapedBytes
  }

  get tooLarge(): boolean {
    return this.contentBytes + ResultSizeMeter.overhead > this.max
  }

  get estimatedEventBytes(): number {
    return this.contentBytes + ResultSizeMeter.overhead
  }
}
