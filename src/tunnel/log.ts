/** Where the tunnel reports what a person running it should know. */
export interface TunnelLogger {
  info(message: string): void
  warn(message: string): void
}

/** Default: one line per message on stderr, so stdout stays free for --json output. */
export const stderrLogger: TunnelLogger = {
  info: (message) => process.stderr.write(`tunnel: ${message}\n`),
  warn: (message) => process.stderr.write(`tunnel: warning: ${message}\n`),
}

/** For tests and embedders that want silence. */
export const silentLogger: TunnelLogger = { info: () => {}, warn: () => {} }
