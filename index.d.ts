export { Watcher } from './lib/watcher';
export { Conn, Listener } from './lib/conn';
export { GaioError } from './lib/errors';
export { OpType, type AcceptFailed, type CloseWriteResult, type Connected, type ConnectFailed, type ConnLike, type ConnectOptions, type Deadline, type ListenOptions, type OpResult, type ReadDone, type ReadFailed, type WaitOptions, type WatcherOptions, type WriteResult, } from './lib/types';
export type { ErrorPlace } from './lib/errors';
