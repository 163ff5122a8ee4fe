/**
 * `OsEvent`: the OS backing of `Event`, a real Linux eventfd (eventfd(2)) behind the same interface
 * as the memory backing (src/event/event.ts). KVM takes it as an irqfd or a resamplefd; VFIO takes
 * it as an interrupt trigger.
 *
 * - The eventfd is non-blocking (EFD_NONBLOCK), so `signal` fails with EAGAIN on overflow instead
 *   of blocking, and `tryRead` returns 0n on an empty counter. `wait()` (workers only) blocks in
 *   poll(2) and then reads; `waitAsync` watches the fd with libuv's `uv_poll` on this thread's
 *   event loop, never the thread pool, and like epoll it reports readiness without consuming.
 * - Each handle owns one fd. `tryClone()` and `Event.fromDescriptor()` dup it, so each handle is
 *   closed on its own (`close()`, `using`, or by the garbage collector). A descriptor carries the fd
 *   number (fds are process-wide, so a worker rebuilds a handle from it): it is valid while the
 *   handle it came from is open.
 * - `readCount()` reads the counter from /proc/self/fdinfo without disturbing it. `writeCount()` is
 *   a read (clearing) followed by a write of the new value: not atomic, so a signal that lands
 *   between the two is kept (added to the new value) and a waiter may see the counter briefly zero.
 *   The memory backing's `writeCount` is one atomic store. Both are for snapshots and tests, not
 *   for devices.
 * - `sameCounter()` compares the kernel's eventfd id (fdinfo `eventfd-id`): every eventfd shares
 *   one anonymous inode, so fstat's st_dev/st_ino cannot tell two eventfds apart.
 */

import { readFileSync } from 'node:fs';
import { ErrorCode, IrqChipError } from '../base/errors.ts';
import { threadMayBlock } from '../base/thread.ts';
import { mustNotBlockError, overflowError, registerEventBacking, toCount, type Event, type EventDescriptor, type WaitResult } from '../event/event.ts';
import { addon, type NativePoller } from './addon.ts';
import { EAGAIN, EFD_CLOEXEC, EFD_NONBLOCK, EINTR, POLLIN, UV_READABLE, check, systemError } from './linux.ts';

export interface OsEventDescriptor extends EventDescriptor {
  readonly kind: 'eventfd';
  readonly fd: number;
}

/** Closes the fds of handles that were dropped without `close()`. */
const unclosedFds = new FinalizationRegistry<number>((fd) => {
  addon.close(fd);
});

/**
 * Events with a pending `waitAsync`. The poller's callback holds its event only weakly (a native
 * callback is a strong root, and would keep every event that ever waited alive); this set keeps
 * an event, and so its fd, alive while someone waits on it.
 */
const eventsWithWaiters = new Set<OsEvent>();

/** One `waitAsync` caller: resolved when the fd becomes readable or its timer fires. */
interface AsyncWaiter {
  readonly resolve: (result: WaitResult) => void;
  timer: ReturnType<typeof setTimeout> | undefined;
}

export class OsEvent implements Event, Disposable {
  private fdOrClosed: number;
  /** Lazily created on the first `waitAsync` that has to wait; started only while someone waits. */
  private poller: NativePoller | undefined;
  private readonly waiters = new Set<AsyncWaiter>();
  private cachedCounterId: string | undefined;

  private constructor(fd: number) {
    this.fdOrClosed = fd;
    unclosedFds.register(this, fd, this);
  }

  /** A new eventfd with count 0. */
  static create(): OsEvent {
    return new OsEvent(check(addon.eventfd(0, EFD_CLOEXEC | EFD_NONBLOCK), 'eventfd'));
  }

  /** A new handle (a dup of the fd) on the eventfd a descriptor names. */
  static fromDescriptor(descriptor: EventDescriptor): OsEvent {
    const { fd } = descriptor as Partial<OsEventDescriptor>;
    if (descriptor.kind !== 'eventfd' || typeof fd !== 'number' || !Number.isInteger(fd) || fd < 0) {
      throw new IrqChipError(ErrorCode.EINVAL, 'not an eventfd descriptor');
    }
    const event = new OsEvent(check(addon.dup(fd), 'dup of an eventfd descriptor'));
    if (event.counterId() === undefined) {
      event.close();
      throw new IrqChipError(ErrorCode.EINVAL, `fd ${fd} is not an eventfd`);
    }
    return event;
  }

  /** The file descriptor, to hand to KVM (irqfd, resamplefd) or VFIO. EBADF once closed. */
  get fd(): number {
    if (this.fdOrClosed < 0) throw new IrqChipError(ErrorCode.EBADF, 'the event is closed');
    return this.fdOrClosed;
  }

  get closed(): boolean {
    return this.fdOrClosed < 0;
  }

  signal(n: number | bigint = 1): void {
    const added = n === 1 ? 1 : toCount(n, 'signal count');
    const result = addon.eventfdWrite(this.fd, added);
    if (result === -EAGAIN) throw overflowError(this.readCount(), BigInt(added));
    check(result, 'eventfd write');
  }

  wait(): bigint {
    if (!threadMayBlock) throw mustNotBlockError();
    const fd = this.fd;
    for (;;) {
      const count = this.tryRead();
      if (count !== 0n) return count;
      // Another reader may drain the counter between poll and read: then poll again.
      const ready = addon.poll(fd, POLLIN, -1);
      if (ready < 0 && ready !== -EINTR) check(ready, 'poll on an eventfd');
    }
  }

  waitAsync(timeoutMs?: number): Promise<WaitResult> {
    if (this.isReadable()) return Promise.resolve('signaled');
    if (timeoutMs !== undefined && timeoutMs <= 0) return Promise.resolve('timed-out');
    return new Promise<WaitResult>((resolve) => {
      const waiter: AsyncWaiter = { resolve, timer: undefined };
      if (timeoutMs !== undefined) {
        waiter.timer = setTimeout(() => {
          this.settle(waiter, 'timed-out');
        }, timeoutMs);
      }
      this.waiters.add(waiter);
      if (this.waiters.size > 1) return;
      eventsWithWaiters.add(this);
      const status = this.startedPoller().start(UV_READABLE);
      if (status < 0) {
        this.settle(waiter, 'timed-out');
        throw systemError(-status, 'uv_poll_start on an eventfd');
      }
    });
  }

  tryRead(): bigint {
    const count = addon.eventfdRead(this.fd);
    if (count >= 0n) return count;
    if (count === BigInt(-EAGAIN)) return 0n;
    throw systemError(Number(-count), 'eventfd read');
  }

  readCount(): bigint {
    const count = /^eventfd-count:\s*([0-9a-f]+)$/m.exec(this.fdinfo())?.[1];
    if (count === undefined) throw new IrqChipError(ErrorCode.EINVAL, `fd ${this.fd} is not an eventfd`);
    return BigInt(`0x${count}`);
  }

  /** Not atomic: a read that clears, then a write of `value` (see the file comment). */
  writeCount(value: number | bigint): void {
    const count = toCount(value, 'event count');
    this.tryRead();
    if (count !== 0n) check(addon.eventfdWrite(this.fd, count), 'eventfd write');
  }

  reset(): void {
    this.tryRead();
  }

  tryClone(): OsEvent {
    return new OsEvent(check(addon.dup(this.fd), 'dup of an eventfd'));
  }

  descriptor(): OsEventDescriptor {
    return { kind: 'eventfd', fd: this.fd };
  }

  sameCounter(other: Event): boolean {
    if (!(other instanceof OsEvent) || this.closed || other.closed) return false;
    return this.counterId() === other.counterId();
  }

  /** Closes this handle's fd; pending `waitAsync` calls resolve 'timed-out'. Other handles stay open. */
  close(): void {
    if (this.closed) return;
    for (const waiter of [...this.waiters]) this.settle(waiter, 'timed-out');
    this.poller?.close();
    this.poller = undefined;
    unclosedFds.unregister(this);
    addon.close(this.fdOrClosed);
    this.fdOrClosed = -1;
  }

  [Symbol.dispose](): void {
    this.close();
  }

  private isReadable(): boolean {
    return check(addon.poll(this.fd, POLLIN, 0), 'poll on an eventfd') !== 0;
  }

  private startedPoller(): NativePoller {
    if (this.poller === undefined) {
      const event = new WeakRef(this);
      this.poller = new addon.Poller(this.fd, (status) => {
        event.deref()?.onPollReady(status);
      });
    }
    return this.poller;
  }

  private onPollReady(status: number): void {
    // A libuv error (negative status) also ends the wait: the caller's next read reports it.
    if (status >= 0 && !this.isReadable()) return;
    for (const waiter of [...this.waiters]) this.settle(waiter, 'signaled');
  }

  private settle(waiter: AsyncWaiter, result: WaitResult): void {
    if (!this.waiters.delete(waiter)) return;
    if (waiter.timer !== undefined) clearTimeout(waiter.timer);
    if (this.waiters.size === 0) {
      this.poller?.stop();
      eventsWithWaiters.delete(this);
    }
    waiter.resolve(result);
  }

  private fdinfo(): string {
    return readFileSync(`/proc/self/fdinfo/${this.fd}`, 'latin1');
  }

  /** The kernel's id of the eventfd behind this fd (fdinfo `eventfd-id`); undefined when it is not an eventfd. */
  private counterId(): string | undefined {
    this.cachedCounterId ??= /^eventfd-id:\s*(\d+)$/m.exec(this.fdinfo())?.[1];
    return this.cachedCounterId;
  }
}

registerEventBacking('eventfd', (descriptor) => OsEvent.fromDescriptor(descriptor));
