// net.Sockets handed to a watcher: whether one can be, and Node's side of the
// hand-over (the watcher adopts a duplicate of the descriptor in between).

import type { Socket } from 'node:net'
import type { Conn } from './conn'
import { GaioError, invalidArgValue } from './errors'

/** net.Sockets handed to a watcher, with the connection each became: one watcher each. */
const delegated = new WeakMap<Socket, Conn>()

interface SocketHandle {
  fd?: number
  readStop?: () => void
}

function handleOf(socket: Socket): SocketHandle | undefined {
  return (socket as unknown as { _handle?: SocketHandle })._handle
}

export function delegatedConn(socket: Socket): Conn | undefined {
  return delegated.get(socket)
}

/** The socket's descriptor, once it is known that nothing of the stream is left in Node's hands. */
export function descriptorOf(socket: Socket): number {
  const fd = handleOf(socket)?.fd
  if (typeof fd !== 'number' || fd < 0) throw invalidArgValue('conn', socket, 'is a net.Socket that is not connected (no file descriptor)')
  if (socket.readableLength > 0) {
    throw new GaioError('ERR_SOCKET_HAS_DATA', 'the net.Socket has already read data: delegate it before reading (for example in its connect callback, or with pauseOnConnect)')
  }
  // Destroying Node's copy would drop what it has not written yet.
  if (socket.writableLength > 0) {
    throw new GaioError('ERR_SOCKET_HAS_DATA', 'the net.Socket still has bytes queued for writing: delegate it once they are written (its write callback, or the drain event)')
  }
  return fd
}

/** Node lets go of the socket, whose descriptor `conn` owns a duplicate of now. */
export function handOver(socket: Socket, conn: Conn): void {
  // Node keeps the peer's address once read, but not its own after destroy():
  // read both now, while its handle is open, and pin its own to the socket.
  void socket.remoteAddress
  const local = { localAddress: socket.localAddress, localPort: socket.localPort, localFamily: socket.localFamily }
  handleOf(socket)!.readStop?.()
  // Closing Node's copy sends nothing to the peer: the duplicate keeps the connection open.
  socket.destroy()
  for (const [name, value] of Object.entries(local)) Object.defineProperty(socket, name, { value, configurable: true })
  delegated.set(socket, conn)
}
