// Entry point for the reference PDS (npm @atproto/pds) as Atelier provisions it.
//
// Configuration comes from the standard PDS_* environment variables, which Atelier's
// control plane (or the test harness) generates. Two Atelier-specific variables:
//   ATELIER_LISTEN_HOST  address to bind (default 127.0.0.1: the PDS's own start() binds
//                        every interface, which a sandbox must never do)
//   ATELIER_READY_FILE   optional path; written with {"port":N} once the PDS is listening
// On SIGTERM or SIGINT the PDS is shut down cleanly (pending writes flushed) and the
// process exits 0.
import { writeFileSync, renameSync } from 'node:fs'
import { PDS, envToCfg, envToSecrets, readEnv } from '@atproto/pds'

const host = process.env.ATELIER_LISTEN_HOST || '127.0.0.1'

const env = readEnv()
const cfg = envToCfg(env)
const secrets = envToSecrets(env)
const pds = await PDS.create(cfg, secrets)

const listen = pds.app.listen.bind(pds.app)
pds.app.listen = (port, ...rest) => listen(port, host, ...rest)
await pds.start()

const port = pds.server.address().port
if (process.env.ATELIER_READY_FILE) {
  const tmp = `${process.env.ATELIER_READY_FILE}.tmp`
  writeFileSync(tmp, JSON.stringify({ port }))
  renameSync(tmp, process.env.ATELIER_READY_FILE)
}
console.log(JSON.stringify({ atelier: 'ready', service: 'pds', host, port, version: env.version ?? null }))

let stopping = false
const stop = async (signal) => {
  if (stopping) return
  stopping = true
  console.log(JSON.stringify({ atelier: 'stopping', service: 'pds', signal }))
  try {
    await pds.destroy()
  } finally {
    process.exit(0)
  }
}
process.on('SIGTERM', () => stop('SIGTERM'))
process.on('SIGINT', () => stop('SIGINT'))
