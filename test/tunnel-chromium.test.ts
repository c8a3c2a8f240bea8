/**
 * A real browser through the tunnel: Debian's Chromium, driven by
 * playwright-core (never a downloaded browser build), loads a page from the
 * test backend through local proxy → TCP socket pair → gateway.
 *
 * Needs /usr/bin/chromium (scripts/install-chromium.sh). Without it the test
 * is skipped on a developer machine, and fails in CI (CI=true), where a
 * missing browser means a broken install step, not a reason to pass.
 */
import { existsSync, mkdtempSync, rmSync } from 'node:fs'
import { tmpdir } from 'node:os'
import { join } from 'node:path'
import { chromium, type BrowserContext } from 'playwright-core'
import { afterAll, beforeAll, describe, expect, it } from 'vitest'
import { DATA_JSON, IMAGE_SIZE } from './fixtures/test-backend.js'
import { startTunnelRig, type TunnelRig } from './fixtures/tunnel-harness.js'

const CHROMIUM = '/usr/bin/chromium'
const available = existsSync(CHROMIUM)
const inCI = Boolean(process.env.CI)

if (!available && !inCI) {
  process.stderr.write(`tunnel-chromium: skipped, ${CHROMIUM} not found; run scripts/install-chromium.sh to run the browser test\n`)
}

describe.skipIf(!available && !inCI)('Chromium through the tunnel', () => {
  let rig: TunnelRig
  let context: BrowserContext
  let profile: string

  beforeAll(async () => {
    if (!available) throw new Error(`${CHROMIUM} is missing in CI; the CI script must run scripts/install-chromium.sh first`)
    rig = await startTunnelRig({ transport: 'tcp' })
    profile = mkdtempSync(join(tmpdir(), 'dvm-chromium-'))
    context = await chromium.launchPersistentContext(profile, {
      executablePath: CHROMIUM,
      headless: true,
      args: [
        '--headless',
        '--no-sandbox',
        '--disable-gpu',
        '--disable-quic',
        '--no-first-run',
        '--disable-background-networking',
        '--disable-component-update',
        '--disable-sync',
      ],
      timeout: 30_000,
    })
  })

  afterAll(async () => {
    await context?.close()
    await rig?.close()
    if (profile) rmSync(profile, { recursive: true, force: true })
  })

  it('loads HTML, CSS, an image, fetch() JSON, a WebSocket echo and SSE event by event', async () => {
    const page = await context.newPage()
    const response = await page.goto(rig.url + '/', { waitUntil: 'load', timeout: 20_000 })
    expect(response?.status()).toBe(200)
    await page.waitForFunction(() => (globalThis as unknown as { __done?: boolean }).__done === true, undefined, { timeout: 30_000 })
    const error = await page.evaluate(() => (globalThis as unknown as { __error?: string }).__error)
    expect(error).toBeUndefined()
    const r = (await page.evaluate(() => (globalThis as unknown as { __results: unknown }).__results)) as PageResults

    expect(await page.title()).toBe('tunnel test page')
    expect(r.h1Color).toBe('rgb(12, 34, 56)') // the stylesheet applied
    expect(r.boxWidth).toBe('123px')
    expect(r.image).toEqual({ width: IMAGE_SIZE, height: IMAGE_SIZE }) // the PNG decoded
    expect(r.json).toEqual({ status: 200, type: 'application/json', body: DATA_JSON })
    expect(r.ws).toEqual({
      text: 'hello through the tunnel',
      binary: [0, 1, 2, 127, 128, 254, 255],
      closeCode: 4001,
      closeReason: 'bye now',
      clean: true,
    })
    expect(r.sse.map((e) => e.data.i)).toEqual([0, 1, 2, 3, 4])
    // Event by event: each arrived about one backend interval (200 ms) after
    // the one before, not all at once when the stream ended.
    for (let i = 1; i < r.sse.length; i++) {
      expect((r.sse[i] as SseEvent).at - (r.sse[i - 1] as SseEvent).at).toBeGreaterThan(100)
    }

    // Everything the page used went to the backend, through the tunnel, with Host rewritten.
    const seen = rig.backend.requests.map((q) => new URL(q.url, 'http://x').pathname)
    expect(seen).toEqual(expect.arrayContaining(['/', '/style.css', '/image.png', '/api/data.json', '/ws', '/sse']))
    expect(new Set(rig.backend.requests.map((q) => q.headers.host))).toEqual(new Set([`127.0.0.1:${rig.backend.port}`]))
    if (process.env.TUNNEL_SCREENSHOT) await page.screenshot({ path: process.env.TUNNEL_SCREENSHOT })
    await page.close()
  })

  it('shows a readable 402 page when the session is unpaid', async () => {
    rig.setPaid(false)
    try {
      const page = await context.newPage()
      const response = await page.goto(rig.url + '/', { timeout: 20_000 })
      expect(response?.status()).toBe(402)
      expect(await page.locator('h1').innerText()).toBe('402 Payment Required')
      expect(await page.locator('body').innerText()).toMatch(/no verified payment/)
      await page.close()
    } finally {
      rig.setPaid(true)
    }
  })
})

interface SseEvent {
  data: { i: number; sentAt: number }
  at: number
}

interface PageResults {
  image: { width: number; height: number }
  h1Color: string
  boxWidth: string
  json: { status: number; type: string; body: unknown }
  ws: { text: string; binary: number[]; closeCode: number; closeReason: string; clean: boolean }
  sse: SseEvent[]
}
