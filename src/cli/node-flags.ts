/**
 * V8 flags the data-path commands (`dvm-agent`, `dvm-session`) run with; the
 * shebang of each carries them (test/cli.test.ts checks they agree), and the
 * benchmarks start their provider and customer processes with them too.
 *
 * Why: a tunnel moving 100 MB/s allocates a few 64 kB buffers per frame (the
 * backend socket's reads, the HTTP parser's copy, the encrypted frame) and
 * keeps up to a window of them in flight. With V8's default 1 MB young
 * generation they outlive two scavenges, get promoted, and the provider runs
 * a full mark-compact every few megabytes: about a third of its CPU. An 8 MB
 * semi-space lets them die young (measured in BENCHMARKS.md, tunnel notes):
 * a few more MB of RSS for a provider that spends its CPU on the tunnel.
 *
 * With a young generation that large, V8 starts incremental marking whenever
 * the old generation's headroom is below the young generation's capacity. If
 * a mark-compact leaves the limit only ~24 MB above a ~22 MB heap (it happened
 * in about half of the runs), the provider stays in a loop of one full GC
 * every 70-150 ms for as long as the transfer lasts: 7 ms of CPU per MB moved
 * instead of 4.2, and a third less throughput. A 64 MB floor for the old
 * generation's limit keeps the headroom: 9 runs of 9 stayed out of that loop.
 */
export const DATA_PATH_NODE_FLAGS = ['--min-semi-space-size=8', '--initial-old-space-size=64'] as const

/** The shebang line `bin/dvm-agent.ts` and `bin/dvm-session.ts` start with. */
export const DATA_PATH_SHEBANG = `#!/usr/bin/env -S node ${DATA_PATH_NODE_FLAGS.join(' ')}`
