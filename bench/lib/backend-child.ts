/**
 * The bench backend (bench/lib/backend.ts) in its own process, as a
 * provider's web UI would be: → { type: 'ready', origin }.
 */
import { startBackend } from './backend.js'
import { fatal, serveCommands, tell } from './child.js'

startBackend()
  .then((b) => {
    serveCommands({}, () => b.close())
    tell('ready', { origin: b.origin })
  })
  .catch(fatal)
