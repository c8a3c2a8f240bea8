import { describe, expect, it } from 'vitest'
import { createPathPolicy, matchPathPattern, normalizeTarget, rewriteLocation } from '../src/tunnel/path-policy.js'

describe('normalizeTarget', () => {
  it('passes ordinary origin-form targets and keeps the query untouched', () => {
    expect(normalizeTarget('/')).toMatchObject({ ok: true, path: '/', target: '/' })
    expect(normalizeTarget('/api/v1/items?x=1&y=%2F..%2F')).toMatchObject({ ok: true, path: '/api/v1/items', target: '/api/v1/items?x=1&y=%2F..%2F' })
    expect(normalizeTarget('/file=a%20b.png')).toMatchObject({ ok: true })
    expect(normalizeTarget('/@vite/client')).toMatchObject({ ok: true, path: '/@vite/client' })
    expect(normalizeTarget('/dir/')).toMatchObject({ ok: true, path: '/dir/' })
  })

  it('collapses repeated slashes inside the path', () => {
    expect(normalizeTarget('/a//b///c')).toMatchObject({ ok: true, path: '/a/b/c' })
  })

  const refused: Array<[string, string]> = [
    ['http://127.0.0.1:9/', 'absolute-form'],
    ['https://example.com/x', 'absolute-form https'],
    ['HTTP://127.0.0.1:9/', 'absolute-form upper case'],
    ['127.0.0.1:9', 'authority-form'],
    ['*', 'asterisk-form'],
    ['@127.0.0.1:9/', 'userinfo trick'],
    ['//127.0.0.1:9/', 'network-path reference'],
    ['//127.0.0.1:9', 'network-path without path'],
    ['/\\127.0.0.1:9/', 'backslash'],
    ['/a\\..\\b', 'backslash traversal'],
    ['/%5c%5c127.0.0.1/', 'encoded backslash'],
    ['/%2f%2f127.0.0.1/', 'encoded double slash'],
    ['/a%2Fb', 'encoded slash'],
    ['/%2e%2e/%2e%2e/etc/passwd', 'encoded dot-dot'],
    ['/%2E%2E/secret', 'encoded dot-dot upper case'],
    ['/.%2e/secret', 'half-encoded dot-dot'],
    ['/%252e%252e/secret', 'double-encoded dot-dot'],
    ['/public/%252e%252e%252fadmin', 'double-encoded traversal'],
    ['/../secret', 'plain dot-dot'],
    ['/a/./b', 'dot segment'],
    ['/a/..', 'trailing dot-dot'],
    ['/a%00b', 'encoded NUL'],
    ['/a\x00b', 'raw NUL'],
    ['/a b', 'space'],
    ['/a#frag', 'fragment'],
    ['/%zz', 'malformed percent-encoding'],
    ['', 'empty'],
  ]
  for (const [target, what] of refused) {
    it(`refuses ${what}: ${JSON.stringify(target)}`, () => {
      const d = normalizeTarget(target)
      expect(d.ok).toBe(false)
      if (!d.ok) {
        expect(d.status).toBe(400)
        expect(d.message.length).toBeGreaterThan(10)
      }
    })
  }
})

describe('createPathPolicy', () => {
  it('refuses CONNECT and TRACE whatever the path', () => {
    const p = createPathPolicy()
    expect(p.check('CONNECT', '127.0.0.1:22')).toMatchObject({ ok: false, status: 405 })
    expect(p.check('connect', '/')).toMatchObject({ ok: false, status: 405 })
    expect(p.check('TRACE', '/')).toMatchObject({ ok: false, status: 405 })
    expect(p.check('GET', '/')).toMatchObject({ ok: true })
    expect(p.check('DELETE', '/x')).toMatchObject({ ok: true })
  })

  it('denies hidden files by default but not /.well-known', () => {
    const p = createPathPolicy()
    expect(p.check('GET', '/.git/config')).toMatchObject({ ok: false, status: 403 })
    expect(p.check('GET', '/static/.env')).toMatchObject({ ok: false, status: 403 })
    expect(p.check('GET', '/%2egit/config')).toMatchObject({ ok: false, status: 403 })
    expect(p.check('GET', '/.well-known/security.txt')).toMatchObject({ ok: true })
    expect(p.check('GET', '/file.name.txt')).toMatchObject({ ok: true })
    expect(createPathPolicy({ denyHidden: false }).check('GET', '/.git/config')).toMatchObject({ ok: true })
  })

  it('allow-list: only listed prefixes, on segment boundaries', () => {
    const p = createPathPolicy({ allow: ['/api', '/static/'] })
    expect(p.check('GET', '/api')).toMatchObject({ ok: true })
    expect(p.check('GET', '/api/x/y?z')).toMatchObject({ ok: true })
    expect(p.check('GET', '/static/app.js')).toMatchObject({ ok: true })
    expect(p.check('GET', '/apix')).toMatchObject({ ok: false, status: 403 })
    expect(p.check('GET', '/')).toMatchObject({ ok: false, status: 403 })
  })

  it('deny wins over allow, also when the path is percent-encoded', () => {
    const p = createPathPolicy({ allow: ['/'], deny: ['/admin', '/internal/**/secret'] })
    expect(p.check('GET', '/admin')).toMatchObject({ ok: false, status: 403 })
    expect(p.check('GET', '/admin/users')).toMatchObject({ ok: false, status: 403 })
    expect(p.check('GET', '/%61dmin')).toMatchObject({ ok: false, status: 403 })
    expect(p.check('GET', '//admin')).toMatchObject({ ok: false, status: 400 })
    expect(p.check('GET', '/x//admin')).toMatchObject({ ok: true, path: '/x/admin' })
    expect(p.check('GET', '/internal/a/b/secret')).toMatchObject({ ok: false, status: 403 })
    expect(p.check('GET', '/internal/secret')).toMatchObject({ ok: false, status: 403 })
    expect(p.check('GET', '/administrator')).toMatchObject({ ok: true })
  })

  it('applies deny rules to every decoding a backend might apply, and treats ..;x as a dot segment', () => {
    const p = createPathPolicy({ deny: ['/admin'] })
    expect(p.check('GET', '/%2561dmin')).toMatchObject({ ok: false, status: 403 })
    expect(p.check('GET', '/%252e%2567it/config')).toMatchObject({ ok: false })
    expect(p.check('GET', '/x/..;/admin')).toMatchObject({ ok: false, status: 400 })
    expect(p.check('GET', '/adminx')).toMatchObject({ ok: true })
  })

  it('rejects malformed patterns with a sentence that says what to pass', () => {
    expect(() => createPathPolicy({ allow: ['api'] })).toThrow(/must start with \//)
    expect(() => createPathPolicy({ deny: ['/a b'] })).toThrow(/whitespace/)
  })
})

describe('matchPathPattern', () => {
  it('implements *, ** and ? globs', () => {
    expect(matchPathPattern('/api/*/items', '/api/v1/items')).toBe(true)
    expect(matchPathPattern('/api/*/items', '/api/v1/v2/items')).toBe(false)
    expect(matchPathPattern('/api/**/items', '/api/v1/v2/items')).toBe(true)
    expect(matchPathPattern('/**/*.map', '/static/js/app.js.map')).toBe(true)
    expect(matchPathPattern('/**/*.map', '/app.js.map')).toBe(true)
    expect(matchPathPattern('/v?', '/v1')).toBe(true)
    expect(matchPathPattern('/v?', '/v12')).toBe(false)
    expect(matchPathPattern('/admin*', '/admin-panel/x')).toBe(true)
    expect(matchPathPattern('/', '/anything')).toBe(true)
    expect(matchPathPattern('/a.b', '/axb')).toBe(false)
  })
})

describe('rewriteLocation', () => {
  const origin = new URL('http://127.0.0.1:7860')
  it('makes same-origin absolute redirects relative, so the browser stays on the proxy', () => {
    expect(rewriteLocation('http://127.0.0.1:7860/login?next=%2F', origin)).toBe('/login?next=%2F')
    expect(rewriteLocation('//127.0.0.1:7860/x', origin)).toBe('/x')
  })
  it('keeps relative redirects as they are', () => {
    expect(rewriteLocation('/done', origin)).toBe('/done')
    expect(rewriteLocation('next?page=2', origin)).toBe('next?page=2')
  })
  it('refuses redirects to another host, port, scheme or with credentials', () => {
    expect(rewriteLocation('http://evil.example/', origin)).toBeUndefined()
    expect(rewriteLocation('http://127.0.0.1:22/', origin)).toBeUndefined()
    expect(rewriteLocation('https://127.0.0.1:7860/', origin)).toBeUndefined()
    expect(rewriteLocation('//evil.example/x', origin)).toBeUndefined()
    expect(rewriteLocation('/\\evil.example/x', origin)).toBeUndefined()
    expect(rewriteLocation('http://user@127.0.0.1:7860/', origin)).toBeUndefined()
    expect(rewriteLocation('javascript:alert(1)', origin)).toBeUndefined()
    expect(rewriteLocation('', origin)).toBeUndefined()
  })
})
