// A local, durable PLC directory for Atelier's sandbox profile (npm @did-plc/server).
//
// @did-plc/server keeps operations in memory when run with its mock database. This entry
// point makes it durable: every operation the server accepts is appended to a JSON-lines
// log (one {"did","operation","createdAt"} object per line, fsync'd before the request is
// answered), and the log is replayed through the same validation path at start-up.
// A torn last line (a crash in the middle of an append) is detected and cut off; a corrupt
// line anywhere else stops start-up with its line number, because silently dropping an
// operation would fork an identity's history.
//
// Environment:
//   PLC_PORT             port to listen on (0 = any free port)
//   PLC_OPLOG            path of the operation log (created if missing)
//   ATELIER_LISTEN_HOST  address to bind (default 127.0.0.1)
//   ATELIER_READY_FILE   optional path; written with {"port":N} once listening
import { openSync, readFileSync, writeSync, fsyncSync, ftruncateSync, existsSync, writeFileSync, renameSync, closeSync } from 'node:fs'
import plcServer from '@did-plc/server'

const { PlcServer, Database } = plcServer
const host = process.env.ATELIER_LISTEN_HOST || '127.0.0.1'
const port = Number.parseInt(process.env.PLC_PORT ?? '0', 10)
const logPath = process.env.PLC_OPLOG
if (!logPath) {
  console.error('plc.mjs: PLC_OPLOG must name the operation log file')
  process.exit(2)
}

const db = Database.mock()
const addOp = db.validateAndAddOp.bind(db)

// Replay the log.
let replayed = 0
if (existsSync(logPath)) {
  const text = readFileSync(logPath, 'utf8')
  const lines = text.split('\n')
  // Everything after the last newline is either empty or a torn append.
  const torn = lines.pop()
  let goodBytes = 0
  for (const [i, line] of lines.entries()) {
    if (line.length > 0) {
      let entry
      try {
        entry = JSON.parse(line)
      } catch (err) {
        console.error(`plc.mjs: ${logPath} line ${i + 1} is not valid JSON (${err.message}); refusing to start`)
        process.exit(3)
      }
      await addOp(entry.did, entry.operation)
      const ops = db.contents[entry.did]
      ops[ops.length - 1].createdAt = new Date(entry.createdAt)
      replayed += 1
    }
    goodBytes += Buffer.byteLength(line, 'utf8') + 1
  }
  if (torn && torn.length > 0) {
    const fd = openSync(logPath, 'r+')
    ftruncateSync(fd, goodBytes)
    fsyncSync(fd)
    closeSync(fd)
    console.log(JSON.stringify({ atelier: 'plc-log-truncated', discardedBytes: Buffer.byteLength(torn, 'utf8') }))
  }
}
const logFd = openSync(logPath, 'a')

db.validateAndAddOp = async (did, operation) => {
  await addOp(did, operation)
  const ops = db.contents[did]
  const createdAt = ops[ops.length - 1].createdAt.toISOString()
  try {
    writeSync(logFd, JSON.stringify({ did, operation, createdAt }) + '\n')
    fsyncSync(logFd)
  } catch (err) {
    // Memory and disk would disagree from here on: stop before the request is answered.
    console.error(`plc.mjs: cannot append to ${logPath}: ${err.message}`)
    process.exit(4)
  }
}

const plc = PlcServer.create({ db, port, version: '0.0.1' })
plc.server = plc.app.listen(port, host)
await new Promise((resolve, reject) => {
  plc.server.once('listening', resolve)
  plc.server.once('error', reject)
})
const bound = plc.server.address().port
if (process.env.ATELIER_READY_FILE) {
  const tmp = `${process.env.ATELIER_READY_FILE}.tmp`
  writeFileSync(tmp, JSON.stringify({ port: bound }))
  renameSync(tmp, process.env.ATELIER_READY_FILE)
}
console.log(JSON.stringify({ atelier: 'ready', service: 'plc', host, port: bound, replayed }))

const stop = (signal) => {
  console.log(JSON.stringify({ atelier: 'stopping', service: 'plc', signal }))
  plc.server.close(() => process.exit(0))
  setTimeout(() => process.exit(0), 2000).unref()
}
process.on('SIGTERM', () => stop('SIGTERM'))
process.on('SIGINT', () => stop('SIGINT'))
