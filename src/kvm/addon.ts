/**
 * The native addon's whole surface, typed, and its loader: the one boundary between TypeScript
 * and native code (native/irqchip_addon.cc). The addon wraps system calls only; every KVM number
 * and struct layout lives in TypeScript (kvm-abi.ts).
 *
 * Conventions: a call the kernel may refuse returns `-errno` (a negative number, or a negative
 * bigint where success is a u64) rather than throwing, so hot paths (KVM_RUN, eventfd reads) stay
 * cheap; `check` in linux.ts turns it into a typed error. A JavaScript argument of the wrong type
 * throws a TypeError. The addon is built by the package's own `install` script
 * (`node-gyp rebuild --nodedir=/usr`, offline) into build/Release/.
 */

import { createRequire } from 'node:module';

/** A libuv `uv_poll_t` on one fd in this thread's event loop (no thread-pool slot is used). */
export interface NativePoller {
  /** Starts or changes the watched events (libuv's UV_READABLE = 1, ...); 0 or a negative libuv error. */
  start(events: number): number;
  /** Stops watching; the poller can be started again. */
  stop(): void;
  /** Makes a started poller keep the event loop alive (the default). */
  ref(): void;
  /** Lets the event loop end while this poller is started. */
  unref(): void;
  /** Stops and releases the libuv handle; the fd stays open (it belongs to the caller). */
  close(): void;
}

export interface IrqchipAddon {
  /** open(2): an fd, or -errno. */
  open(path: string, flags: number): number;
  /** close(2): 0 or -errno. */
  close(fd: number): number;
  /** fcntl(F_DUPFD_CLOEXEC): a new fd on the same open file, or -errno. */
  dup(fd: number): number;
  /**
   * ioctl(2): the result (>= 0) or -errno. `arg` is an unsigned long (number or bigint), or a view
   * whose bytes are passed by address and may be filled in place (a SharedArrayBuffer-backed view works too).
   */
  ioctl(fd: number, request: number, arg?: number | bigint | ArrayBufferView): number;
  /** A MAP_SHARED read-write mapping of `fd` as an ArrayBuffer (unmapped when collected), or -errno. Not transferable. */
  mmap(fd: number, length: number, offset: number): ArrayBuffer | number;
  /** The address of a view's first byte. */
  addressOf(view: ArrayBufferView): bigint;
  /** eventfd(2): an fd, or -errno. */
  eventfd(initialValue: number, flags: number): number;
  /** An eventfd read: the count (>= 0n; the counter is zeroed), or -errno as a negative bigint. */
  eventfdRead(fd: number): bigint;
  /** An eventfd write: 0 or -errno (-EAGAIN when a non-blocking eventfd would pass its maximum). */
  eventfdWrite(fd: number, value: number | bigint): number;
  /** poll(2) on one fd, blocking the calling thread up to `timeoutMs` (-1: no limit): revents, 0 on timeout, or -errno. */
  poll(fd: number, events: number, timeoutMs: number): number;
  /** The calling thread's kernel thread id (gettid), the target of `kick`. */
  threadId(): number;
  /**
   * Installs the kick handler (SA_RESTART) for `signal`, process-wide: 0 or -errno. The handler
   * sets the signalled thread's kick target byte (`setKickTarget`), if it has one.
   */
  installKickHandler(signal: number): number;
  /**
   * Makes the kick handler, when it runs on the calling thread, set `view`'s first byte (its
   * vCPU's kvm_run.immediate_exit); `null` forgets it. 0, or -ENOSPC when 1024 threads have one.
   */
  setKickTarget(view: ArrayBufferView | null): number;
  /** tgkill(getpid(), threadId, signal): 0 or -errno (-ESRCH for a thread that has gone). */
  kick(threadId: number, signal: number): number;
  /** A CLOCK_MONOTONIC POSIX timer that sends `signal` to that thread of this process when it expires: its id (>= 0), or -errno. */
  timerCreate(threadId: number, signal: number): number;
  /** Arms the timer to fire once, `delayNs` from now (0 disarms): 0 or -errno. */
  timerArm(timerId: number, delayNs: number | bigint): number;
  /** Deletes the timer: 0 or -errno. */
  timerDelete(timerId: number): number;
  /** `new Poller(fd, callback)`: `callback(status, events)` runs on this thread's loop when the fd is ready. */
  Poller: new (fd: number, callback: (status: number, events: number) => void) => NativePoller;
}

const ADDON_PATH = '../../build/Release/irqchip_addon.node';

function loadAddon(): IrqchipAddon {
  const require = createRequire(import.meta.url);
  try {
    return require(ADDON_PATH) as IrqchipAddon;
  } catch (error) {
    throw new Error(`irqchip/kvm: the native addon is not built (${ADDON_PATH}); run 'npm run build:native'`, { cause: error });
  }
}

/** The loaded addon: one per thread (Node loads an N-API module once per environment). */
export const addon: IrqchipAddon = loadAddon();
