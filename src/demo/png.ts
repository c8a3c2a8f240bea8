/**
 * A tiny PNG encoder and the demo's picture. The picture is drawn in code so
 * the demo ships no binary assets, yet the page still pulls a real binary
 * body through the tunnel (which is the point of showing it).
 */
import { deflateSync } from 'node:zlib'

const SIGNATURE = Buffer.from([0x89, 0x50, 0x4e, 0x47, 0x0d, 0x0a, 0x1a, 0x0a])

/** CRC-32 (ISO 3309), as PNG chunks need; node:zlib only exports crc32 from Node 22 on. */
const CRC_TABLE: readonly number[] = Array.from({ length: 256 }, (_, n) => {
  let c = n
  for (let k = 0; k < 8; k++) c = c & 1 ? 0xedb88320 ^ (c >>> 1) : c >>> 1
  return c >>> 0
})

function crc32(data: Buffer): number {
  let c = 0xffffffff
  for (const byte of data) c = (CRC_TABLE[(c ^ byte) & 0xff] as number) ^ (c >>> 8)
  return (c ^ 0xffffffff) >>> 0
}

function chunk(type: string, data: Buffer): Buffer {
  const head = Buffer.alloc(8)
  head.writeUInt32BE(data.length, 0)
  head.write(type, 4, 'latin1')
  const crc = Buffer.alloc(4)
  crc.writeUInt32BE(crc32(Buffer.concat([head.subarray(4), data])), 0)
  return Buffer.concat([head, data, crc])
}

/** Encode 8-bit RGB pixels (row-major, 3 bytes each) as a PNG. */
export function encodePng(width: number, height: number, rgb: Uint8Array): Buffer {
  if (rgb.length !== width * height * 3) throw new Error(`encodePng: expected ${width * height * 3} bytes of RGB for ${width}x${height}, got ${rgb.length}`)
  const ihdr = Buffer.alloc(13)
  ihdr.writeUInt32BE(width, 0)
  ihdr.writeUInt32BE(height, 4)
  ihdr[8] = 8 // bit depth
  ihdr[9] = 2 // colour type: truecolour
  // compression, filter and interlace methods stay 0
  const stride = width * 3
  const raw = Buffer.alloc((stride + 1) * height)
  for (let y = 0; y < height; y++) {
    raw[y * (stride + 1)] = 0 // filter: none
    raw.set(rgb.subarray(y * stride, (y + 1) * stride), y * (stride + 1) + 1)
  }
  return Buffer.concat([SIGNATURE, chunk('IHDR', ihdr), chunk('IDAT', deflateSync(raw, { level: 9 })), chunk('IEND', Buffer.alloc(0))])
}

type Rgb = readonly [number, number, number]

function mix(a: Rgb, b: Rgb, t: number): Rgb {
  const u = Math.min(1, Math.max(0, t))
  return [a[0] + (b[0] - a[0]) * u, a[1] + (b[1] - a[1]) * u, a[2] + (b[2] - a[2]) * u]
}

/** Back-to-front hill layers: base height (0..1 of the image), wave amplitudes, colour. */
const HILLS: ReadonlyArray<{ base: number; waves: ReadonlyArray<[number, number, number]>; color: Rgb }> = [
  { base: 0.62, waves: [[0.06, 1.7, 0.3], [0.025, 5.1, 1.9]], color: [72, 52, 112] },
  { base: 0.72, waves: [[0.05, 2.3, 2.2], [0.02, 7.3, 0.4]], color: [44, 36, 84] },
  { base: 0.83, waves: [[0.04, 3.1, 4.0], [0.015, 9.7, 2.6]], color: [24, 22, 52] },
]

/**
 * A dusk landscape: gradient sky, a soft sun, three layers of hills. Drawn
 * per pixel from a few sines, so it is deterministic and needs no assets.
 */
export function demoPicture(width = 480, height = 270): Buffer {
  const rgb = new Uint8Array(width * height * 3)
  const top: Rgb = [28, 30, 74]
  const middle: Rgb = [196, 92, 120]
  const horizon: Rgb = [252, 186, 120]
  const sun = { x: width * 0.68, y: height * 0.5, r: height * 0.13 }
  for (let y = 0; y < height; y++) {
    const v = y / height
    const sky = v < 0.4 ? mix(top, middle, v / 0.4) : mix(middle, horizon, (v - 0.4) / 0.3)
    for (let x = 0; x < width; x++) {
      const u = x / width
      let c: Rgb = sky
      const d = Math.hypot(x - sun.x, y - sun.y)
      if (d < sun.r) c = mix([255, 236, 190], [255, 214, 150], d / sun.r)
      else c = mix(c, [255, 220, 170], Math.max(0, 0.45 - (d - sun.r) / (sun.r * 4)))
      for (const hill of HILLS) {
        let h = hill.base
        for (const [amp, freq, phase] of hill.waves) h -= amp * Math.sin(u * freq * Math.PI + phase)
        // a little haze on the far hills, none on the near ones
        if (v >= h) c = mix(hill.color, sky, (1 - hill.base) * 0.25 * (1 - (v - h) * 3))
      }
      const i = (y * width + x) * 3
      rgb[i] = Math.round(c[0])
      rgb[i + 1] = Math.round(c[1])
      rgb[i + 2] = Math.round(c[2])
    }
  }
  return encodePng(width, height, rgb)
}
