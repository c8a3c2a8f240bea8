// Minimal typings for the Holepunch modules we use; they ship no declarations.
declare module 'hyperdht' {
  import { EventEmitter } from 'node:events'
  export interface KeyPair { publicKey: Buffer; secretKey: Buffer }
  export interface DHTNodeAddress { host: string; port: number }
  export default class DHT extends EventEmitter {
    constructor(opts?: {
      bootstrap?: Array<string | DHTNodeAddress>
      host?: string
      port?: number
      firewalled?: boolean
      ephemeral?: boolean
      keyPair?: KeyPair
    })
    static keyPair(seed?: Buffer | Uint8Array): KeyPair
    static bootstrapper(port: number, host: string, opts?: Record<string, unknown>): DHT
    ready(): Promise<void>
    destroy(opts?: { force?: boolean }): Promise<void>
    address(): { host: string; port: number }
    defaultKeyPair: KeyPair
  }
}

declare module 'hyperdht/testnet.js' {
  import DHT from 'hyperdht'
  interface Testnet {
    nodes: DHT[]
    bootstrap: Array<{ host: string; port: number }>
    destroy(): Promise<void>
  }
  export default function createTestnet(size?: number, opts?: { host?: string; port?: number; teardown?: unknown }): Promise<Testnet>
}

declare module 'hyperswarm' {
  import { EventEmitter } from 'node:events'
  import { Duplex } from 'node:stream'
  import DHT, { KeyPair } from 'hyperdht'
  export interface NoiseSecretStream extends Duplex {
    remotePublicKey: Buffer
    publicKey: Buffer
    handshakeHash: Buffer
    isInitiator: boolean
    rawStream: { remoteHost?: string; remotePort?: number }
    opened: Promise<boolean>
    userData: unknown
  }
  export interface PeerInfo {
    publicKey: Buffer
    topics: Buffer[]
    client: boolean
    ban(banStatus?: boolean): void
  }
  export interface Discovery {
    flushed(): Promise<void>
    refresh(opts?: { client?: boolean; server?: boolean }): Promise<void>
    destroy(): Promise<void>
  }
  export default class Hyperswarm extends EventEmitter {
    constructor(opts?: {
      keyPair?: KeyPair
      seed?: Buffer
      maxPeers?: number
      firewall?: (remotePublicKey: Buffer) => boolean
      dht?: DHT
      bootstrap?: Array<string | { host: string; port: number }>
      /** ms between redials of a peer after its 1st, 2nd, 3rd and later failures (not in the README; see lib/retry-timer.js) */
      backoffs?: [number, number, number, number]
    })
    dht: DHT
    keyPair: KeyPair
    connections: Set<NoiseSecretStream>
    /** peers met or joined, by hex public key */
    peers: Map<string, PeerInfo>
    join(topic: Buffer, opts?: { server?: boolean; client?: boolean }): Discovery
    leave(topic: Buffer): Promise<void>
    joinPeer(publicKey: Buffer): void
    leavePeer(publicKey: Buffer): void
    flush(): Promise<void>
    destroy(): Promise<void>
    on(event: 'connection', listener: (conn: NoiseSecretStream, info: PeerInfo) => void): this
    on(event: string, listener: (...args: any[]) => void): this
  }
}

declare module 'protomux' {
  import { Duplex } from 'node:stream'
  export interface Encoding<T = any> {
    preencode(state: any, v: T): void
    encode(state: any, v: T): void
    decode(state: any): T
  }
  export interface Message<T = any> {
    send(value: T): boolean
    type: number
  }
  export interface Channel {
    open(handshake?: unknown): void
    close(): void
    cork(): void
    uncork(): void
    addMessage<T = any>(opts: { encoding?: Encoding<T>; onmessage?: (value: T, channel: Channel) => void }): Message<T>
    opened: boolean
    closed: boolean
    userData: unknown
    id: Buffer | null
    protocol: string
    messages: Message[]
  }
  export default class Protomux {
    constructor(stream: Duplex, opts?: Record<string, unknown>)
    static from(stream: Duplex, opts?: Record<string, unknown>): Protomux
    stream: Duplex
    isIdle(): boolean
    cork(): void
    uncork(): void
    pair(opts: { protocol: string; id?: Buffer | null }, notify: (id: Buffer | null) => void): void
    unpair(opts: { protocol: string; id?: Buffer | null }): void
    opened(opts: { protocol: string; id?: Buffer | null }): boolean
    createChannel(opts: {
      protocol: string
      id?: Buffer | null
      handshake?: Encoding
      unique?: boolean
      userData?: unknown
      messages?: Array<{ encoding?: Encoding; onmessage?: (value: any, channel: Channel) => void }>
      onopen?: (handshake: any, channel: Channel) => void | Promise<void>
      onclose?: (isRemote: boolean, channel: Channel) => void
      ondestroy?: () => void
      ondrain?: (channel: Channel) => void
    }): Channel | null
  }
}

declare module 'compact-encoding' {
  import type { Encoding } from 'protomux'
  export const raw: Encoding<Buffer>
  export const buffer: Encoding<Buffer | null>
  export const string: Encoding<string>
  export const utf8: Encoding<string>
  export const uint: Encoding<number>
  export const json: Encoding<unknown>
  export const fixed32: Encoding<Buffer>
  export const fixed64: Encoding<Buffer>
  export function encode<T>(enc: Encoding<T>, v: T): Buffer
  export function decode<T>(enc: Encoding<T>, buf: Buffer | Uint8Array): T
  const c: {
    raw: Encoding<Buffer>
    buffer: Encoding<Buffer | null>
    string: Encoding<string>
    utf8: Encoding<string>
    uint: Encoding<number>
    json: Encoding<unknown>
    fixed32: Encoding<Buffer>
    encode<T>(enc: Encoding<T>, v: T): Buffer
    decode<T>(enc: Encoding<T>, buf: Buffer | Uint8Array): T
  }
  export default c
}

declare module 'b4a' {
  const b4a: {
    from(v: string, enc?: BufferEncoding): Buffer
    from(v: ArrayLike<number> | ArrayBuffer): Buffer
    toString(b: Uint8Array, enc?: BufferEncoding): string
    alloc(n: number, fill?: number): Buffer
    equals(a: Uint8Array, b: Uint8Array): boolean
    concat(list: Uint8Array[]): Buffer
    isBuffer(v: unknown): v is Buffer
  }
  export default b4a
}
