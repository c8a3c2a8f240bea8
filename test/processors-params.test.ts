import { Ajv2020 } from 'ajv/dist/2020.js'
import { describe, expect, it } from 'vitest'
import { defineParams, enumParam, integerParam, integerRangePattern, numberParam, ParamError, patternFor, stringParam } from '../src/processors/params.js'

describe('integerRangePattern', () => {
  it('matches exactly the canonical spellings of the integers in range', () => {
    const ranges: Array<[number, number]> = [[0, 0], [0, 9], [1, 99], [7, 13], [100, 199], [19, 1234], [1, 131072], [-5, 17], [-100, -3], [0, 1000]]
    // deterministic pseudo-random extra ranges
    let x = 12345
    const rnd = (n: number) => ((x = (x * 1103515245 + 12345) % 2 ** 31), x % n)
    for (let i = 0; i < 60; i++) {
      const lo = rnd(4000) - 1000
      ranges.push([lo, lo + rnd(5000)])
    }
    for (const [lo, hi] of ranges) {
      const re = new RegExp(`^(?:${integerRangePattern(lo, hi)})$`)
      for (let n = lo - 1100; n <= hi + 1100; n += n > lo + 50 && n < hi - 50 ? 7 : 1) {
        expect(re.test(String(n)), `${n} in [${lo}, ${hi}]`).toBe(n >= lo && n <= hi)
      }
      for (const s of ['', '-0', '00', '01', '+1', '1.0', ' 1', '1e2', '0x1']) expect(re.test(s), `${JSON.stringify(s)} in [${lo}, ${hi}]`).toBe(false)
    }
  })

  it('covers a large range without listing it', () => {
    const re = new RegExp(patternFor(integerParam(0, 2147483647, 'seed'))!)
    expect(re.test('2147483647')).toBe(true)
    expect(re.test('2147483648')).toBe(false)
    expect(re.test('999999999')).toBe(true)
    expect(re.source.length).toBeLessThan(300)
  })
})

describe('decimal params', () => {
  it('accepts plain decimals within integer bounds', () => {
    const re = new RegExp(patternFor(numberParam(0, 2, 'temperature'))!)
    for (const ok of ['0', '0.7', '1', '1.99', '2', '2.0', '2.000', '0.000001']) expect(re.test(ok), ok).toBe(true)
    for (const bad of ['2.01', '3', '-1', '.5', '1.', '01', '1e0', 'NaN', 'Infinity', ' 1', '']) expect(re.test(bad), bad).toBe(false)
  })

  it('a single-value range', () => {
    const re = new RegExp(patternFor(numberParam(1, 1, 'one'))!)
    expect(re.test('1')).toBe(true)
    expect(re.test('1.00')).toBe(true)
    expect(re.test('0.5')).toBe(false)
  })

  it('refuses bounds a pattern cannot express (a programming error, found at definition)', () => {
    expect(() => defineParams({ t: numberParam(0, 1.5, 't') })).toThrow(/bounds must be integers/)
    expect(() => defineParams({ t: numberParam(-1, 1, 't') })).toThrow(/negative decimal ranges/)
    expect(() => defineParams({ t: integerParam(5, 1, 't') })).toThrow(/min <= max/)
  })
})

describe('defineParams', () => {
  const set = defineParams({
    model: enumParam(['a', 'b'], 'model', 'a'),
    max_tokens: integerParam(1, 4096, 'limit'),
    temperature: numberParam(0, 2, 'temp'),
    system: stringParam(10, 'system prompt'),
  })

  it('parses strings into typed values', () => {
    const p = set.parse({ model: 'b', max_tokens: '100', temperature: '0.25', system: 'short' })
    expect(p).toEqual({ model: 'b', max_tokens: 100, temperature: 0.25, system: 'short' })
    expect(set.parse({})).toEqual({})
  })

  it('names every problem in one message', () => {
    try {
      set.parse({ model: 'c', max_tokens: '0', temperature: 'warm', system: 'x'.repeat(11), extra: '1' })
      expect.unreachable()
    } catch (err) {
      expect(err).toBeInstanceOf(ParamError)
      expect((err as Error).message).toBe(
        'param model must be one of a, b, got "c"; param max_tokens must be a whole number from 1 to 4096, got "0"; param temperature must be a number from 0 to 2, got "warm"; param system is longer than 10 characters; param extra is not accepted (accepted: model, max_tokens, temperature, system)',
      )
    }
  })

  it('publishes a schema that accepts exactly what parse accepts', () => {
    const check = new Ajv2020({ strict: false }).compile(set.schema)
    const values = ['', '0', '1', '4096', '4097', '0.5', '2', '2.5', 'a', 'b', 'c', '-1', '01', 'x'.repeat(10), 'x'.repeat(11), '1e3', ' 1']
    for (const name of ['model', 'max_tokens', 'temperature', 'system', 'other']) {
      for (const v of values) {
        let parsed = true
        try {
          set.parse({ [name]: v })
        } catch {
          parsed = false
        }
        expect(check({ [name]: v }), `${name}=${JSON.stringify(v)}`).toBe(parsed)
      }
    }
  })

  it("'allow' passes unknown params through as bounded strings", () => {
    const open = defineParams({}, { additional: 'allow', maxValueLength: 5 })
    expect(open.parse({ anything: 'ok' })).toEqual({})
    expect(() => open.parse({ anything: 'too long' })).toThrow(/param anything must be a string of at most 5 characters/)
    const check = new Ajv2020({ strict: false }).compile(open.schema)
    expect(check({ anything: 'ok' })).toBe(true)
    expect(check({ anything: 'too long' })).toBe(false)
  })

  it('an enum with no values yet accepts any short string', () => {
    const s = defineParams({ model: enumParam([], 'model') })
    expect(s.parse({ model: 'whatever:latest' })).toEqual({ model: 'whatever:latest' })
    expect(s.schema).toMatchObject({ properties: { model: { type: 'string', maxLength: 200 } } })
  })
})
