import { readFileSync } from 'node:fs'
import { Ajv2020 } from 'ajv/dist/2020.js'
import type { SkillDescriptor } from './descriptor.js'

const SCHEMA_URL = new URL('../../../skills/skill.schema.json', import.meta.url)
// dist/src/skills → ../../../skills ; src/skills (tsx, vitest) → ../../skills
const FALLBACK_URL = new URL('../../skills/skill.schema.json', import.meta.url)

function loadSchema(): Record<string, unknown> {
  for (const u of [FALLBACK_URL, SCHEMA_URL]) {
    try {
      return JSON.parse(readFileSync(u, 'utf8'))
    } catch {
      // try the next layout
    }
  }
  throw new Error('skills/skill.schema.json is missing from the installation; reinstall dvm-agent')
}

/** Validators for skill descriptors and, per descriptor, for job params. One per agent, no shared state. */
export class SkillValidator {
  private readonly ajv = new Ajv2020({ allErrors: true, strict: false, validateFormats: false })
  private readonly skillCheck = this.ajv.compile(loadSchema())
  private readonly paramChecks = new WeakMap<object, ReturnType<Ajv2020['compile']>>()

  /** Throws one sentence naming the first problem. */
  checkSkill(value: unknown): SkillDescriptor {
    if (!this.skillCheck(value)) {
      const e = this.skillCheck.errors?.[0]
      throw new Error(`skill descriptor is invalid: ${e?.instancePath || '(root)'} ${e?.message ?? 'does not match the schema'}`)
    }
    return value as SkillDescriptor
  }

  /** Check job params against the provider's schema before paying anything; returns the problems, empty when fine. */
  checkParams(skill: SkillDescriptor, params: Record<string, string>): string[] {
    const schema = skill.input.params
    let check = this.paramChecks.get(schema)
    if (!check) {
      try {
        check = this.ajv.compile(schema)
      } catch (err) {
        return [`the provider's params schema does not compile (${(err as Error).message})`]
      }
      this.paramChecks.set(schema, check)
    }
    if (check(params)) return []
    return (check.errors ?? []).map((e) => {
      const p = e.params as { additionalProperty?: string; allowedValues?: string[] }
      if (p.additionalProperty) return `param ${p.additionalProperty} is not accepted by this provider`
      const where = e.instancePath ? `param ${e.instancePath.slice(1)}` : 'params'
      return `${where} ${e.message}${p.allowedValues ? ` (${p.allowedValues.join(', ')})` : ''}`
    })
  }
}

export function loadSkillFile(path: string, validator = new SkillValidator()): SkillDescriptor {
  let json: unknown
  try {
    json = JSON.parse(readFileSync(path, 'utf8'))
  } catch (err) {
    throw new Error(`cannot read skill file ${path}: ${(err as Error).message}`)
  }
  return validator.checkSkill(json)
}
