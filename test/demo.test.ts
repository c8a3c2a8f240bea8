/**
 * `npm run demo`, as a user runs it: the real command, its own devnet, the
 * page fetched through the printed URL, Chromium chatting through the
 * tunnel, and the final accounting after --duration and after SIGINT.
 *
 * The demo starts its own devnet (not the test run's shared one): that is
 * what the command does. Both runs share one --dir, so the second is also a
 * "second run" (wallet and mint data kept, leftovers reclaimed).
 */
import { execSync } from 'node:child_process'
import { existsSync, mkdtempSync, rmSync } from 'node:fs'
import { tmpdir } from 'node:os'
import { join } from 'node:path'
import { chromium } from 'playwright-core'
import { afterAll, describe, expect, it } from 'vitest'
import { useProcs, type Proc } from './helpers/procs.js'

const CHROMIUM = '/usr/bin/chromium'
const hasChromium = existsSync(CHROMIUM)
const inCI = Boolean(process.env.CI)

interface FinalLine {
  reason: string
  spent: number
  redeemed: number
  balanced: boolean
  lockedUnsent: number
  wallet: { before: number; funded: number; balance: number; locked: number }
  bytes: { up: number; down: number }
}

function events(p: Proc): Array<Record<string, unknown>> {
  return p.stdout
    .split('\n')
    .filter((l) => l.startsWith('{'))
    .map((l) => JSON.parse(l) as Record<string, unknown>)
}

function event<T = Record<string, unknown>>(p: Proc, type: string): T | undefined {
  return events(p).find((e) => e.type === type) as T | undefined
}

async function waitForEvent<T>(p: Proc, type: string, timeoutMs: number): Promise<T> {
  await p.waitFor(new RegExp(`^\\{"type":"${type}"`, 'm'), timeoutMs)
  return event<T>(p, type)!
}

function alive(pid: number): boolean {
  try {
    process.kill(pid, 0)
    return true
  } catch (err) {
    return (err as NodeJS.ErrnoException).code === 'EPERM'
  }
}

/**
 * Nothing of the demo may outlive it: not its process group (npm, node, and
 * tsx's esbuild service, which exits by itself a moment after node closes its
 * pipe), not the mint (its own group).
 */
async function expectNothingLeft(p: Proc): Promise<void> {
  const groupAlive = () => {
    try {
      process.kill(-p.pid!, 0)
      return true
    } catch {
      return false
    }
  }
  for (let i = 0; i < 40 && groupAlive(); i++) await new Promise((r) => setTimeout(r, 50))
  const left = groupAlive() ? execSync(`ps -eo pid,pgid,stat,etime,args | awk '$2 == ${p.pid}'`).toString() : ''
  expect(left).toBe('')
  const mintPid = event<{ mintPid: number }>(p, 'devnet')?.mintPid
  expect(mintPid).toBeGreaterThan(0)
  expect(alive(mintPid!)).toBe(false)
}

function expectAccounting(f: FinalLine): void {
  expect(f.spent).toBeGreaterThan(0)
  expect(f.redeemed).toBe(f.spent)
  expect(f.balanced).toBe(true)
  // every sat is somewhere: spendable, still locked (comes back after locktime), or spent
  expect(f.wallet.balance + f.wallet.locked).toBe(f.wallet.before + f.wallet.funded - f.spent)
}

const dir = mkdtempSync(join(tmpdir(), 'dvm-demo-test-'))
afterAll(() => rmSync(dir, { recursive: true, force: true }))

describe('npm run demo', () => {
  const procs = useProcs()
  const demo = (...flags: string[]) =>
    procs.spawn('npm', ['run', '--silent', 'demo', '--', '--port=0', '--json', '--processor=echo', `--dir=${dir}`, ...flags], { timeoutMs: 150_000 })

  it('prints the URL, serves the demo app through the paid tunnel, and at --duration accounts for every sat', async () => {
    const p = demo('--duration=4')
    const ready = await waitForEvent<{ url: string }>(p, 'ready', 120_000)
    expect(ready.url).toMatch(/^http:\/\/127\.0\.0\.1:\d+\/$/)

    const page = await fetch(ready.url)
    expect(page.status).toBe(200)
    const html = await page.text()
    expect(html).toContain('id="prompt"')
    expect(html).toContain('paid P2P tunnel')
    const png = Buffer.from(await (await fetch(ready.url + 'picture.png')).arrayBuffer())
    expect(png.subarray(1, 4).toString()).toBe('PNG')

    const exit = await p.exited
    expect(exit, p.output()).toEqual({ code: 0, signal: null, timedOut: false })
    const final = event<FinalLine>(p, 'final')!
    expect(final.reason).toBe('duration reached')
    expectAccounting(final)
    expect(final.bytes.down).toBeGreaterThan(png.length) // the proxy counted what we fetched
    await expectNothingLeft(p)
  }, 180_000)

  it.skipIf(!hasChromium && !inCI)('Chromium chats through the tunnel with a streamed answer; SIGINT ends it with the accounting', async () => {
    if (!hasChromium) throw new Error(`${CHROMIUM} is missing in CI; run scripts/install-chromium.sh first`)
    const p = demo('--duration=120')
    const ready = await waitForEvent<{ url: string; pid: number }>(p, 'ready', 120_000)
    const profile = mkdtempSync(join(tmpdir(), 'dvm-demo-chromium-'))
    const context = await chromium.launchPersistentContext(profile, {
      executablePath: CHROMIUM,
      headless: true,
      args: ['--headless', '--no-sandbox', '--disable-gpu', '--disable-quic', '--no-first-run', '--disable-background-networking', '--disable-component-update', '--disable-sync'],
      timeout: 30_000,
    })
    try {
      const tab = await context.newPage()
      const tokens: number[] = []
      tab.on('websocket', (ws) => ws.on('framereceived', (f) => String(f.payload).includes('"token"') && tokens.push(Date.now())))
      const res = await tab.goto(ready.url, { waitUntil: 'load', timeout: 20_000 })
      expect(res?.status()).toBe(200)
      expect(await tab.title()).toBe('dvm-agent demo')
      // the picture decoded: it came through the tunnel as a real PNG
      expect(await tab.locator('img').evaluate((img: { naturalWidth: number }) => img.naturalWidth)).toBe(480)

      const prompt = 'hello from Chromium through a paid tunnel'
      await tab.locator('#send:not([disabled])').waitFor({ timeout: 10_000 })
      await tab.fill('#prompt', prompt)
      await tab.click('#send')
      const answer = tab.locator('.msg.bot[data-state=done]')
      await answer.waitFor({ timeout: 15_000 })
      expect((await answer.innerText()).startsWith(prompt)).toBe(true)
      // streamed: one frame per word, spread over time, not one lump at the end
      expect(tokens.length).toBe(prompt.split(' ').length)
      expect(tokens.at(-1)! - tokens[0]!).toBeGreaterThan(100)
      // the provider's own figures, polled by the page through the tunnel
      await tab.waitForFunction(() => /^\d+$/.test((globalThis as unknown as { document: { getElementById(id: string): { textContent: string } } }).document.getElementById('paid').textContent), undefined, { timeout: 10_000 })
      if (process.env.DEMO_SCREENSHOT) await tab.screenshot({ path: process.env.DEMO_SCREENSHOT, fullPage: true })
    } finally {
      await context.close()
      rmSync(profile, { recursive: true, force: true })
    }

    // Ctrl-C as `npm run` delivers it: to the demo's own process
    process.kill(ready.pid, 'SIGINT')
    const exit = await p.exited
    expect(exit, p.output()).toEqual({ code: 0, signal: null, timedOut: false })
    const final = event<FinalLine>(p, 'final')!
    expect(final.reason).toBe('interrupted')
    expectAccounting(final)
    expect(final.bytes.down).toBeGreaterThan(30_000)
    await expectNothingLeft(p)
  }, 180_000)
})
