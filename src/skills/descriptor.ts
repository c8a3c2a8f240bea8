import type { ProcessorInfo } from '../processors/types.js'
import type { Pricing } from '../provider/pricing.js'

/**
 * What a provider tells customers before they pay: what it does, what it
 * accepts, what it costs. The JSON Schema is skills/skill.schema.json.
 */
export interface SkillDescriptor {
  name: string
  version: string
  kinds: number[]
  about?: string
  features: string[]
  /** JSON Schema for the job's params */
  input: { params: Record<string, unknown> }
  output: string
  models: string[]
  pricing: {
    unit: 'sat'
    perMinute: number
    chunksPerSat: number
    perJob: number
  }
  /** mints whose ecash the provider accepts */
  mints: string[]
  /** the backend origin is never disclosed; only whether one exists */
  tunnel: boolean
}

export function buildSkill(opts: {
  info: ProcessorInfo
  kinds: number[]
  pricing: Pricing
  mints: string[]
  tunnel: boolean
  about?: string
}): SkillDescriptor {
  return {
    name: opts.info.name,
    version: '1',
    kinds: opts.kinds,
    about: opts.about,
    features: opts.info.features,
    input: { params: opts.info.paramsSchema },
    output: opts.info.output,
    models: opts.info.models,
    pricing: { unit: 'sat', perMinute: opts.pricing.perMinute, chunksPerSat: opts.pricing.chunksPerSat, perJob: opts.pricing.perJob },
    mints: opts.mints,
    tunnel: opts.tunnel,
  }
}
