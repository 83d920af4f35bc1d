// gaio's test suite again, with every watcher in inline mode (no poller
// thread: the I/O runs on the JS thread, driven by Node's event loop).
import test from 'ava'
import { readdirSync, readFileSync } from 'node:fs'
import { Watcher } from '../index'
import { useMode, withMode } from './helpers'
import './gaio.spec'

useMode('inline')

test('inline mode: this process runs the whole suite without a poller thread', (t) => {
  const w = new Watcher(withMode())
  t.teardown(() => w.close())
  const names = readdirSync('/proc/self/task').map((tid) => readFileSync(`/proc/self/task/${tid}/comm`, 'utf8').trim())
  t.false(names.includes('gaio-poller'))
})
