import { Socket } from 'node:net';
/** What a completed request was. */
export declare enum OpType {
    Read = 0,
    Write = 1,
    Accept = 2,
    Connect = 3
}
/** An error carried by a result or thrown by a call; `code` names it. */
export declare class GaioError extends Error {
    readonly code: string;
    readonly errno?: number;
    constructor(code: string, message: string, errno?: number);
}
/** @internal What the watcher knows of one connection or listener: the object itself, to keep one per connection. */
interface ConnState {
    readonly id: number;
    readonly listener: boolean;
    /** Which watcher made it: ids are per watcher, so another's would name one of ours. */
    readonly owner: number;
    freed: boolean;
}
/** A connection owned by a watcher: accepted, connected, or delegated. */
export declare class Conn implements ConnState {
    /** @internal */ readonly id: number;
    /** @internal */ readonly owner: number;
    /** @internal */ readonly listener = false;
    /** @internal */ freed: boolean;
    /** @internal */ constructor(id: number, owner: number);
}
/** A listening socket owned by a watcher. */
export declare class Listener implements ConnState {
    /** @internal */ readonly id: number;
    /** @internal */ readonly owner: number;
    /** @internal */ readonly listener = true;
    /** @internal */ freed: boolean;
    /** The bound TCP port (0 for a Unix socket). */
    readonly port: number;
    /** The host it was bound to, or the Unix socket path. */
    readonly address: string;
    /** @internal */ constructor(id: number, owner: number, port: number, address: string);
}
/** What requests take as a connection: a Conn, or a net.Socket to delegate on first use. */
export type ConnLike = Conn | Socket;
export interface OpResult {
    operation: OpType;
    /** The context value given with the request. */
    context: unknown;
    /** The connection: for Accept and Connect, the new one. */
    conn: ConnLike;
    /** Reads: the bytes, as a view of the swap buffer or the caller's buffer. Writes: the buffer written. */
    buffer: Uint8Array | null;
    /** Bytes read or written (also when `error` is set, for a partial readFull or write). */
    size: number;
    /** The bytes are in the watcher's swap buffer: valid until the next waitIO(). */
    isSwapBuffer: boolean;
    error: GaioError | null;
}
export interface WatcherOptions {
    /** The most bytes a read without a buffer returns (default 65536). */
    bufferSize?: number;
    /** Size of each of the two swap arenas reads land in (default 1 MiB, at least bufferSize). */
    swapSize?: number;
    /** Pin the poller thread to this CPU (Linux only; not with mode 'inline'). */
    cpu?: number;
    /**
     * 'thread' (default): a poller thread of its own does the I/O, and batches
     * cross to JS; the I/O runs in parallel with JS. 'inline': no thread; Node's
     * event loop watches the watcher's poll descriptor and the I/O runs on the JS
     * thread, writes during the flush: no thread hop per message, the lower latency.
     */
    mode?: 'thread' | 'inline';
}
export interface ListenOptions {
    host?: string;
    port?: number;
    /** A Unix socket path instead of host and port. */
    path?: string;
    backlog?: number;
    reusePort?: boolean;
}
export interface ConnectOptions {
    host?: string;
    port?: number;
    path?: string;
}
export type Deadline = Date | number;
/**
 * One poller thread with the connections given to it. Submit requests with a
 * context value each; `waitIO()` resolves with the completions, in batches.
 */
export declare class Watcher implements AsyncIterable<OpResult[]> {
    private readonly handle;
    private readonly bufferSize;
    private readonly swap;
    private readonly ids;
    private readonly sockets;
    private readonly token;
    private readonly requests;
    private readonly freeRequestSlots;
    private queue;
    private flushScheduled;
    /** Views of record memory the native side owns and reads or writes in place. */
    private submitRecords;
    private takeRecords;
    /** Requests handed to the engine and not yet taken back. */
    private inEngine;
    /** Requests not yet delivered by waitIO(): while there are any, the process stays alive. */
    private outstanding;
    private local;
    private waiter;
    private closed;
    private readonly forgottenConns;
    constructor(options?: WatcherOptions);
    /** Listens on a TCP address (port 0 picks one) or a Unix socket path. */
    listen(options: ListenOptions): Listener;
    /** Accepts one connection on `listener`; completes as OpType.Accept with the new Conn. */
    accept(context: unknown, listener: Listener): void;
    /** Connects to a TCP address or Unix socket path; completes as OpType.Connect with the new Conn. */
    connect(context: unknown, options: ConnectOptions): void;
    /** Closes a connection or listener now; what was pending on it completes with ERR_CONN_CLOSED. Idempotent. */
    free(conn: ConnLike | Listener): void;
    /** Reads at least one byte into `buffer`, or into the swap buffer when none is given. */
    read(context: unknown, conn: ConnLike, buffer?: ArrayBufferView | null): void;
    /** read() that fails with ERR_DEADLINE if nothing arrives by `deadline`. */
    readTimeout(context: unknown, conn: ConnLike, buffer: ArrayBufferView | null | undefined, deadline: Deadline): void;
    /** Reads until `buffer` is full (or end of stream, error, or the deadline). */
    readFull(context: unknown, conn: ConnLike, buffer: ArrayBufferView, deadline?: Deadline): void;
    /** Writes every byte of `buffer`. The bytes are copied when the request is flushed (same tick). */
    write(context: unknown, conn: ConnLike, buffer: ArrayBufferView): void;
    /** write() that fails with ERR_DEADLINE if not every byte is written by `deadline`. */
    writeTimeout(context: unknown, conn: ConnLike, buffer: ArrayBufferView, deadline: Deadline): void;
    /**
     * Resolves with the next non-empty batch of results. Swap-buffer views in
     * the previous batch are released when this is called. After close() it
     * resolves with what is left to deliver (what close() cancelled, and requests
     * made since, each with ERR_WATCHER_CLOSED), and rejects with
     * ERR_WATCHER_CLOSED once nothing is: that ends a `for await` loop.
     */
    waitIO(): Promise<OpResult[]>;
    [Symbol.asyncIterator](): AsyncIterator<OpResult[]>;
    /**
     * Closes every connection and stops the poller. Requests still pending
     * complete with ERR_WATCHER_CLOSED: a waitIO() in progress resolves with
     * them, or else the next call does. Idempotent.
     */
    close(): void;
    private newConn;
    /** The connection of a connect that failed before it had one. */
    private deadConn;
    private own;
    /** A forgotten connection (`owner`: what the caller holds) is freed by the collector. */
    private track;
    private release;
    /** The state of a connection argument; a net.Socket is delegated on first use. */
    private stateOf;
    private delegate;
    private submitRead;
    private submitWrite;
    private enqueueOn;
    private enqueueConnect;
    private push;
    private newRequest;
    private queueFree;
    private queueFreeOf;
    /** Counts requests not yet delivered; the first keeps the process alive, the last lets it go. */
    private retain;
    private scheduleFlush;
    /** Hands every queued request to the engine in one call. */
    private flush;
    private resizeRecords;
    private finish;
    private onReady;
    private settleWaiter;
    private takeLocal;
    private deliverLocal;
    /** Takes the engine's completions and any local results, as result objects. */
    private collect;
    private complete;
    private resultOf;
}
export {};
