/**
 * Which requests a provider's gateway lets through to its one backend origin.
 *
 * Pure functions, no I/O. The gateway never connects anywhere but its
 * configured origin (http-proxy gets a fixed target), so this module is the
 * second line: it refuses every request target that a sloppier proxy (or the
 * backend itself) could read as "another host", normalises what it lets
 * through so that allow/deny rules and the backend see the same path, and
 * keeps backend redirects on the origin.
 */

export type PolicyRefusal = {
  ok: false
  /** HTTP status to answer with: 400 malformed, 403 forbidden by policy, 405 method. */
  status: 400 | 403 | 405
  /** Stable machine-readable reason. */
  code: 'bad_target' | 'forbidden_path' | 'method_not_allowed'
  /** One sentence for a person: what was refused and why. */
  message: string
}

export type PolicyDecision =
  | {
      ok: true
      /** Origin-form target to forward: normalised path plus the untouched query. */
      target: string
      /** The normalised path alone (what allow/deny matched). */
      path: string
    }
  | PolicyRefusal

export interface PathPolicyOptions {
  /**
   * `--allow-path` patterns. Empty or missing: everything not denied. A plain
   * pattern is a prefix on segment boundaries (`/api` covers `/api` and
   * `/api/x`, not `/apix`); `*` matches within one segment, `**` across
   * segments, `?` one character.
   */
  allow?: readonly string[]
  /** `--deny-path` patterns; deny always wins over allow. */
  deny?: readonly string[]
  /**
   * Refuse hidden path segments (`/.git`, `/.env`, `/x/.ssh/…`) except
   * `/.well-known`. Default true: web UIs run from a checkout routinely
   * serve their working directory, and these are what leaks.
   */
  denyHidden?: boolean
}

export interface PathPolicy {
  readonly allow: readonly string[]
  readonly deny: readonly string[]
  readonly denyHidden: boolean
  /** Decide on one request line. `rawTarget` is the request target exactly as received. */
  check(method: string, rawTarget: string): PolicyDecision
}

/**
 * Methods that never go to the backend. CONNECT would turn the gateway into a
 * TCP relay to any host; TRACE reflects headers (cross-site tracing) and no
 * web UI needs it.
 */
const REFUSED_METHODS = new Set(['CONNECT', 'TRACE', 'TRACK'])

/** How many rounds of percent-decoding we look through for hidden `..`, `/`, `\`. */
const DECODE_ROUNDS = 3

export function createPathPolicy(opts: PathPolicyOptions = {}): PathPolicy {
  const allow = (opts.allow ?? []).map(validatePattern)
  const deny = (opts.deny ?? []).map(validatePattern)
  const denyHidden = opts.denyHidden ?? true
  const allowRe = allow.map(patternToRegExp)
  const denyRe = deny.map(patternToRegExp)

  return {
    allow,
    deny,
    denyHidden,
    check(method, rawTarget) {
      if (REFUSED_METHODS.has(method.toUpperCase())) {
        return refuse(405, 'method_not_allowed', `the tunnel does not forward ${method.toUpperCase()} requests`)
      }
      const parsed = normalizeTarget(rawTarget)
      if (!parsed.ok) return parsed
      const { path } = parsed
      // Rules are written in decoded form (`/admin`), and the backend decodes
      // before routing, so `/%61dmin` must meet the `/admin` rule. Encoded
      // separators were refused above, so decoding keeps the segments intact.
      const decoded = safeDecode(path) ?? path
      const matches = (re: RegExp): boolean => re.test(decoded) || re.test(path)
      // A backend that decodes twice sees `/%2561dmin` as `/admin`: deny rules
      // and hidden files are checked against every decoding it might apply.
      const layers = decodingLayers(path)
      if (denyRe.some((re) => layers.some((l) => re.test(l)))) {
        return refuse(403, 'forbidden_path', `${path} is denied by the provider's path policy`)
      }
      if (denyHidden && layers.some(hasHiddenSegment)) {
        return refuse(403, 'forbidden_path', `${path} names a hidden file or directory, which the provider does not expose`)
      }
      if (allowRe.length > 0 && !allowRe.some(matches)) {
        return refuse(403, 'forbidden_path', `${path} is not in the provider's allowed paths (${allow.join(', ')})`)
      }
      return parsed
    },
  }
}

/** The path and each successive percent-decoding of it (up to DECODE_ROUNDS). */
function decodingLayers(path: string): string[] {
  const layers = [path]
  for (let i = 0; i < DECODE_ROUNDS && layers[i]!.includes('%'); i++) {
    const next = safeDecode(layers[i]!)
    if (next === undefined || next === layers[i]) break
    layers.push(next)
  }
  return layers
}

/**
 * Turn a raw request target into a safe origin-form target, or refuse it.
 * Only origin-form (`/path?query`) is accepted: absolute-form
 * (`http://other/`), authority-form (`host:port`, CONNECT's) and asterisk-form
 * (`*`) all name something other than a path on our origin.
 */
export function normalizeTarget(rawTarget: string): PolicyDecision {
  if (rawTarget.length === 0 || rawTarget[0] !== '/') {
    return refuse(400, 'bad_target', `request target ${quote(rawTarget)} is not a path on this origin; only /path targets are forwarded`)
  }
  // Control characters, spaces, NUL and fragments have no business in a
  // request target; Node's parser lets some through.
  if (/[\x00-\x20\x7f#]/.test(rawTarget)) {
    return refuse(400, 'bad_target', `request target ${quote(rawTarget)} contains control characters, spaces or a fragment`)
  }
  const q = rawTarget.indexOf('?')
  const rawPath = q === -1 ? rawTarget : rawTarget.slice(0, q)
  const query = q === -1 ? '' : rawTarget.slice(q)

  // `//host/…` is a network-path reference: anything that resolves it
  // against a base URL (url.parse, new URL, a redirect) lands on `host`.
  if (rawPath.startsWith('//')) {
    return refuse(400, 'bad_target', `request target ${quote(rawTarget)} starts with // and would name another host`)
  }
  if (rawPath.includes('\\')) {
    return refuse(400, 'bad_target', `request target ${quote(rawTarget)} contains a backslash, which some servers read as /`)
  }

  // Look through every decoding a backend might apply: a `..` or separator
  // that only appears after decoding would let the backend see a different
  // path than the one the policy checked.
  let layer = rawPath
  for (let round = 0; round < DECODE_ROUNDS && layer.includes('%'); round++) {
    const decoded = safeDecode(layer)
    if (decoded === undefined) {
      return refuse(400, 'bad_target', `request target ${quote(rawTarget)} has malformed percent-encoding`)
    }
    if (round === 0 && /%2f|%5c/i.test(layer)) {
      return refuse(400, 'bad_target', `request target ${quote(rawTarget)} encodes a path separator (%2F or %5C)`)
    }
    if (decoded.includes('\\') || decoded.includes('\0') || decoded.split('/').some(isDotSegment) || decoded.startsWith('//')) {
      return refuse(400, 'bad_target', `request target ${quote(rawTarget)} hides a dot-dot segment, separator or NUL in percent-encoding`)
    }
    layer = decoded
  }

  const segments = rawPath.split('/').slice(1)
  if (segments.some(isDotSegment)) {
    // Browsers remove dot segments before sending, so only tools and
    // attackers send them; refusing is simpler than resolving and cannot
    // disagree with how the backend would resolve them.
    return refuse(400, 'bad_target', `request target ${quote(rawTarget)} contains . or .. segments`)
  }
  // Collapse repeated slashes so `/a//admin` cannot dodge a `/a/admin` rule.
  const path = '/' + segments.filter((s, i) => s !== '' || i === segments.length - 1).join('/')
  return { ok: true, path, target: path + query }
}

/**
 * Keep a backend redirect on the tunnel. Same-origin absolute URLs become
 * origin-relative (so the browser stays on the local proxy); relative ones
 * pass; anything naming another scheme, host or port is refused, because the
 * customer rented this origin and nothing else.
 *
 * @returns the Location to send, or undefined when it must be refused.
 */
export function rewriteLocation(location: string, origin: URL): string | undefined {
  const trimmed = location.trim()
  if (trimmed === '' || trimmed.includes('\\') || /[\x00-\x1f\x7f]/.test(trimmed)) return undefined
  let resolved: URL
  try {
    // Resolve against the origin exactly as a browser would resolve against the page.
    resolved = new URL(trimmed, origin)
  } catch {
    return undefined
  }
  if (resolved.origin !== origin.origin || resolved.username !== '' || resolved.password !== '') return undefined
  const isAbsolute = /^[a-z][a-z0-9+.-]*:/i.test(trimmed) || trimmed.startsWith('//')
  if (!isAbsolute) return trimmed
  return resolved.pathname + resolved.search + resolved.hash
}

/** Does `path` (normalised) match `pattern` by the rules of PathPolicyOptions? */
export function matchPathPattern(pattern: string, path: string): boolean {
  return patternToRegExp(validatePattern(pattern)).test(path)
}

function validatePattern(pattern: string): string {
  if (typeof pattern !== 'string' || !pattern.startsWith('/')) {
    throw new Error(`path pattern ${quote(String(pattern))} must start with /, e.g. --allow-path=/api or --deny-path='/admin/**'`)
  }
  if (/[\s\\#]/.test(pattern)) {
    throw new Error(`path pattern ${quote(pattern)} contains whitespace, a backslash or #; use plain / paths with * and ** wildcards`)
  }
  return pattern
}

/**
 * Glob to anchored RegExp. A pattern matches the path itself or anything
 * below it, so `--deny-path=/admin` and `--deny-path=/admin*` both cover
 * `/admin/users`.
 */
function patternToRegExp(pattern: string): RegExp {
  const base = pattern.length > 1 && pattern.endsWith('/') ? pattern.slice(0, -1) : pattern
  if (base === '/') return /^\//
  let re = ''
  for (let i = 0; i < base.length; i++) {
    const ch = base[i] as string
    if (ch === '*' && base[i + 1] === '*') {
      // `/**/` may also match a single `/`, so `/**/.git` covers `/.git`.
      if (base[i - 1] === '/' && base[i + 2] === '/') {
        re = re.slice(0, -1) + '(?:/.*)?/'
        i += 2
      } else {
        re += '.*'
        i += 1
      }
    } else if (ch === '*') re += '[^/]*'
    else if (ch === '?') re += '[^/]'
    else re += ch.replace(/[.+^${}()|[\]\\]/g, '\\$&')
  }
  return new RegExp(`^${re}(?:/.*)?$`)
}

function hasHiddenSegment(path: string): boolean {
  return path.split('/').some((s) => s.startsWith('.') && s !== '.well-known')
}

function isDotSegment(segment: string): boolean {
  // `..;x` is a dot segment to servers that strip ;matrix parameters (Tomcat)
  return segment === '.' || segment === '..' || /^\.\.?;/.test(segment)
}

function safeDecode(s: string): string | undefined {
  try {
    return decodeURIComponent(s)
  } catch {
    return undefined
  }
}

function refuse(status: PolicyRefusal['status'], code: PolicyRefusal['code'], message: string): PolicyRefusal {
  return { ok: false, status, code, message }
}

function quote(s: string): string {
  return JSON.stringify(s.length > 120 ? s.slice(0, 120) + '…' : s)
}
