// Connections nobody refers to any more are freed when the collector finds
// them, for every watcher of the process, through one FinalizationRegistry
// that is never collected: V8 (Node 18 to 22) stops every registry of a
// process from calling back once one is collected with cleanup due, as a
// registry per watcher was whenever a watcher went soon after a connection.
//
// Every idle connection pays for its registration, so it is kept small: the
// held value is a ticket (a small integer, no object) naming the watcher and
// the id in two columns, and nothing is unregistered (an unregister token
// costs a hash-table entry). A connection freed some other way kills its
// ticket instead, so the callback that comes when the object dies does
// nothing: after 4096 reuses of its slot the id would name another
// connection. A ticket is reused only after its callback ran. V8 heap per
// registration: 72 B, where an object held value and a token took 154 B.

/** @internal A watcher as the registry sees it. */
export interface ForgottenConnOwner {
  /** Frees `id`, whose connection (or listener) nobody refers to any more. */
  releaseForgotten(id: number): void
}

const owners = new Map<number, WeakRef<ForgottenConnOwner>>()
let lastOwner = 0
/** The owner per ticket; 0 for a ticket killed or free. Float64: owner numbers are never reused. */
let ownerOf = new Float64Array(256)
/** The id per live ticket; for a free one, the next free ticket (-1: none). */
let idOf = new Int32Array(256)
let freeTicket = -1
let unusedTicket = 0

const registry = new FinalizationRegistry<number>((ticket) => {
  const owner = ownerOf[ticket]!
  const id = idOf[ticket]!
  ownerOf[ticket] = 0
  idOf[ticket] = freeTicket
  freeTicket = ticket
  if (owner !== 0) owners.get(owner)?.deref()?.releaseForgotten(id)
})

/** @internal Makes `owner` known to the registry; returns the number its tickets name it by. */
export function enrolOwner(owner: WeakRef<ForgottenConnOwner>): number {
  owners.set(++lastOwner, owner)
  return lastOwner
}

/** @internal The owner closed or was collected: callbacks for its connections do nothing. */
export function retireOwner(owner: number): void {
  owners.delete(owner)
}

/** @internal Frees `id` of `owner` once `object` is collected; returns the ticket to kill if it is freed first. */
export function trackForgotten(object: object, owner: number, id: number): number {
  let ticket = freeTicket
  if (ticket >= 0) {
    freeTicket = idOf[ticket]!
  } else {
    ticket = unusedTicket++
    if (ticket === idOf.length) {
      const ownersBefore = ownerOf
      const idsBefore = idOf
      ownerOf = new Float64Array(ticket * 2)
      idOf = new Int32Array(ticket * 2)
      ownerOf.set(ownersBefore)
      idOf.set(idsBefore)
    }
  }
  ownerOf[ticket] = owner
  idOf[ticket] = id
  registry.register(object, ticket)
  return ticket
}

/** @internal The connection of `ticket` (-1: none) was freed otherwise; its callback will do nothing. */
export function killTicket(ticket: number): void {
  if (ticket >= 0) ownerOf[ticket] = 0
}
