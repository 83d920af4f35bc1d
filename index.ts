// gaio for Node.js: proactor-pattern TCP I/O, after Go's github.com/xtaci/gaio.
//
// You submit reads, writes, accepts and connects with a context value each;
// a native poller thread performs them on edge-triggered readiness and
// `waitIO()` hands back the completions in batches. This file is the
// package's entry: the facade itself is in lib/ (see ARCHITECTURE.md).

export { Watcher } from './lib/watcher'
export { Conn, Listener } from './lib/conn'
export { GaioError } from './lib/errors'
export {
  OpType,
  type AcceptFailed,
  type CloseWriteResult,
  type Connected,
  type ConnectFailed,
  type ConnLike,
  type ConnectOptions,
  type Deadline,
  type ListenOptions,
  type OpResult,
  type ReadDone,
  type ReadFailed,
  type WaitOptions,
  type WatcherOptions,
  type WriteResult,
} from './lib/types'
export type { ErrorPlace } from './lib/errors'
