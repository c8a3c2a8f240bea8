/**
 * HTTP/WebSocket tunnel through a paid session.
 *
 *   browser ──TCP──▶ local proxy ──tunnel stream (Duplex)──▶ gateway ──http-proxy──▶ backend origin
 *
 * The local proxy (customer) pipes raw bytes; the gateway (provider) parses
 * HTTP, gates on payment and path policy, and forwards to its one origin.
 * Both sides only need a Node Duplex per stream, so the wire layer plugs in
 * its multiplexed streams and tests use loopback sockets.
 */
export { startLocalProxy, isLoopbackHost, DEFAULT_LOCAL_HOST, DEFAULT_LOCAL_PORT, type LocalProxy, type LocalProxyOptions } from './local-proxy.js'
export { createGateway, parseBackendOrigin, type Gateway, type GatewayOptions } from './gateway.js'
export {
  createPathPolicy,
  normalizeTarget,
  rewriteLocation,
  matchPathPattern,
  type PathPolicy,
  type PathPolicyOptions,
  type PolicyDecision,
  type PolicyRefusal,
} from './path-policy.js'
export { TunnelRefusedError, refusalFromError, renderRefusal, wantsHtml, type Refusal } from './refusal.js'
export { joinStreams } from './join.js'
export { stderrLogger, silentLogger, type TunnelLogger } from './log.js'
