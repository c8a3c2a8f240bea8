// The wallet against a real nutshell mint on loopback: the dvm-wallet CLI as
// child processes, 1-sat locking with DLEQ, crash recovery, melt and fees.
import { afterEach, beforeAll, describe, expect, it } from 'vitest'
import { randomBytes } from 'node:crypto'
import { existsSync, mkdtempSync, readFileSync, readdirSync, rmSync, statSync, writeFileSync } from 'node:fs'
import { tmpdir } from 'node:os'
import { join } from 'node:path'
import { pathToFileURL } from 'node:url'
import { createServer } from 'node:http'
import type { AddressInfo } from 'node:net'
import { CashuMint, MintOperationError, getDecodedToken, getEncodedToken, hasValidDleq, type MintKeys, type Proof } from '@cashu/cashu-ts'
import { bytesToHex } from '@noble/hashes/utils.js'
import { Wallet } from '../src/payments/wallet.js'
import { encodeToken } from '../src/payments/token.js'
import { randomOutput } from '../src/payments/lock.js'
import { parseP2PKSecret, pubkeyOf, withWitness } from '../src/payments/p2pk.js'
import { storePath, type Operation, type WalletFile } from '../src/payments/proof-store.js'
import { startMint, type RunningMint } from '../src/devnet/index.js'
import { devnet, devnetDir } from './helpers/devnet.js'
import { PROJECT_ROOT, tsArgs, useProcs } from './helpers/procs.js'

const procs = useProcs()
const CLI = join(PROJECT_ROOT, 'dist', 'bin', 'dvm-wallet.js')

let cleanups: Array<() => Promise<unknown> | unknown> = []
afterEach(async () => {
  for (const fn of cleanups.reverse()) await fn()
  cleanups = []
})

function tempDir(prefix = 'dvm-wallet-test-'): string {
  const dir = mkdtempSync(join(tmpdir(), prefix))
  cleanups.push(() => rmSync(dir, { recursive: true, force: true }))
  return dir
}

const mintUrl = () => devnet().mint
const privkey = () => bytesToHex(randomBytes(32))
const nowSec = () => Math.floor(Date.now() / 1000)

/** The built CLI must exist and be newer than its sources; CI builds first, a dev run may not have. */
beforeAll(async () => {
  const sources = [join(PROJECT_ROOT, 'bin', 'dvm-wallet.ts'), ...readdirSync(join(PROJECT_ROOT, 'src', 'payments')).map((f) => join(PROJECT_ROOT, 'src', 'payments', f))]
  const newest = Math.max(...sources.map((f) => statSync(f).mtimeMs))
  if (existsSync(CLI) && statSync(CLI).mtimeMs >= newest) return
  const tsc = procs.spawn(process.execPath, [join(PROJECT_ROOT, 'node_modules', 'typescript', 'bin', 'tsc'), '-p', 'tsconfig.json'], { timeoutMs: 170_000 })
  await tsc.exited // tsc emits even if someone else's file has a type error; what matters is our output
  if (!existsSync(CLI) || statSync(CLI).mtimeMs < newest) throw new Error(`could not build ${CLI}:\n${tsc.output()}`)
}, 180_000)

interface CliResult {
  code: number | null
  json: Record<string, unknown>
  stdout: string
  stderr: string
}

/** Run the built dvm-wallet against the devnet (its default mint), with --json unless told otherwise. */
async function cli(dataDir: string, args: string[], json = true): Promise<CliResult> {
  const env = { ...process.env }
  delete env.DVM_MINT
  const p = procs.spawn(process.execPath, [CLI, ...args, '--data-dir', dataDir, '--devnet', devnetDir(), ...(json ? ['--json'] : [])], { env, timeoutMs: 45_000 })
  const exit = await p.exited
  const lines = p.stdout.trim().split('\n')
  let parsed: Record<string, unknown> = {}
  if (json) {
    expect(lines, `one JSON object on stdout from dvm-wallet ${args.join(' ')}\n${p.output()}`).toHaveLength(1)
    parsed = JSON.parse(lines[0]!) as Record<string, unknown>
  }
  return { code: exit.code, json: parsed, stdout: p.stdout, stderr: p.stderr }
}

async function newWallet(dataDir: string, opts: Partial<ConstructorParameters<typeof Wallet>[0]> = {}): Promise<Wallet> {
  const w = new Wallet({ dataDir, mintUrl: mintUrl(), ...opts })
  await w.load()
  return w
}

async function keysetOf(url: string, proof: Proof): Promise<MintKeys> {
  const { keysets } = await new CashuMint(url).getKeys(proof.id)
  return keysets.find((k) => k.id === proof.id)!
}

function readStore(dataDir: string, url = mintUrl()): WalletFile {
  return JSON.parse(readFileSync(storePath(dataDir, url), 'utf8')) as WalletFile
}

describe('dvm-wallet CLI', () => {
  it('fund 100, send 30, receive: ecash moves between data dirs and both balances survive a restart', async () => {
    const alice = tempDir()
    const bob = tempDir()

    const fund = await cli(alice, ['fund', '100'])
    expect(fund.code, fund.stderr).toBe(0)
    expect(fund.json).toMatchObject({ type: 'fund', amount: 100, balance: 100, pending: 0, mint: mintUrl() })
    expect(fund.stderr).toMatch(/pay lnbc/) // the invoice is shown before the payment, even with --json

    const send = await cli(alice, ['send', '30'])
    expect(send.code, send.stderr).toBe(0)
    expect(send.json).toMatchObject({ type: 'send', amount: 30, balance: 70 })
    const token = send.json.token as string
    expect(token.startsWith('cashuB')).toBe(true)
    const decoded = getDecodedToken(token)
    expect(decoded.proofs.reduce((s, p) => s + p.amount, 0)).toBe(30)
    const keys = await keysetOf(mintUrl(), decoded.proofs[0]!)
    for (const p of decoded.proofs) expect(hasValidDleq(p, keys)).toBe(true)

    const recv = await cli(bob, ['receive', token])
    expect(recv.code, recv.stderr).toBe(0)
    expect(recv.json).toMatchObject({ type: 'receive', amount: 30, fee: 0, balance: 30 })

    // fresh processes read what the earlier ones wrote
    expect((await cli(alice, ['balance'])).json).toMatchObject({ type: 'balance', balance: 70, pending: 0 })
    expect((await cli(bob, ['balance'])).json).toMatchObject({ type: 'balance', balance: 30, pending: 0 })
    // human output; global flags before the subcommand work too
    const human = await cli(bob, ['--mint', mintUrl(), 'balance'], false)
    expect(human.stdout).toMatch(/^30 sats at http:\/\/127\.0\.0\.1:\d+\n$/)
    expect(readStore(bob).proofs.filter((p) => p.state === 'unspent').reduce((s, p) => s + p.proof.amount, 0)).toBe(30)
    // funding into a pipe: the invoice as text, no QR code drawn into the log
    const funded = await cli(bob, ['fund', '2'], false)
    expect(funded.stdout).toMatch(/Pay this Lightning invoice to add 2 sats[^]*\nlnbc/)
    expect(funded.stdout).not.toMatch(/[▀▄█]/)
  })

  it('refuses a token received twice, and one already spent by another wallet; balances unchanged', async () => {
    const alice = tempDir()
    const bob = tempDir()
    const carol = tempDir()
    expect((await cli(alice, ['fund', '40'])).code).toBe(0)
    const token = (await cli(alice, ['send', '25'])).json.token as string
    expect((await cli(bob, ['receive', token])).json).toMatchObject({ amount: 25, balance: 25 })

    const again = await cli(bob, ['receive', token])
    expect(again.code).toBe(1)
    expect(again.json).toMatchObject({ type: 'error' })
    expect(again.json.error).toMatch(/already received by this wallet/)
    expect(again.stderr).toMatch(/^dvm-wallet: this token was already received/)

    const stolen = await cli(carol, ['receive', token])
    expect(stolen.code).toBe(1)
    expect(stolen.json.error).toMatch(/already spent/)
    // one clear sentence, not first a note about an "interrupted receive" the user never interrupted
    expect(stolen.stderr).toMatch(/^dvm-wallet: this token was already spent/)

    expect((await cli(bob, ['balance'])).json).toMatchObject({ balance: 25, pending: 0 })
    expect((await cli(carol, ['balance'])).json).toMatchObject({ balance: 0, pending: 0 })
    expect(readStore(carol).ops).toHaveLength(0) // the failed swap left no journal behind
  })

  it('accepts V3 tokens, refuses other mints clearly, rejects unknown flags', async () => {
    const alice = tempDir()
    const bob = tempDir()
    const a = await newWallet(alice)
    await a.fund(20, { pollMs: 50 })
    const v3 = getEncodedToken(getDecodedToken(await a.send(5)), { version: 3 })
    expect(v3.startsWith('cashuA')).toBe(true)
    expect((await cli(bob, ['receive', v3])).json).toMatchObject({ amount: 5, balance: 5 })

    const foreign = getEncodedToken({ ...getDecodedToken(await a.send(3)), mint: 'http://127.0.0.1:9' })
    const refused = await cli(bob, ['receive', foreign])
    expect(refused.code).toBe(1)
    expect(refused.json.error).toMatch(/this token is from mint http:\/\/127\.0\.0\.1:9, but this wallet uses http:\/\/127\.0\.0\.1:\d+/)
    expect((await cli(bob, ['balance'])).json).toMatchObject({ balance: 5 })

    const bogus = await cli(bob, ['balance', '--bogus'], false)
    expect(bogus.code).toBe(1)
    expect(bogus.stderr).toMatch(/unknown option '--bogus'/)
    const bad = await cli(bob, ['send', '-3'], false)
    expect(bad.code).toBe(1)
    const help = await cli(bob, ['--help'], false)
    expect(help.code).toBe(0)
    expect(help.stdout).toMatch(/balance[\s\S]*fund[\s\S]*send[\s\S]*receive[\s\S]*melt/)
  })
})

describe('locking 1-sat proofs for a payee', () => {
  it('one swap turns 100 sats into 100 proofs of 1 sat locked to the key, each with a DLEQ proof that verifies', async () => {
    const calls: Operation[] = []
    const w = await newWallet(tempDir(), { hooks: { afterMintCall: (op) => void calls.push(op) } })
    await w.fund(150, { pollMs: 50 })
    calls.length = 0
    const payeeSk = privkey()
    const refundSk = privkey()
    const locktime = nowSec() + 3600
    const locked = await w.lockForPayee({ amount: 100, payeePubkey: pubkeyOf(payeeSk), locktime, refundPubkey: pubkeyOf(refundSk) })

    expect(calls.map((op) => op.kind)).toEqual(['swap']) // one mint round trip
    expect(locked).toHaveLength(100)
    expect(new Set(locked.map((p) => p.secret)).size).toBe(100)
    const keys = await keysetOf(mintUrl(), locked[0]!)
    for (const p of locked) {
      expect(p.amount).toBe(1)
      const parsed = parseP2PKSecret(p.secret)
      expect(parsed.ok).toBe(true)
      if (parsed.ok) expect(parsed.secret).toMatchObject({ pubkey: pubkeyOf(payeeSk), locktime, refundKeys: [pubkeyOf(refundSk)], sigflag: 'SIG_INPUTS' })
      expect(p.dleq?.r).toMatch(/^[0-9a-f]{64}$/)
      expect(hasValidDleq(p, keys)).toBe(true)
    }
    expect(await w.balance()).toEqual({ balance: 50, pending: 100, locked: 100 })
    expect(await w.lockedProofs({ payeePubkey: pubkeyOf(payeeSk) })).toHaveLength(100)

    // the lock is real: before locktime the refund key cannot spend, the payee can
    const mint = new CashuMint(mintUrl())
    const out = randomOutput(2, locked[0]!.id)
    const strip = (p: Proof): Proof => ({ id: p.id, amount: p.amount, secret: p.secret, C: p.C, ...(p.witness ? { witness: p.witness } : {}) })
    const pair = locked.slice(0, 2)
    await expect(mint.swap({ inputs: pair.map((p) => strip(withWitness(p, refundSk))), outputs: [{ amount: 2, id: out.id, B_: out.B_ }] })).rejects.toBeInstanceOf(MintOperationError)
    const { signatures } = await mint.swap({ inputs: pair.map((p) => strip(withWitness(p, payeeSk))), outputs: [{ amount: 2, id: out.id, B_: out.B_ }] })
    expect(signatures).toHaveLength(1)

    expect(await w.markLockedPaid(pair)).toBe(2)
    expect(await w.balance()).toEqual({ balance: 50, pending: 98, locked: 98 })
  })

  it('after locktime the refund key takes back what the payee did not redeem', async () => {
    const w = await newWallet(tempDir())
    await w.fund(20, { pollMs: 50 })
    const payeeSk = privkey()
    const refundSk = privkey()
    const locktime = nowSec() + 2
    const locked = await w.lockForPayee({ amount: 10, payeePubkey: pubkeyOf(payeeSk), locktime, refundPubkey: pubkeyOf(refundSk) })
    await expect(w.reclaimLocked(locked, refundSk)).rejects.toThrow(/locked to the payee until/)
    // the payee redeems 3 of them
    const out = randomOutput(2, locked[0]!.id)
    const out1 = randomOutput(1, locked[0]!.id)
    await new CashuMint(mintUrl()).swap({
      inputs: locked.slice(0, 3).map((p) => ({ id: p.id, amount: p.amount, secret: p.secret, C: p.C, witness: withWitness(p, payeeSk).witness! })),
      outputs: [out, out1].map((o) => ({ amount: o.amount, id: o.id, B_: o.B_ })),
    })
    await new Promise((r) => setTimeout(r, Math.max(0, (locktime + 1) * 1000 - Date.now()) + 200))
    await expect(w.reclaimLocked(locked, privkey())).rejects.toThrow(/not the refund key/)
    const res = await w.reclaimLocked(locked, refundSk)
    expect(res).toEqual({ reclaimed: 7, alreadySpent: 3, stillPending: 0 })
    expect(await w.balance()).toEqual({ balance: 17, pending: 0, locked: 0 })
  })

  it('the payee receives proofs locked to its key with that key; without it, or with another, nothing changes', async () => {
    const w = await newWallet(tempDir())
    await w.fund(10, { pollMs: 50 })
    const payeeSk = privkey()
    const token = encodeToken(mintUrl(), await w.lockForPayee({ amount: 6, payeePubkey: pubkeyOf(payeeSk), locktime: nowSec() + 600, refundPubkey: pubkeyOf(privkey()) }))
    const payee = await newWallet(tempDir())
    await expect(payee.receive(token)).rejects.toThrow(/P2PK-locked proofs; only the holder of the lock key/)
    await expect(payee.receive(token, { privkey: privkey() })).rejects.toThrow(/locked to another key/)
    expect(await payee.balance()).toEqual({ balance: 0, pending: 0, locked: 0 })
    expect(await payee.receive(token, { privkey: payeeSk })).toMatchObject({ amount: 6 })
    expect(await payee.balance()).toEqual({ balance: 6, pending: 0, locked: 0 })
    // spent now: the same token cannot be taken twice
    await expect(payee.receive(token, { privkey: payeeSk })).rejects.toThrow(/already received by this wallet/)
  })

  it('splits a lock larger than the mint allows per request into a few swaps', async () => {
    const calls: Operation[] = []
    const w = await newWallet(tempDir(), { maxBatch: 30, hooks: { afterMintCall: (op) => void calls.push(op) } })
    await w.fund(80, { pollMs: 50 })
    calls.length = 0
    const locked = await w.lockForPayee({ amount: 70, payeePubkey: pubkeyOf(privkey()), locktime: nowSec() + 600, refundPubkey: pubkeyOf(privkey()) })
    expect(locked).toHaveLength(70)
    expect(calls.length).toBe(3)
    for (const op of calls) expect(op.outputs.length).toBeLessThanOrEqual(30)
    expect(await w.balance()).toEqual({ balance: 10, pending: 70, locked: 70 })
  })

  it('two wallet objects on one data dir never spend the same proof or count one twice', async () => {
    const dir = tempDir()
    const a = await newWallet(dir)
    const b = await newWallet(dir)
    await a.fund(100, { pollMs: 50 })
    const tokens = await Promise.all([a.send(10), b.send(10), a.send(7), b.send(3)])
    const secrets = tokens.flatMap((t) => getDecodedToken(t).proofs.map((p) => p.secret))
    expect(new Set(secrets).size).toBe(secrets.length)
    expect(await a.balance()).toEqual({ balance: 70, pending: 0, locked: 0 })
    expect(await b.balance()).toEqual({ balance: 70, pending: 0, locked: 0 })
  })
})

describe('crash recovery', () => {
  /** Run `action` with a Wallet in a child process that SIGKILLs itself when `hook` fires for an operation of `kind`. */
  async function crashDuring(dataDir: string, hook: 'beforeMintCall' | 'afterMintCall', kind: Operation['kind'], action: string): Promise<void> {
    const script = join(tempDir('dvm-wallet-crash-'), 'crash.mts')
    const walletModule = pathToFileURL(join(PROJECT_ROOT, 'src', 'payments', 'wallet.ts')).href
    writeFileSync(script, `
      import { Wallet } from ${JSON.stringify(walletModule)}
      const w = new Wallet({ dataDir: ${JSON.stringify(dataDir)}, mintUrl: ${JSON.stringify(mintUrl())},
        hooks: { ${hook}: (op) => { if (op.kind === ${JSON.stringify(kind)}) process.kill(process.pid, 'SIGKILL') } } })
      await w.load()
      await w.${action}
      console.log('not killed')
    `)
    const child = procs.spawn(process.execPath, tsArgs(script), { timeoutMs: 30_000 })
    const exit = await child.exited
    expect(exit.signal, child.output()).toBe('SIGKILL')
  }

  const crashDuringLock = (dataDir: string, hook: 'beforeMintCall' | 'afterMintCall', payee: string, refund: string) =>
    crashDuring(dataDir, hook, 'swap', `lockForPayee({ amount: 100, payeePubkey: ${JSON.stringify(payee)}, locktime: ${nowSec() + 3600}, refundPubkey: ${JSON.stringify(refund)} })`)

  it('an invoice paid while the wallet was down is minted by the next load()', async () => {
    const dir = tempDir()
    await crashDuring(dir, 'beforeMintCall', 'mint', 'fund(64, { pollMs: 50 })')
    expect(readStore(dir).ops.map((op) => op.kind)).toEqual(['mint'])
    const w = await newWallet(dir)
    expect(readStore(dir).ops).toHaveLength(0)
    expect(await w.balance()).toEqual({ balance: 64, pending: 0, locked: 0 })
  })

  it('a lock swap the mint carried out before the process died is recovered on load()', async () => {
    const dir = tempDir()
    await (await newWallet(dir)).fund(100, { pollMs: 50 })
    const payee = pubkeyOf(privkey())
    await crashDuringLock(dir, 'afterMintCall', payee, pubkeyOf(privkey()))

    const journal = readStore(dir)
    expect(journal.ops.map((op) => op.kind)).toEqual(['swap'])
    expect(journal.proofs.filter((p) => p.state === 'pending').length).toBeGreaterThan(0)

    const w = await newWallet(dir)
    expect(readStore(dir).ops).toHaveLength(0)
    const locked = await w.lockedProofs({ payeePubkey: payee })
    expect(locked).toHaveLength(100)
    const keys = await keysetOf(mintUrl(), locked[0]!.proof)
    for (const l of locked) {
      expect(l.proof.amount).toBe(1)
      expect(hasValidDleq(l.proof, keys)).toBe(true)
    }
    expect(await w.balance()).toEqual({ balance: 0, pending: 100, locked: 100 })
  })

  it('a locked token received by a process that died after the mint signed is in the payee\'s wallet on load()', async () => {
    const payer = await newWallet(tempDir())
    await payer.fund(5, { pollMs: 50 })
    const payeeSk = privkey()
    const token = encodeToken(mintUrl(), await payer.lockForPayee({ amount: 5, payeePubkey: pubkeyOf(payeeSk), locktime: nowSec() + 600, refundPubkey: pubkeyOf(privkey()) }))
    const dir = tempDir()
    await crashDuring(dir, 'afterMintCall', 'swap', `receive(${JSON.stringify(token)}, { privkey: ${JSON.stringify(payeeSk)} })`)
    expect(readStore(dir).ops.map((op) => op.kind)).toEqual(['swap'])
    const w = await newWallet(dir)
    expect(readStore(dir).ops).toHaveLength(0)
    expect(await w.balance()).toEqual({ balance: 5, pending: 0, locked: 0 })
  })

  it('a lock swap that never reached the mint gives the inputs back on load()', async () => {
    const dir = tempDir()
    await (await newWallet(dir)).fund(100, { pollMs: 50 })
    await crashDuringLock(dir, 'beforeMintCall', pubkeyOf(privkey()), pubkeyOf(privkey()))
    expect(readStore(dir).ops).toHaveLength(1)

    const w = await newWallet(dir)
    expect(readStore(dir).ops).toHaveLength(0)
    expect(await w.balance()).toEqual({ balance: 100, pending: 0, locked: 0 })
    expect(await w.lockedProofs()).toHaveLength(0)
    // and the proofs really are spendable
    expect(getDecodedToken(await w.send(100)).proofs.reduce((s, p) => s + p.amount, 0)).toBe(100)
  })
})

type Mode = 'pass' | 'lose-swap-answer' | 'hold-swap' | 'hold-melt' | 'unpaid-quotes' | 'down'
interface FlakyMint {
  url: string
  mode: { value: Mode }
  /** drop this many signatures from each NUT-09 restore answer */
  trimRestore: { value: number }
  /** deliver the request held back in a 'hold-…' mode */
  landHeld: () => Promise<void>
}
/** the request each 'hold-…' mode holds back */
const HELD: Partial<Record<Mode, string>> = { 'hold-swap': '/v1/swap', 'hold-melt': '/v1/melt/bolt11' }

/**
 * An HTTP relay to the devnet mint that can drop the swap answer (after the
 * mint acted), hold a swap or melt back (the wallet times out; it reaches the
 * mint only on landHeld()), report every mint quote unpaid (a payer who has not
 * paid yet), trim restore answers, or refuse everything.
 */
async function flakyMint(): Promise<FlakyMint> {
  const mode = { value: 'pass' as Mode }
  const trimRestore = { value: 0 }
  let held: { url: string; body: Buffer } | undefined
  const server = createServer(async (req, res) => {
    if (mode.value === 'down') return void req.socket.destroy()
    const chunks: Buffer[] = []
    for await (const c of req) chunks.push(c as Buffer)
    if (HELD[mode.value] === req.url && !held) {
      // one at a time, until landHeld()
      held = { url: req.url!, body: Buffer.concat(chunks) }
      return // no answer: the wallet gives up waiting
    }
    const upstream = await fetch(mintUrl() + req.url, {
      method: req.method,
      headers: { 'content-type': 'application/json' },
      ...(req.method === 'POST' ? { body: Buffer.concat(chunks) } : {}),
    })
    let body = Buffer.from(await upstream.arrayBuffer())
    if (mode.value === 'lose-swap-answer' && req.url === '/v1/swap') return void req.socket.destroy()
    if (mode.value === 'unpaid-quotes' && req.url?.startsWith('/v1/mint/quote/bolt11') && upstream.ok) {
      body = Buffer.from(JSON.stringify({ ...(JSON.parse(body.toString()) as object), state: 'UNPAID', paid: false }))
    }
    if (trimRestore.value > 0 && req.url === '/v1/restore') {
      const r = JSON.parse(body.toString()) as { outputs: unknown[]; signatures: unknown[]; promises?: unknown[] }
      const n = trimRestore.value
      body = Buffer.from(JSON.stringify({ outputs: r.outputs.slice(n), signatures: r.signatures.slice(n), ...(r.promises ? { promises: r.promises.slice(n) } : {}) }))
    }
    res.writeHead(upstream.status, { 'content-type': 'application/json' }).end(body)
  })
  await new Promise<void>((r) => server.listen(0, '127.0.0.1', r))
  cleanups.push(() => new Promise((r) => server.close(r)))
  cleanups.push(() => server.closeAllConnections())
  const landHeld = async () => {
    if (!held) throw new Error('no request was held back')
    const r = await fetch(mintUrl() + held.url, { method: 'POST', headers: { 'content-type': 'application/json' }, body: held.body })
    held = undefined
    expect(r.status).toBe(200)
  }
  return { url: `http://127.0.0.1:${(server.address() as AddressInfo).port}`, mode, trimRestore, landHeld }
}

describe('a flaky connection to the mint', () => {
  it('a lock swap whose answer is lost still returns its proofs (NUT-09 restore)', async () => {
    const mint = await flakyMint()
    const w = new Wallet({ dataDir: tempDir(), mintUrl: mint.url })
    await w.load()
    await w.fund(30, { pollMs: 50 })
    mint.mode.value = 'lose-swap-answer'
    const locked = await w.lockForPayee({ amount: 20, payeePubkey: pubkeyOf(privkey()), locktime: nowSec() + 600, refundPubkey: pubkeyOf(privkey()) })
    expect(locked).toHaveLength(20)
    expect(locked.every((p) => p.dleq)).toBe(true)
    expect(await w.balance()).toEqual({ balance: 10, pending: 20, locked: 20 })
  })

  it('with the mint down, a send fails clearly, the sats stay pending, and are settled once it is back', async () => {
    const mint = await flakyMint()
    const w = new Wallet({ dataDir: tempDir(), mintUrl: mint.url, timeoutMs: 2000 })
    await w.load()
    await w.fund(30, { pollMs: 50 })
    mint.mode.value = 'down'
    await expect(w.send(7)).rejects.toThrow(/could not reach the mint .* stay pending in the journal/)
    const during = await w.balance()
    expect(during.pending).toBeGreaterThan(0) // the 8-sat proof picked for the swap
    expect(during.balance + during.pending).toBe(30)
    expect(await w.recover()).toEqual({ resolved: 0, unsettled: 1 }) // still down
    mint.mode.value = 'pass'
    expect(await w.recover()).toEqual({ resolved: 1, unsettled: 0 })
    expect(await w.balance()).toEqual({ balance: 30, pending: 0, locked: 0 })
  })
  it('a swap that timed out but reached the mint later is recovered on the next start', async () => {
    const mint = await flakyMint()
    const dir = tempDir()
    const w = new Wallet({ dataDir: dir, mintUrl: mint.url, timeoutMs: 1500 })
    await w.load()
    await w.fund(30, { pollMs: 50 }) // 16 + 8 + 4 + 2
    mint.mode.value = 'hold-swap'
    await expect(w.send(7)).rejects.toThrow(/no answer within/)
    mint.mode.value = 'pass'
    await mint.landHeld() // the mint carries the swap out after all

    const w2 = new Wallet({ dataDir: dir, mintUrl: mint.url })
    await w2.load()
    expect(await w2.balance()).toEqual({ balance: 30, pending: 0, locked: 0 })
    // every sat it counts is real: all 30 reach another wallet
    const other = new Wallet({ dataDir: tempDir(), mintUrl: mint.url })
    await other.load()
    expect(await other.receive(await w2.send(30))).toMatchObject({ amount: 30 })
  })

  it('a late swap is traced when its inputs are spent again in the same run; an unspent one is forgotten only after the grace', async () => {
    const mint = await flakyMint()
    const dir = tempDir()
    const w = new Wallet({ dataDir: dir, mintUrl: mint.url, timeoutMs: 1500 })
    await w.load()
    await w.fund(30, { pollMs: 50 }) // 16 + 8 + 4 + 2
    mint.mode.value = 'hold-swap'
    await expect(w.send(7)).rejects.toThrow(/spendable again/)
    expect(readStore(dir, mint.url).retired).toHaveLength(1)
    mint.mode.value = 'pass'
    expect(await w.recover()).toEqual({ resolved: 0, unsettled: 0 }) // inputs still unspent, within the grace: kept
    expect(readStore(dir, mint.url).retired).toHaveLength(1)
    await mint.landHeld()
    // sending 8 picks the 8-sat proof, which the late swap spent: the send is refused by the
    // mint, the late swap's proofs are taken in, and the send goes through on a second plan
    const other = new Wallet({ dataDir: tempDir(), mintUrl: mint.url })
    await other.load()
    expect(await other.receive(await w.send(8))).toMatchObject({ amount: 8 })
    expect(await w.balance()).toEqual({ balance: 22, pending: 0, locked: 0 })
    expect(readStore(dir, mint.url).retired).toHaveLength(0)
    expect(await other.receive(await w.send(22))).toMatchObject({ amount: 22 })

    // a swap that never lands: once the grace is over and its inputs are unspent, it is forgotten
    const v = new Wallet({ dataDir: tempDir(), mintUrl: mint.url, timeoutMs: 1500, retiredGraceMs: 0 })
    await v.load()
    await v.fund(30, { pollMs: 50 })
    mint.mode.value = 'hold-swap'
    await expect(v.send(7)).rejects.toThrow(/no answer within/)
    mint.mode.value = 'pass'
    expect(readStore(v.dataDir, mint.url).retired).toHaveLength(1)
    await v.recover()
    expect(readStore(v.dataDir, mint.url).retired).toHaveLength(0)
    expect(await v.balance()).toEqual({ balance: 30, pending: 0, locked: 0 })
  })

  it('fund stops waiting for an unpaid invoice when its signal aborts; the quote stays journaled and is minted once paid', async () => {
    const mint = await flakyMint()
    const dir = tempDir()
    const w = new Wallet({ dataDir: dir, mintUrl: mint.url })
    await w.load()
    mint.mode.value = 'unpaid-quotes' // nobody has paid yet
    const ac = new AbortController()
    const started = Date.now()
    // a long poll interval: only an abort that cuts the wait short ends this quickly
    const funding = w.fund(16, { pollMs: 60_000, signal: ac.signal, onInvoice: () => void setTimeout(() => ac.abort(), 100) })
    await expect(funding).rejects.toMatchObject({ name: 'AbortError', message: expect.stringMatching(/^stopped waiting for the invoice \(aborted by the caller\); quote \S+ is kept/) })
    expect(Date.now() - started).toBeLessThan(5_000)
    expect(readStore(dir, mint.url).ops.map((op) => op.kind)).toEqual(['mint'])
    expect(await w.balance()).toEqual({ balance: 0, pending: 0, locked: 0 })
    // the invoice is paid after all (FakeWallet did): the next recovery mints it
    mint.mode.value = 'pass'
    expect(await w.recover()).toEqual({ resolved: 1, unsettled: 0 })
    expect(await w.balance()).toEqual({ balance: 16, pending: 0, locked: 0 })
    // aborted before it starts: the mint is not even asked for an invoice
    await expect(w.fund(8, { signal: AbortSignal.abort() })).rejects.toMatchObject({ name: 'AbortError', message: expect.stringMatching(/nothing was created/) })
    expect(readStore(dir, mint.url).ops).toHaveLength(0)
  })

  it('a partial NUT-09 restore settles what came back and keeps the rest pending until the mint returns it', async () => {
    const mint = await flakyMint()
    const w = new Wallet({ dataDir: tempDir(), mintUrl: mint.url })
    await w.load()
    await w.fund(30, { pollMs: 50 })
    mint.mode.value = 'lose-swap-answer'
    mint.trimRestore.value = 1
    // send 7 from the 8-sat proof: four outputs (4, 2, 1 to send, 1 kept); restore returns three
    await expect(w.send(7)).rejects.toThrow(/only 3 of 4/)
    const mid = await w.balance()
    expect(mid.pending).toBeGreaterThan(0)
    expect(mid.balance + mid.pending).toBe(30)
    mint.mode.value = 'pass'
    mint.trimRestore.value = 0
    expect(await w.recover()).toEqual({ resolved: 1, unsettled: 0 })
    expect(await w.balance()).toEqual({ balance: 30, pending: 0, locked: 0 })
  })
})

describe('bad input from a token or from the mint', () => {
  /** A V3 token (plain JSON) with whatever proofs we like: what a careless or hostile sender could paste. */
  const v3 = (proofs: Array<Record<string, unknown>>) =>
    'cashuA' + Buffer.from(JSON.stringify({ token: [{ mint: mintUrl(), proofs }], unit: 'sat' })).toString('base64url')

  it('receive refuses absurd, fractional, non-power-of-two amounts and oversized tokens before touching the mint', async () => {
    const dir = tempDir()
    const mintCalls: Operation[] = []
    const w = await newWallet(dir, { hooks: { beforeMintCall: (op) => void mintCalls.push(op) } })
    await w.fund(10, { pollMs: 50 })
    mintCalls.length = 0
    const before = readFileSync(storePath(dir, mintUrl()), 'utf8')
    const { keysets } = await new CashuMint(mintUrl()).getKeySets()
    const id = keysets.find((k) => k.active && k.unit === 'sat')!.id
    const proof = (amount: number) => ({ id, amount, secret: bytesToHex(randomBytes(32)), C: '02' + bytesToHex(randomBytes(32)) })
    const cases: Array<[string, RegExp]> = [
      [v3([proof(3)]), /power of two/],
      [v3([proof(0.5)]), /whole number|malformed/],
      [v3([proof(2 ** 51)]), /more than .*bitcoin/],
      [v3([proof(2 ** 50), proof(2 ** 50)]), /more than .*bitcoin/],
      [v3(Array.from({ length: 1001 }, () => proof(1))), /at most 1000 proofs/],
      ['cashuA' + 'A'.repeat(3 << 20), /too long/],
    ]
    for (const [token, message] of cases) await expect(w.receive(token)).rejects.toThrow(message)
    expect(mintCalls).toHaveLength(0)
    expect(await w.balance()).toEqual({ balance: 10, pending: 0, locked: 0 })
    expect(readFileSync(storePath(dir, mintUrl()), 'utf8')).toBe(before)
  })

  it('refuses a mint response larger than the cap, clearly, instead of reading it all', async () => {
    const server = createServer((_req, res) => {
      res.writeHead(200, { 'content-type': 'application/json' })
      res.end('{"keysets":[],"pad":"' + 'x'.repeat(6 << 20) + '"}')
    })
    await new Promise<void>((r) => server.listen(0, '127.0.0.1', r))
    cleanups.push(() => new Promise((r) => server.close(r)))
    cleanups.push(() => server.closeAllConnections())
    const w = new Wallet({ dataDir: tempDir(), mintUrl: `http://127.0.0.1:${(server.address() as AddressInfo).port}` })
    await w.load()
    await expect(w.fund(10)).rejects.toThrow(/larger than 4 MiB/)
  })
})

describe('melt and fees', () => {
  /** A second mint (with input fees) supplies a FakeWallet invoice the devnet mint pays "externally". */
  let feeMint: RunningMint
  beforeAll(async () => {
    const dir = mkdtempSync(join(tmpdir(), 'dvm-wallet-feemint-'))
    feeMint = await startMint({ dataDir: dir, env: { MINT_INPUT_FEE_PPK: '100' } })
    return async () => {
      await feeMint.stop()
      rmSync(dir, { recursive: true, force: true })
    }
  }, 60_000)

  it('melt pays a FakeWallet invoice and lowers the balance by amount + fee', async () => {
    const dir = tempDir()
    expect((await cli(dir, ['fund', '100'])).code).toBe(0)
    const invoice = await new CashuMint(feeMint.url).createMintQuote({ unit: 'sat', amount: 21 })
    const melt = await cli(dir, ['melt', invoice.request])
    expect(melt.code, melt.stderr).toBe(0)
    expect(melt.json).toMatchObject({ type: 'melt', paid: true, state: 'PAID', amount: 21 })
    const fee = melt.json.feePaid as number
    expect(fee).toBeGreaterThanOrEqual(0)
    expect(melt.json.balance).toBe(100 - 21 - fee)
    expect((await cli(dir, ['balance'])).json).toMatchObject({ balance: 100 - 21 - fee, pending: 0 })
  })

  it('a melt whose answer is lost while its quote reads UNPAID keeps its change outputs; if it lands, the inputs are spent and the change restored', async () => {
    const mint = await flakyMint()
    const invoice = async (sats: number) => (await new CashuMint(feeMint.url).createMintQuote({ unit: 'sat', amount: sats })).request
    const heldMelt = async (w: Wallet, request: string) => {
      mint.mode.value = 'hold-melt'
      await expect(w.melt(request)).rejects.toThrow(/no answer within[\s\S]*invoice has not been paid so far and your sats are spendable again/)
      mint.mode.value = 'pass'
      expect(readStore(w.dataDir, mint.url).retired.map((r) => r.op.kind)).toEqual(['melt'])
      expect(await w.balance()).toEqual({ balance: 30, pending: 0, locked: 0 })
    }
    const other = new Wallet({ dataDir: tempDir(), mintUrl: mint.url })
    await other.load()

    // the late melt paid the invoice: paying it again settles that melt instead of paying twice
    const a = new Wallet({ dataDir: tempDir(), mintUrl: mint.url, meltTimeoutMs: 1500 })
    await a.load()
    await a.fund(30, { pollMs: 50 }) // 16 + 8 + 4 + 2; 5 sats + fee reserve take the 8
    const inv = await invoice(5)
    await heldMelt(a, inv)
    await mint.landHeld()
    const again = await a.melt(inv)
    expect(again).toMatchObject({ paid: true, state: 'PAID', amount: 5 })
    const left = 30 - 5 - again.feePaid
    expect(left).toBeGreaterThan(22) // more than the untouched 16 + 4 + 2: the change came back
    expect(await a.balance()).toEqual({ balance: left, pending: 0, locked: 0 })
    expect(readStore(a.dataDir, mint.url).retired).toHaveLength(0)
    expect(await other.receive(await a.send(left))).toMatchObject({ amount: left }) // every sat it counts is real

    // the late melt's inputs turn up spent when a send picks them: the melt is settled, the send planned again
    const b = new Wallet({ dataDir: tempDir(), mintUrl: mint.url, meltTimeoutMs: 1500 })
    await b.load()
    await b.fund(30, { pollMs: 50 })
    await heldMelt(b, await invoice(5))
    await mint.landHeld()
    expect(await other.receive(await b.send(8))).toMatchObject({ amount: 8 })
    expect(await b.balance()).toEqual({ balance: left - 8, pending: 0, locked: 0 })
    expect(readStore(b.dataDir, mint.url).retired).toHaveLength(0)
    expect(await other.receive(await b.send(left - 8))).toMatchObject({ amount: left - 8 })

    // a melt that never lands: kept while within the grace, forgotten after it once its inputs are unspent
    const c = new Wallet({ dataDir: tempDir(), mintUrl: mint.url, meltTimeoutMs: 1500, retiredGraceMs: 60_000 })
    await c.load()
    await c.fund(30, { pollMs: 50 })
    await heldMelt(c, await invoice(5))
    expect(await c.recover()).toEqual({ resolved: 0, unsettled: 0 })
    expect(readStore(c.dataDir, mint.url).retired).toHaveLength(1)
    const c2 = new Wallet({ dataDir: c.dataDir, mintUrl: mint.url, retiredGraceMs: 0 })
    await c2.load()
    expect(readStore(c.dataDir, mint.url).retired).toHaveLength(0)
    expect(await c2.balance()).toEqual({ balance: 30, pending: 0, locked: 0 })
  })

  it('refuses to lock 1-sat proofs at a mint with input fees, and pays fees on ordinary swaps', async () => {
    const x = new Wallet({ dataDir: tempDir(), mintUrl: feeMint.url })
    await x.load()
    await x.fund(16, { pollMs: 50 })
    await expect(x.lockForPayee({ amount: 5, payeePubkey: pubkeyOf(privkey()), locktime: nowSec() + 600, refundPubkey: pubkeyOf(privkey()) }))
      .rejects.toThrow(/charges an input fee of 100 ppk per proof .* refuses to lock 1-sat proofs/)
    expect(await x.balance()).toEqual({ balance: 16, pending: 0, locked: 0 })

    const token = await x.send(10) // swap of one 16-sat proof: 1 sat fee, 10 sent, 5 kept
    expect(await x.balance()).toEqual({ balance: 5, pending: 0, locked: 0 })
    const y = new Wallet({ dataDir: tempDir(), mintUrl: feeMint.url })
    await y.load()
    const got = await y.receive(token) // two proofs (8 + 2) in: 1 sat fee
    expect(got).toEqual({ amount: 9, fee: 1 })
    expect(await y.balance()).toEqual({ balance: 9, pending: 0, locked: 0 })
  })
})
