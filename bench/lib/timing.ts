/** Timing, deadlines and per-process CPU/RSS readings for the benchmarks. */
import { execFileSync } from 'node:child_process'
import { readFileSync } from 'node:fs'

export const sleep = (ms: number): Promise<void> => new Promise((resolve) => setTimeout(resolve, ms))

/** Resolve or reject with `what` timed out after `ms`; the timer never keeps the process alive. */
export function withTimeout<T>(p: Promise<T>, ms: number, what: string): Promise<T> {
  return new Promise<T>((resolve, reject) => {
    const t = setTimeout(() => reject(new Error(`${what}: timed out after ${Math.round(ms / 1000)} s`)), ms)
    t.unref()
    p.then(
      (v) => {
        clearTimeout(t)
        resolve(v)
      },
      (err: unknown) => {
        clearTimeout(t)
        reject(err)
      },
    )
  })
}

/** Poll `fn` until it returns something truthy, or throw after `ms`. */
export async function until<T>(fn: () => T | Promise<T>, ms: number, what: string, everyMs = 20): Promise<NonNullable<T>> {
  const deadline = Date.now() + ms
  for (;;) {
    const v = await fn()
    if (v) return v as NonNullable<T>
    if (Date.now() > deadline) throw new Error(`${what}: not within ${Math.round(ms / 1000)} s`)
    await sleep(everyMs)
  }
}

let clkTck: number | undefined
function clockTicks(): number {
  if (clkTck === undefined) {
    try {
      clkTck = Number(execFileSync('getconf', ['CLK_TCK'], { encoding: 'utf8' }).trim()) || 100
    } catch {
      clkTck = 100
    }
  }
  return clkTck
}

export interface ProcSample {
  /** user + system CPU time of the process so far, ms */
  cpuMs: number
  /** of which in the kernel (system time), ms */
  sysMs: number
  /** resident set size, bytes */
  rss: number
  /** when the sample was taken (performance.now()) */
  at: number
}

/** CPU time (utime + stime, from /proc/<pid>/stat) and RSS (VmRSS, from /proc/<pid>/status) of a process. */
export function procSample(pid: number): ProcSample {
  const at = performance.now()
  const stat = readFileSync(`/proc/${pid}/stat`, 'utf8')
  // the command name (field 2) may contain spaces and parentheses: split after its closing ')'
  const fields = stat.slice(stat.lastIndexOf(')') + 2).split(' ')
  // fields[0] is field 3 (state); utime is field 14, stime field 15
  const ticks = Number(fields[11]) + Number(fields[12])
  const status = readFileSync(`/proc/${pid}/status`, 'utf8')
  const rssKb = Number(/VmRSS:\s+(\d+)\s+kB/.exec(status)?.[1] ?? NaN)
  return { cpuMs: (ticks * 1000) / clockTicks(), sysMs: (Number(fields[12]) * 1000) / clockTicks(), rss: rssKb * 1024, at }
}

/** CPU use between two samples, in percent of one core. */
export function cpuPercent(a: ProcSample, b: ProcSample): number {
  return ((b.cpuMs - a.cpuMs) / (b.at - a.at)) * 100
}

export interface MachineSample {
  busy: number
  total: number
}

/** Whole-machine CPU counters from /proc/stat (all cores). */
export function machineSample(): MachineSample {
  const line = readFileSync('/proc/stat', 'utf8').split('\n')[0] as string
  const v = line.trim().split(/\s+/).slice(1).map(Number)
  const idle = (v[3] ?? 0) + (v[4] ?? 0)
  const total = v.slice(0, 8).reduce((a, b) => a + b, 0)
  return { busy: total - idle, total }
}

/** Share of all cores' time that was busy between two samples, 0–100. */
export function machineBusy(a: MachineSample, b: MachineSample): number {
  return ((b.busy - a.busy) / Math.max(1, b.total - a.total)) * 100
}

/** Machine-wide count of UDP datagrams dropped because a socket's receive buffer was full (/proc/net/snmp). */
export function udpRcvbufErrors(): number {
  const lines = readFileSync('/proc/net/snmp', 'utf8').split('\n').filter((l) => l.startsWith('Udp:'))
  const names = (lines[0] ?? '').split(/\s+/)
  const values = (lines[1] ?? '').split(/\s+/)
  const i = names.indexOf('RcvbufErrors')
  return i > 0 ? Number(values[i]) : NaN
}
