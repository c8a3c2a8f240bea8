/**
 * Job params arrive as strings (NIP-90 `param` tags, P2P job params). One
 * declaration per processor yields both the JSON Schema published in the skill
 * (so a customer can check its params before it pays) and the parser the
 * processor runs on every job, so the two cannot drift apart. Numeric ranges
 * are encoded as regular expressions because a JSON Schema can only compare
 * strings by pattern, not by value.
 */

export interface IntegerParam {
  type: 'integer'
  min: number
  max: number
  description: string
}

/** A decimal number; its bounds must be integers so the range fits a pattern. */
export interface NumberParam {
  type: 'number'
  min: number
  max: number
  description: string
}

export interface EnumParam {
  type: 'enum'
  values: readonly string[]
  description: string
  default?: string
}

export interface StringParam {
  type: 'string'
  maxLength: number
  description: string
}

export type ParamSpec = IntegerParam | NumberParam | EnumParam | StringParam

type ValueOf<S extends ParamSpec> = S extends IntegerParam | NumberParam ? number : string

export type ParsedParams<T extends Record<string, ParamSpec>> = { [K in keyof T]?: ValueOf<T[K]> }

export interface ParamSet<T extends Record<string, ParamSpec>> {
  /** JSON Schema (draft 2020-12 compatible) of the params object; all values are strings */
  readonly schema: Record<string, unknown>
  /** Parse and range-check; throws a ParamError naming every bad param. */
  parse(params: Record<string, string>): ParsedParams<T>
}

/** What a customer sent is wrong: the job fails with this message, nothing else is affected. */
export class ParamError extends Error {
  override readonly name = 'ParamError'
}

export function integerParam(min: number, max: number, description: string): IntegerParam {
  return { type: 'integer', min, max, description }
}

export function numberParam(min: number, max: number, description: string): NumberParam {
  return { type: 'number', min, max, description }
}

export function enumParam(values: readonly string[], description: string, def?: string): EnumParam {
  return def === undefined ? { type: 'enum', values, description } : { type: 'enum', values, description, default: def }
}

export function stringParam(maxLength: number, description: string): StringParam {
  return { type: 'string', maxLength, description }
}

/**
 * Declare the params a processor honours. `additional: 'reject'` (the default)
 * refuses params it does not know, so a customer is told its `foo` is ignored
 * instead of paying for a job that silently disregards it; processors that pass
 * params through to a program use 'allow'.
 */
export function defineParams<T extends Record<string, ParamSpec>>(
  specs: T,
  opts: { additional?: 'reject' | 'allow'; maxValueLength?: number } = {},
): ParamSet<T> {
  const additional = opts.additional ?? 'reject'
  const maxValueLength = opts.maxValueLength ?? 4096
  const compiled = new Map<string, { spec: ParamSpec; pattern?: RegExp }>()
  const properties: Record<string, unknown> = {}
  for (const [name, spec] of Object.entries(specs)) {
    checkSpec(name, spec)
    const source = patternFor(spec)
    compiled.set(name, { spec, pattern: source === undefined ? undefined : new RegExp(source, 'u') })
    properties[name] = schemaFor(spec, source)
  }
  const schema: Record<string, unknown> = {
    type: 'object',
    properties,
    additionalProperties: additional === 'reject' ? false : { type: 'string', maxLength: maxValueLength },
  }

  return {
    schema,
    parse(params) {
      const out: Record<string, string | number> = {}
      const problems: string[] = []
      for (const [name, raw] of Object.entries(params)) {
        const entry = compiled.get(name)
        if (!entry) {
          if (additional === 'reject') problems.push(`param ${name} is not accepted (accepted: ${[...compiled.keys()].join(', ') || 'none'})`)
          else if (typeof raw !== 'string' || [...raw].length > maxValueLength) problems.push(`param ${name} must be a string of at most ${maxValueLength} characters`)
          continue
        }
        const value = parseOne(name, entry.spec, entry.pattern, raw)
        if (typeof value === 'object') problems.push(value.problem)
        else out[name] = value
      }
      if (problems.length > 0) throw new ParamError(problems.join('; '))
      return out as ParsedParams<T>
    },
  }
}

function checkSpec(name: string, spec: ParamSpec): void {
  if (spec.type === 'integer' || spec.type === 'number') {
    if (!Number.isSafeInteger(spec.min) || !Number.isSafeInteger(spec.max) || spec.min > spec.max) {
      // A programming error in a processor, not a customer's: fail loudly at definition.
      throw new Error(`param ${name}: bounds must be integers with min <= max`)
    }
    if (spec.type === 'number' && spec.min < 0) throw new Error(`param ${name}: negative decimal ranges are not supported`)
  }
}

function describeRange(spec: IntegerParam | NumberParam): string {
  return `${spec.type === 'integer' ? 'a whole number' : 'a number'} from ${spec.min} to ${spec.max}`
}

function parseOne(name: string, spec: ParamSpec, pattern: RegExp | undefined, raw: unknown): string | number | { problem: string } {
  if (typeof raw !== 'string') return { problem: `param ${name} must be a string` }
  const shown = raw.length > 40 ? `${raw.slice(0, 40)}…` : raw
  switch (spec.type) {
    case 'integer':
    case 'number': {
      const n = Number(raw)
      // The pattern enforces the syntax and range; the numeric check is a second guard.
      if (!pattern!.test(raw) || !Number.isFinite(n) || n < spec.min || n > spec.max) {
        return { problem: `param ${name} must be ${describeRange(spec)}, got "${shown}"` }
      }
      return n
    }
    case 'enum':
      if (spec.values.length > 0 && !spec.values.includes(raw)) {
        return { problem: `param ${name} must be one of ${spec.values.join(', ')}, got "${shown}"` }
      }
      if (spec.values.length === 0 && [...raw].length > 200) return { problem: `param ${name} is longer than 200 characters` }
      return raw
    case 'string':
      if ([...raw].length > spec.maxLength) return { problem: `param ${name} is longer than ${spec.maxLength} characters` }
      return raw
  }
}

function schemaFor(spec: ParamSpec, pattern: string | undefined): Record<string, unknown> {
  switch (spec.type) {
    case 'integer':
    case 'number':
      return { type: 'string', pattern, description: `${spec.description} (${describeRange(spec)})` }
    case 'enum':
      // An empty list (nothing known yet) would make every value invalid: accept any short string instead.
      if (spec.values.length === 0) return { type: 'string', maxLength: 200, description: spec.description }
      return { type: 'string', enum: [...spec.values], description: spec.description, ...(spec.default === undefined ? {} : { default: spec.default }) }
    case 'string':
      return { type: 'string', maxLength: spec.maxLength, description: spec.description }
  }
}

/** Anchored pattern source for numeric params; undefined for the others. */
export function patternFor(spec: ParamSpec): string | undefined {
  if (spec.type === 'integer') return `^(?:${integerRangePattern(spec.min, spec.max)})$`
  if (spec.type === 'number') {
    // [min, max-1] with any fraction, or exactly max with an all-zero fraction.
    const whole = spec.max > spec.min ? `(?:${integerRangePattern(spec.min, spec.max - 1)})(?:\\.[0-9]+)?|` : ''
    return `^(?:${whole}${spec.max}(?:\\.0+)?)$`
  }
  return undefined
}

/**
 * A regular expression (unanchored source) matching exactly the canonical
 * decimal spellings (no leading zeros, no plus sign, no "-0") of the integers
 * in [min, max].
 */
export function integerRangePattern(min: number, max: number): string {
  if (!Number.isSafeInteger(min) || !Number.isSafeInteger(max) || min > max) throw new Error('integerRangePattern: bad bounds')
  const parts: string[] = []
  if (min < 0) parts.push(`-(?:${nonNegativeRange(Math.max(1, -max), -min)})`)
  if (max >= 0) parts.push(nonNegativeRange(Math.max(0, min), max))
  return parts.join('|')
}

function nonNegativeRange(min: number, max: number): string {
  const lo = String(min)
  const hi = String(max)
  const parts: string[] = []
  for (let len = lo.length; len <= hi.length; len++) {
    const a = len === lo.length ? lo : `1${'0'.repeat(len - 1)}`
    const b = len === hi.length ? hi : '9'.repeat(len)
    parts.push(sameLength(a, b))
  }
  return parts.join('|')
}

function digits(from: number, to: number): string {
  return from === to ? String(from) : `[${from}-${to}]`
}

function anyDigits(n: number): string {
  return n === 0 ? '' : n === 1 ? '[0-9]' : `[0-9]{${n}}`
}

/** Digit strings a <= b of the same length (inner positions may have leading zeros). */
function sameLength(a: string, b: string): string {
  if (a === b) return a
  const da = Number(a[0])
  const db = Number(b[0])
  const ra = a.slice(1)
  const rb = b.slice(1)
  const n = ra.length
  const zeros = '0'.repeat(n)
  const nines = '9'.repeat(n)
  if (n === 0) return digits(da, db)
  if (ra === zeros && rb === nines) return digits(da, db) + anyDigits(n)
  if (da === db) return `${da}(?:${sameLength(ra, rb)})`
  const parts: string[] = []
  let first = da
  if (ra !== zeros) {
    parts.push(`${da}(?:${sameLength(ra, nines)})`)
    first = da + 1
  }
  let last = db
  let high: string | undefined
  if (rb !== nines) {
    high = `${db}(?:${sameLength(zeros, rb)})`
    last = db - 1
  }
  if (first <= last) parts.push(digits(first, last) + anyDigits(n))
  if (high) parts.push(high)
  return parts.join('|')
}
