import { z } from 'zod'

/**
 * The control channel's messages. docs/protocol.md describes them one by one;
 * keep the two in step. Every message is one JSON object in one protomux
 * message, at most MAX_CONTROL_BYTES, validated before anything acts on it.
 */
export const PROTOCOL_VERSION = 1
export const CONTROL_PROTOCOL = 'dvm-agent/control/v1'
export const STREAM_PROTOCOL = 'dvm-agent/stream/v1'
export const MAX_CONTROL_BYTES = 64 * 1024
export const MAX_SKILL_BYTES = 32 * 1024
export const MAX_CHUNK_TEXT = 16 * 1024

const hex = (n: number) => z.string().regex(new RegExp(`^[0-9a-f]{${n}}$`))
const Id = z.string().regex(/^[A-Za-z0-9_-]{1,64}$/)
const Sats = z.number().int().min(0).max(21e14)
const Url = z.string().max(512).url()
const Reason = z.string().max(512)

export const ProofSchema = z.object({
  amount: z.number().int().min(1).max(2 ** 40),
  id: z.string().regex(/^[0-9a-fA-F]{2,66}$/),
  secret: z.string().min(1).max(1024),
  C: hex(66),
  dleq: z.object({ e: hex(64), s: hex(64), r: hex(64).optional() }).optional(),
  witness: z.string().max(1024).optional(),
})

export const JobInputSchema = z.object({
  type: z.enum(['text', 'url', 'event', 'job']),
  value: z.string().max(MAX_CHUNK_TEXT),
  relay: z.string().max(512).optional(),
  marker: z.string().max(64).optional(),
})

const Params = z.record(z.string().max(64), z.string().max(4096)).refine((p) => Object.keys(p).length <= 64, 'at most 64 params')

export const Hello = z.object({
  type: z.literal('hello'),
  v: z.number().int(),
  agent: z.string().max(64),
  role: z.enum(['provider', 'customer']),
  pubkey: hex(64),
  /** Schnorr signature of the Noise handshake hash (see identity-proof.ts) */
  sig: hex(128),
})
export const Skill = z.object({ type: z.literal('skill'), skill: z.record(z.string(), z.unknown()) })
export const Open = z.object({
  type: z.literal('open'),
  session: Id,
  kind: z.number().int().min(0).max(65535),
  mode: z.enum(['session', 'job']),
  /** the most the customer will pay in this session, sats */
  budget: Sats.min(1),
})
export const Accept = z.object({
  type: z.literal('accept'),
  session: Id,
  paymentPubkey: hex(66),
  mints: z.array(Url).min(1).max(8),
  /** time-based sessions: one 1-sat tick buys this many ms */
  tickMs: z.number().int().min(10).max(86_400_000),
  /** jobs: one 1-sat tick buys this many chunks of output */
  chunksPerTick: z.number().int().min(1).max(1_000_000),
  graceMs: z.number().int().min(0).max(600_000),
  /** proofs must stay locked to the provider at least until this unix time (s) */
  minLocktime: z.number().int().min(0),
})
export const Tick = z.object({ type: z.literal('tick'), session: Id, mint: Url, proof: ProofSchema })
export const Ack = z.object({
  type: z.literal('ack'),
  session: Id,
  /** hex Y of the accepted proof */
  y: hex(66),
  /** sats credited in this session so far */
  paid: Sats,
  /** time-based sessions: the session is paid until this time (ms since epoch, provider clock) */
  paidUntil: z.number().int().min(0),
})
export const Refuse = z.object({ type: z.literal('refuse'), session: Id, code: z.string().max(64), reason: Reason })
export const End = z.object({ type: z.literal('end'), session: Id, reason: Reason, paid: Sats })
export const JobMsg = z.object({
  type: z.literal('job'),
  job: Id,
  session: Id,
  kind: z.number().int().min(0).max(65535),
  input: z.array(JobInputSchema).max(16),
  params: Params,
  output: z.string().max(128).optional(),
})
export const Chunk = z.object({
  type: z.literal('chunk'),
  job: Id,
  seq: z.number().int().min(0),
  data: z.string().max(MAX_CHUNK_TEXT),
  encoding: z.enum(['utf8', 'base64']).optional(),
})
export const Due = z.object({ type: z.literal('due'), job: Id, chunks: z.number().int().min(0) })
export const Done = z.object({
  type: z.literal('done'),
  job: Id,
  status: z.enum(['success', 'error', 'cancelled', 'budget']),
  chunks: z.number().int().min(0),
  error: Reason.optional(),
})
export const Cancel = z.object({ type: z.literal('cancel'), job: Id })
export const ErrorMsg = z.object({ type: z.literal('error'), code: z.string().max(64), message: Reason })

export const ControlMessage = z.discriminatedUnion('type', [
  Hello, Skill, Open, Accept, Tick, Ack, Refuse, End, JobMsg, Chunk, Due, Done, Cancel, ErrorMsg,
])
export type ControlMessage = z.infer<typeof ControlMessage>
export type MessageOf<T extends ControlMessage['type']> = Extract<ControlMessage, { type: T }>
export type WireProof = z.infer<typeof ProofSchema>

/** Handshake of a tunnel stream channel: which session pays for it. */
export const StreamOpen = z.object({ session: Id })

export class WireError extends Error {
  constructor(readonly code: string, message: string) {
    super(message)
  }
}

export function encodeControl(msg: ControlMessage): Buffer {
  const buf = Buffer.from(JSON.stringify(msg))
  if (buf.byteLength > MAX_CONTROL_BYTES) throw new WireError('oversized', `a ${msg.type} message of ${buf.byteLength} bytes exceeds the ${MAX_CONTROL_BYTES}-byte limit`)
  return buf
}

/** Parse one control message; throws WireError for anything oversized, not JSON, or not a known valid message. */
export function decodeControl(buf: Uint8Array): ControlMessage {
  if (buf.byteLength > MAX_CONTROL_BYTES) throw new WireError('oversized', `message of ${buf.byteLength} bytes exceeds the ${MAX_CONTROL_BYTES}-byte limit`)
  let json: unknown
  try {
    json = JSON.parse(Buffer.from(buf.buffer, buf.byteOffset, buf.byteLength).toString('utf8'))
  } catch {
    throw new WireError('malformed', 'message is not JSON')
  }
  const parsed = ControlMessage.safeParse(json)
  if (!parsed.success) {
    const issue = parsed.error.issues[0]
    throw new WireError('malformed', `invalid message: ${issue ? `${issue.path.join('.') || 'message'}: ${issue.message}` : 'unknown shape'}`)
  }
  if (parsed.data.type === 'skill' && JSON.stringify(parsed.data.skill).length > MAX_SKILL_BYTES) {
    throw new WireError('oversized', `skill descriptor exceeds ${MAX_SKILL_BYTES} bytes`)
  }
  return parsed.data
}
