/**
 * Reading a mint's HTTP answers with a size cap. A mint (or whatever answers
 * at its URL) could send an endless body; reading it whole would exhaust
 * memory, so bodies are read as a stream and given up on past the cap.
 * The largest honest answer (NUT-09 restore of 1000 outputs with DLEQ proofs)
 * is well under 1 MiB.
 */

export const MAX_MINT_RESPONSE_BYTES = 4 * 1024 * 1024

export class ResponseTooLargeError extends Error {}

function mib(n: number): string {
  return `${Math.round((n / (1024 * 1024)) * 10) / 10} MiB`
}

/** The body as text, or ResponseTooLargeError once it passes `maxBytes` (the rest is not read). */
export async function readMintText(res: Response, from: string, maxBytes = MAX_MINT_RESPONSE_BYTES): Promise<string> {
  const tooLarge = () =>
    new ResponseTooLargeError(`${from} sent a response larger than ${mib(maxBytes)}; it was not read further. Check that the URL points at a Cashu mint`)
  const declared = Number(res.headers.get('content-length') ?? NaN)
  if (declared > maxBytes) {
    await res.body?.cancel().catch(() => undefined)
    throw tooLarge()
  }
  if (!res.body) return ''
  const reader = res.body.getReader()
  const chunks: Uint8Array[] = []
  let size = 0
  for (;;) {
    const { done, value } = await reader.read()
    if (done) break
    size += value.byteLength
    if (size > maxBytes) {
      await reader.cancel().catch(() => undefined)
      throw tooLarge()
    }
    chunks.push(value)
  }
  return Buffer.concat(chunks).toString('utf8')
}

/** The body parsed as JSON; a body that is not JSON throws a plain Error saying so. */
export async function readMintJson(res: Response, from: string, maxBytes = MAX_MINT_RESPONSE_BYTES): Promise<unknown> {
  const text = await readMintText(res, from, maxBytes)
  try {
    return JSON.parse(text) as unknown
  } catch {
    throw new Error(`${from} sent a response that is not JSON (HTTP ${res.status})`)
  }
}
