// What a server gives back to the system and takes from it: socket files
// removed when their listener goes, so a restart can listen again at once;
// accepts that resume by themselves once descriptors are free again.
import test from 'ava'
import { spawn } from 'node:child_process'
import { existsSync, mkdtempSync, rmSync } from 'node:fs'
import { connect as netConnect, type Socket } from 'node:net'
import { tmpdir } from 'node:os'
import { join } from 'node:path'
import { Watcher } from '../index'
import { indexJs, scaled, spawnOutOfDescriptors, within } from './helpers'

const modes = ['thread', 'inline'] as const

function socketDir(t: { teardown(fn: () => void): void }): string {
  const dir = mkdtempSync(join(tmpdir(), 'gaio-files-'))
  t.teardown(() => rmSync(dir, { recursive: true, force: true }))
  return dir
}

for (const mode of modes) {
  test(`[${mode}] close() removes a Unix listener's socket file at once, even one listened on in the same tick`, (t) => {
    const path = join(socketDir(t), 'server.sock')
    const w = new Watcher({ mode })
    w.listen({ path })
    t.true(existsSync(path))
    w.close()
    t.false(existsSync(path), 'removed by close() itself')
    // A restarted server listens again on the same path.
    const again = new Watcher({ mode })
    t.teardown(() => again.close())
    t.is(again.listen({ path }).address, path)
  })

  test(`[${mode}] free(listener) removes the socket file before it returns: the path can be listened on again at once`, (t) => {
    const path = join(socketDir(t), 'server.sock')
    const w = new Watcher({ mode })
    t.teardown(() => w.close())
    for (let i = 0; i < 3; i++) {
      const listener = w.listen({ path })
      w.free(listener)
      t.false(existsSync(path), `round ${i}: removed by free()`)
    }
  })

  test(`[${mode}] after EMFILE, pending accepts resume by themselves once descriptors are free (no new request, no new client)`, async (t) => {
    t.timeout(scaled(30_000))
    const child = spawnOutOfDescriptors(mode, `
      // Two accepts: the first hears of EMFILE, the second must be served once descriptors are back.
      w.accept('first', ln)
      w.accept('second', ln)
      console.log(JSON.stringify({ port: ln.port }))
      const outcome = {}
      ;(async () => {
        for await (const results of w) {
          for (const res of results) {
            outcome[res.context] = res.error ? res.error.code : 'accepted'
            // Give descriptors back behind the watcher's back: nothing new is submitted.
            if (res.error) while (fillers.length) fs.closeSync(fillers.pop())
          }
          if (outcome.second) break
        }
        console.log(JSON.stringify(outcome))
        w.close()
      })().catch((e) => { console.error(e); process.exit(3) })
      setTimeout(() => { console.log(JSON.stringify({ ...outcome, stalled: true })); process.exit(0) }, ${scaled(10_000)}).unref()
    `)
    let out = ''
    let err = ''
    child.stderr.on('data', (d) => (err += d))
    const exited = new Promise<number | null>((resolve) => child.once('close', resolve))
    const { port } = await within(10_000, 'the child listening', new Promise<{ port: number }>((resolve) => {
      child.stdout.on('data', (d) => {
        out += d
        if (out.includes('\n')) resolve(JSON.parse(out.split('\n')[0]))
      })
    }))
    // One client, once: it waits in the backlog.
    const client: Socket = netConnect(port, '127.0.0.1')
    client.on('error', () => {})
    t.teardown(() => client.destroy())
    t.is(await within(20_000, 'the child exits', exited), 0, err)
    const outcome = JSON.parse(out.trim().split('\n').pop()!)
    t.deepEqual(outcome, { first: 'EMFILE', second: 'accepted' })
  })
}

for (const mode of modes) {
  test(`[${mode}] a 256 MiB write does not double memory (peak RSS grows by far less than the write), and what is written after it follows it`, async (t) => {
    t.timeout(scaled(120_000))
    const script = `
      const { Watcher } = require(process.env.GAIO_INDEX)
      const net = require('node:net')
      const fs = require('node:fs')
      const peakRss = () => Number(/VmHWM:\\s+(\\d+)/.exec(fs.readFileSync('/proc/self/status', 'utf8'))[1]) * 1024
      const big = Buffer.alloc(256 << 20)
      for (let i = 0; i < big.length; i += 4096) big[i] = (i / 4096) & 255 // every page resident
      const tail = Buffer.from('the bytes after the big write')
      let received = 0
      let lastBytes = Buffer.alloc(0)
      const server = net.createServer((s) => {
        s.on('data', (d) => {
          received += d.length
          lastBytes = Buffer.concat([lastBytes, d]).subarray(-tail.length)
        })
        s.on('end', () => {
          console.log(JSON.stringify({ received, tailLast: lastBytes.equals(tail), growth: peakRss() - before }))
          server.close()
          w.close()
        })
      })
      const w = new Watcher({ mode: process.env.GAIO_MODE })
      let before
      server.listen(0, '127.0.0.1', async () => {
        w.connect('c', { host: '127.0.0.1', port: server.address().port })
        const [connected] = await w.waitIO()
        before = peakRss()
        w.write('head', connected.conn, Buffer.from('head')) // finishes first: it must not release the tail early
        w.write('big', connected.conn, big)
        w.write('tail', connected.conn, tail)
        w.closeWrite('fin', connected.conn)
        let done = 0
        while (done < 4) for (const r of await w.waitIO()) { if (r.error) throw r.error; done++ }
      })
    `
    const child = spawn(process.execPath, ['-e', script], {
      env: { ...process.env, GAIO_INDEX: indexJs, GAIO_MODE: mode },
      stdio: ['ignore', 'pipe', 'pipe'],
    })
    let out = ''
    child.stdout.on('data', (d) => (out += d))
    child.stderr.on('data', (d) => (out += d))
    const code = await within(100_000, 'the child exits', new Promise<number | null>((resolve) => child.once('close', resolve)))
    t.is(code, 0, out)
    const result = JSON.parse(out.trim().split('\n').pop()!) as { received: number; tailLast: boolean; growth: number }
    t.is(result.received, 4 + (256 << 20) + 29)
    t.true(result.tailLast, 'the write made after the big one arrived after it')
    t.true(result.growth < 64 << 20, `peak RSS grew by ${(result.growth / 2 ** 20).toFixed(1)} MiB for a 256 MiB write`)
    t.log(`peak RSS growth: ${(result.growth / 2 ** 20).toFixed(1)} MiB`)
  })
}
