// The local network for development and tests: `dvm-devnet` and the test
// setup both start it through here.
export { startDevnet, type DevnetOptions, type RunningDevnet } from './devnet.js'
export { startDht, devnetDhtOptions, type DhtOptions, type RunningDht, type DhtNodeAddress } from './dht.js'
export { startRelay, type RelayOptions, type RunningRelay } from './relay.js'
export { startMint, type MintOptions, type RunningMint } from './mint.js'
export { MemoryEventRepository, matchesFilter } from './relay-store.js'
export { parseClientMessage } from './relay-protocol.js'
