import { createServer } from 'node:net'

/** Try to bind host:port for TCP; resolves the bound port, or rejects with the bind error. */
function probe(port: number, host: string): Promise<number> {
  return new Promise((resolve, reject) => {
    const server = createServer()
    server.unref()
    server.once('error', reject)
    server.listen({ port, host, exclusive: true }, () => {
      const address = server.address()
      const bound = typeof address === 'object' && address ? address.port : port
      server.close(() => resolve(bound))
    })
  })
}

/** A TCP port that is free on `host` right now (the OS picks it). */
export function freePort(host = '127.0.0.1'): Promise<number> {
  return probe(0, host)
}

/** True when nothing listens on host:port (TCP). */
export async function isPortFree(port: number, host = '127.0.0.1'): Promise<boolean> {
  try {
    await probe(port, host)
    return true
  } catch {
    return false
  }
}
