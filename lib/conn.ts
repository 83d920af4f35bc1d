// Connections and listeners as the caller holds them, and the ids that name
// them to the engine.

import { inspect } from 'node:util'
import { native } from './native'

/** @internal One watcher as its connections know it: whose they are, and whether it still runs. */
export class WatcherScope {
  closed = false
  /** The poller died: its sockets are closed, whatever the connections say. */
  failed = false
}

/** @internal What the watcher knows of one connection or listener: the object itself, to keep one per connection. */
export interface ConnState {
  readonly id: number
  readonly listener: boolean
  /** Which watcher made it: ids are per watcher, so another's would name one of ours. */
  readonly owner: WatcherScope
  freed: boolean
  /** Its registration with the collector (lib/forgotten.ts); -1 before it has one. */
  ticket: number
}

/** Local and remote addresses of a connection, read once, when first asked for. */
type Addresses = [localAddress?: string, localPort?: number, remoteAddress?: string, remotePort?: number]

const addressCache = new WeakMap<Conn, Addresses>()

function familyOf(address: string | undefined): 'IPv4' | 'IPv6' | undefined {
  return address === undefined ? undefined : address.includes(':') ? 'IPv6' : 'IPv4'
}

/**
 * A connection owned by a watcher: accepted, connected, or delegated. Its
 * addresses are read from the socket when first asked for (a system call),
 * then kept; they are `undefined` for a Unix socket, and for a connection
 * freed (or whose watcher closed) before they were asked for, as for a
 * destroyed `net.Socket`. Results hand out Conns; do not construct one.
 * @example
 * if (res.operation === OpType.Accept && res.error === null) {
 *   console.log(`${res.conn.remoteAddress}:${res.conn.remotePort} connected`)
 *   w.read(null, res.conn)
 * }
 */
export class Conn {
  /** @internal */ readonly id: number
  /** @internal */ readonly owner: WatcherScope
  /** @internal */ freed = false
  /** @internal */ ticket = -1
  /** @internal The socket's descriptor while it is open (-1 before it is known). */ fd = -1
  /** @internal Writes and half-closes of this connection's in the engine: with none, the JS thread may send itself. */ writing = 0
  /** @internal */ constructor(id: number, owner: WatcherScope) {
    this.id = id
    this.owner = owner
  }

  /** @internal */ get listener(): false {
    return false
  }

  /** @internal Whether `fd` is still this connection's socket. */
  get open(): boolean {
    return this.fd >= 0 && !this.freed && !this.owner.closed && !this.owner.failed
  }

  private addresses(): Addresses {
    let known = addressCache.get(this)
    if (known === undefined) {
      if (!this.open) return []
      known = native.socketAddresses(this.fd)
      addressCache.set(this, known)
    }
    return known
  }

  /**
   * The peer's IP address, as Node's `socket.remoteAddress`.
   * @example conn.remoteAddress // '127.0.0.1'
   */
  get remoteAddress(): string | undefined {
    return this.addresses()[2]
  }

  /** The peer's port. @example conn.remotePort // 54321 */
  get remotePort(): number | undefined {
    return this.addresses()[3]
  }

  /** 'IPv4' or 'IPv6', of the peer's address. @example conn.remoteFamily // 'IPv4' */
  get remoteFamily(): 'IPv4' | 'IPv6' | undefined {
    return familyOf(this.remoteAddress)
  }

  /** This end's IP address. @example conn.localAddress // '127.0.0.1' */
  get localAddress(): string | undefined {
    return this.addresses()[0]
  }

  /** This end's port. @example conn.localPort // 8080 */
  get localPort(): number | undefined {
    return this.addresses()[1]
  }

  /** 'IPv4' or 'IPv6', of this end's address. @example conn.localFamily // 'IPv4' */
  get localFamily(): 'IPv4' | 'IPv6' | undefined {
    return familyOf(this.localAddress)
  }

  /** @internal A short form for console.log: the addresses, not the internals. */
  [inspect.custom](): string {
    if (this.freed || this.owner.closed) return 'Conn { closed }'
    const remote = this.remoteAddress === undefined ? '' : ` ${this.localAddress}:${this.localPort} -> ${this.remoteAddress}:${this.remotePort}`
    return `Conn {${remote || ' open'} }`
  }
}

/**
 * A listening socket owned by a watcher, from `listen()`.
 * @example
 * const ln = w.listen({ host: '127.0.0.1', port: 0 })
 * w.accept(null, ln)
 * console.log(`listening on ${ln.address}:${ln.port}`)
 */
export class Listener {
  /** @internal */ readonly id: number
  /** @internal */ readonly owner: WatcherScope
  /** @internal */ freed = false
  /** @internal */ ticket = -1
  /** The bound TCP port (0 for a Unix socket). @example listener.port // 8080 */
  readonly port: number
  /** The host it was bound to, or the Unix socket path. @example listener.address // '127.0.0.1' */
  readonly address: string
  /** @internal */ constructor(id: number, owner: WatcherScope, port: number, address: string) {
    this.id = id
    this.owner = owner
    this.port = port
    this.address = address
  }

  /** @internal */ get listener(): true {
    return true
  }

  /** @internal A short form for console.log. */
  [inspect.custom](): string {
    const where = this.port === 0 ? this.address : `${this.address.includes(':') ? `[${this.address}]` : this.address}:${this.port}`
    return `Listener { ${where}${this.freed || this.owner.closed ? ', closed' : ''} }`
  }
}

// A connection id is a slot in the engine's table plus a generation, so a
// stale id never reaches a newer connection in the same slot.
const SLOT_BITS = 20
const SLOTS = 1 << SLOT_BITS
const GENERATIONS = 1 << (32 - SLOT_BITS)
/** @internal The id of a connection that never existed (a connect that failed before it had one). */
export const DEAD_CONN_ID = -1

/** @internal */
export class ConnIds {
  private free: number[] = []
  private generations: number[] = []

  allocate(): number {
    const slot = this.free.pop() ?? this.generations.length
    if (slot >= SLOTS) throw new RangeError(`a watcher holds at most ${SLOTS} connections`)
    if (slot === this.generations.length) this.generations.push(0)
    return (this.generations[slot]! * SLOTS + slot) | 0
  }

  /** Frees `id` for reuse; false, changing nothing, if it was already released (a stale id). */
  release(id: number): boolean {
    const slot = id & (SLOTS - 1)
    const generation = id >>> SLOT_BITS
    if (this.generations[slot] !== generation || id === DEAD_CONN_ID) return false
    this.generations[slot] = (generation + 1) % GENERATIONS
    this.free.push(slot)
    return true
  }
}
