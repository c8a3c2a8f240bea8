/**
 * Turns a processor's output stream into `partial` feedback pieces: at most one
 * piece per `intervalMs`, at most one publish in flight (output arriving
 * meanwhile joins the next piece, so a slow relay slows the pieces, not the
 * job), each piece at most `maxPieceChars`.
 *
 * Nothing goes out before the first interval has passed, so a job that
 * finishes quickly sends no partials at all: its result says everything.
 * Once partials have started, `finish` sends the rest, so the pieces always
 * add up to the whole result.
 */
export class PartialStream {
  private unsent = ''
  private inFlight: Promise<void> | undefined
  private timer: NodeJS.Timeout | undefined
  private lastSent: number
  private sentAny = false
  private closed = false
  private error: unknown

  constructor(
    private readonly send: (piece: string) => Promise<void>,
    private readonly intervalMs: number,
    private readonly maxPieceChars: number,
  ) {
    this.lastSent = Date.now()
  }

  push(text: string): void {
    if (this.closed || text.length === 0) return
    this.unsent += text
    this.schedule()
  }

  /** Send what is left (only if partials already started) and wait for it. */
  async finish(): Promise<void> {
    this.closed = true
    clearTimeout(this.timer)
    this.timer = undefined
    if (!this.sentAny && !this.inFlight) return
    while (this.unsent.length > 0 || this.inFlight) {
      if (this.inFlight) await this.inFlight
      else this.sendNext()
    }
    if (this.error) throw this.error
  }

  /** Stop without sending more; waits for a publish already under way. */
  async cancel(): Promise<void> {
    this.closed = true
    clearTimeout(this.timer)
    this.timer = undefined
    this.unsent = ''
    if (this.inFlight) await this.inFlight
  }

  private schedule(): void {
    if (this.timer || this.inFlight || this.unsent.length === 0) return
    const wait = Math.max(0, this.intervalMs - (Date.now() - this.lastSent))
    this.timer = setTimeout(() => {
      this.timer = undefined
      if (!this.closed) this.sendNext()
    }, wait)
  }

  private sendNext(): void {
    if (this.inFlight || this.unsent.length === 0) return
    const piece = this.unsent.slice(0, this.maxPieceChars)
    this.unsent = this.unsent.slice(piece.length)
    this.sentAny = true
    this.lastSent = Date.now()
    this.inFlight = this.send(piece)
      .catch((err: unknown) => {
        this.error ??= err
      })
      .finally(() => {
        this.inFlight = undefined
        if (!this.closed) this.schedule()
      })
  }
}
