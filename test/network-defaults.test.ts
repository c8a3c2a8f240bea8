import { afterEach, describe, expect, it } from 'vitest'
import { devnet } from './helpers/devnet.js'
import { Agents } from './helpers/agents.js'
import { tsArgs, useProcs } from './helpers/procs.js'
import { chooseAcceptedMints, chooseRelays, chooseWalletMint, PUBLIC_RELAYS } from '../src/cli/network.js'
import type { DevnetConfig } from '../src/config/devnet-config.js'

/**
 * What the commands use when the user names no relay and no mint: the
 * public-network defaults behind `npx dvm-session --budget=500`.
 */
const procs = useProcs()
let agents: Agents
afterEach(async () => agents?.cleanup())

const dev = { relays: ['ws://127.0.0.1:1'], mint: 'http://127.0.0.1:2' } as DevnetConfig

describe('relays', () => {
  it('come from --relay, then the devnet, then DVM_RELAYS, then the public defaults', () => {
    expect(chooseRelays(['wss://a.example'], dev, { DVM_RELAYS: 'wss://b.example' })).toEqual(['wss://a.example'])
    expect(chooseRelays([], dev, { DVM_RELAYS: 'wss://b.example' })).toEqual(dev.relays)
    expect(chooseRelays([], undefined, { DVM_RELAYS: 'wss://b.example, wss://c.example' })).toEqual(['wss://b.example', 'wss://c.example'])
    expect(chooseRelays([], undefined, {})).toEqual(PUBLIC_RELAYS)
  })
})

describe('mints', () => {
  it("a customer's wallet mint is remembered: once funded, commands use it without --mint", async () => {
    agents = new Agents(devnet())
    const c = await agents.customer(3)
    expect(await chooseWalletMint({ dataDir: c.dataDir, env: {} })).toBe(devnet().mint)
    // what the user says still wins
    expect(await chooseWalletMint({ flag: 'http://127.0.0.1:9/', dataDir: c.dataDir, env: {} })).toBe('http://127.0.0.1:9')
    expect(await chooseWalletMint({ dataDir: c.dataDir, env: { DVM_MINT: 'http://127.0.0.1:8' } })).toBe('http://127.0.0.1:8')
  })

  it('there is no default mint: with no wallet yet the error says how to fund one', async () => {
    agents = new Agents(devnet())
    const dir = await agents.dir('dvm-empty-')
    await expect(chooseWalletMint({ dataDir: dir, env: {} })).rejects.toThrow(`no wallet in ${dir} yet: fund one at a mint you trust (dvm-wallet fund 100 --mint=<url> --data-dir=${dir})`)
  })

  it('a provider accepts the mints it holds wallets at when none is named', async () => {
    agents = new Agents(devnet())
    const c = await agents.customer(1)
    expect(await chooseAcceptedMints([], undefined, c.dataDir, {})).toEqual([devnet().mint])
    // one spelling per mint, the one wallets use, so a customer's `includes` check cannot miss it
    expect(await chooseAcceptedMints(['https://Mint.example/', 'https://mint.example'], undefined, c.dataDir, {})).toEqual(['https://mint.example'])
    expect(await chooseAcceptedMints([], undefined, c.dataDir, { DVM_MINT: 'http://a.example,http://b.example' })).toEqual(['http://a.example', 'http://b.example'])
    expect(await chooseAcceptedMints([], undefined, await agents.dir('dvm-empty-'), {})).toEqual([])
  })

  it('dvm-customer --via=p2p with neither a mint nor a wallet stops at once and says what to do', async () => {
    agents = new Agents(devnet())
    const dir = await agents.dir('dvm-empty-')
    const env = { ...process.env }
    delete env.DVM_MINT
    delete env.DVM_DEVNET
    const p = procs.spawn(process.execPath, tsArgs('bin/dvm-customer.ts', '--via=p2p', `--data-dir=${dir}`, 'hello'), { env, timeoutMs: 30_000 })
    const exit = await p.exited
    expect(exit.code).toBe(1)
    expect(p.stderr).toContain(`no wallet in ${dir} yet: fund one at a mint you trust`)
  })
})
