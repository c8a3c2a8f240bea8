import { afterAll, beforeAll, describe, expect, it } from 'vitest'
import { devnet, devnetDir } from './helpers/devnet.js'
import { Agents } from './helpers/agents.js'
import { useProcs, tsArgs } from './helpers/procs.js'
import type { Provider } from '../src/provider/provider.js'
import { readFileSync } from 'node:fs'
import { DATA_PATH_NODE_FLAGS, DATA_PATH_SHEBANG } from '../src/cli/node-flags.js'

const procs = useProcs()
const BINS = ['dvm-agent', 'dvm-session', 'dvm-customer', 'dvm-wallet', 'dvm-devnet']

function lines(stdout: string): Array<Record<string, unknown>> {
  return stdout.split('\n').filter((l) => l.startsWith('{')).map((l) => JSON.parse(l) as Record<string, unknown>)
}

describe('every command', () => {
  it.each(BINS)('%s prints --help and refuses unknown flags', async (bin) => {
    const help = procs.spawn(process.execPath, tsArgs(`bin/${bin}.ts`, '--help'))
    expect((await help.exited).code).toBe(0)
    expect(help.stdout).toMatch(new RegExp(`Usage: ${bin}`))
    const bad = procs.spawn(process.execPath, tsArgs(`bin/${bin}.ts`, ...(bin === 'dvm-agent' ? ['--kind=5050'] : []), '--no-such-flag'))
    expect((await bad.exited).code).not.toBe(0)
    expect(bad.stderr).toMatch(/unknown option '--no-such-flag'/)
  })
})

describe('the data-path commands', () => {
  it.each(['dvm-agent', 'dvm-session'])('%s starts node with the heap sizes the tunnel needs', async (bin) => {
    // what npm's bin link executes: the shebang line
    expect(readFileSync(`bin/${bin}.ts`, 'utf8').split('\n')[0]).toBe(DATA_PATH_SHEBANG)
    const help = procs.spawn(process.execPath, [...DATA_PATH_NODE_FLAGS, ...tsArgs(`bin/${bin}.ts`, '--help')])
    expect((await help.exited).code, help.output()).toBe(0)
    expect(help.stdout).toMatch(new RegExp(`Usage: ${bin}`))
  })
})

describe('dvm-session', () => {
  let agents: Agents
  let provider: Provider
  beforeAll(async () => {
    agents = new Agents(devnet())
    provider = await agents.provider({ kinds: [5100, 5050] })
  })
  afterAll(async () => agents.cleanup())

  const session = (dataDir: string, ...extra: string[]) =>
    procs.spawn(
      process.execPath,
      tsArgs('bin/dvm-session.ts', `--devnet=${devnetDir()}`, `--data-dir=${dataDir}`, '--json', `--provider=${provider.opts.identity.npub}`, ...extra),
      { timeoutMs: 60_000, stdin: true },
    )

  it('--json --duration: one JSON line per event, and the final account matches the acknowledgements', async () => {
    const c = await agents.customer(50)
    const p = session(c.dataDir, '--port=0', '--duration=2', '--budget=40')
    const exit = await p.exited
    expect(exit.code, p.output()).toBe(0)
    const out = lines(p.stdout)
    const proxy = out.find((l) => l.type === 'proxy')
    expect(proxy?.port).toBeGreaterThan(0)
    const acks = out.filter((l) => l.type === 'ack')
    const end = out.find((l) => l.type === 'end')!
    expect(end.reason).toBe('duration reached')
    expect(end.spent).toBe(acks.length)
    expect(acks.length).toBeGreaterThanOrEqual(10) // 600 sats/minute for 2 s
    // a 2-second session locks only about what 2 seconds cost, not the whole budget
    const locked = out.filter((l) => l.type === 'locked').reduce((n, l) => n + (l.count as number), 0)
    expect(locked).toBeLessThanOrEqual(22)
    expect(end.balance).toBe(50 - locked)
  })

  it('the prompt answers status, skill, generate and quit', async () => {
    const c = await agents.customer(20)
    const p = session(c.dataDir, '--no-proxy', '--budget=20')
    await p.waitFor(/"type":"ack"/)
    p.write('status\n')
    await p.waitFor(/"type":"status"/)
    p.write('skill\n')
    await p.waitFor(/"type":"skill"/)
    p.write('generate hello paid world\n')
    await p.waitFor(/"type":"job","status":"success"/)
    p.write('frobnicate\n')
    await p.waitFor(/unknown command/)
    p.write('quit\n')
    const exit = await p.exited
    expect(exit.code, p.output()).toBe(0)
    const out = lines(p.stdout)
    const status = out.find((l) => l.type === 'status')!
    expect(status.spent).toBeGreaterThanOrEqual(1)
    expect((out.find((l) => l.type === 'skill')!.skill as { kinds: number[] }).kinds).toEqual([5100, 5050])
    expect(out.filter((l) => l.type === 'chunk').map((l) => l.data).join('')).toBe('hello paid world')
    expect(out.at(-1)).toMatchObject({ type: 'end', reason: 'customer quit' })
  })

  it('an empty wallet is a clear error, not a hang', async () => {
    const c = await agents.customer(0)
    const p = session(c.dataDir, '--no-proxy')
    const exit = await p.exited
    expect(exit.code).not.toBe(0)
    expect(p.stderr).toMatch(/the wallet has no spendable sats; fund it: dvm-wallet fund \d+ --data-dir=(\S+) --devnet=/)
    expect(p.stderr).toContain(`--data-dir=${c.dataDir} `)
  })
})
