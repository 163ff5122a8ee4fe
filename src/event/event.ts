/**
 * `Event`: a 64-bit counter with Linux eventfd semantics (eventfd(2); seed-apis.md §2.1).
 *
 * - `signal(n)` adds n. The counter saturates at 0xfffffffffffffffe: a signal that would pass it
 *   throws `EAGAIN` and changes nothing (a blocking eventfd write would block; a non-blocking one
 *   fails with EAGAIN).
 * - A read returns the whole count and zeroes it: many signals collapse into one wake-up.
 * - Waiting blocks until the count is non-zero.
 *
 * Any number of threads may signal; one thread at a time may wait (the eventfd contract crosvm
 * keeps). `Event` is an interface with two backings: the memory backing here (a counter in a
 * SharedArrayBuffer, usable in any thread and in browsers) and the OS backing (a real eventfd, which
 * KVM and VFIO accept) added by `irqchip/kvm`. Both turn into a serialisable `EventDescriptor`
 * that `postMessage` carries; `Event.fromDescriptor` rebuilds a handle on the same counter.
 */

import { ErrorCode, IrqChipError } from '../base/errors.ts';
import { threadMayBlock } from '../base/thread.ts';
import { waitAsyncKeepingAlive } from '../base/wait-async.ts';

/** The largest value an eventfd counter can hold (eventfd(2): 0xfffffffffffffffe). */
export const EVENT_COUNTER_MAX = 0xfffffffffffffffen;

export type WaitResult = 'signaled' | 'timed-out';

/** A descriptor `postMessage` can carry; `kind` names the backing that rebuilds it. */
export interface EventDescriptor {
  readonly kind: string;
}

export interface Event {
  /** Adds `n` (default 1) to the counter and wakes a waiter. Throws EAGAIN on overflow, EINVAL on a bad `n`. */
  signal(n?: number | bigint): void;
  /**
   * Blocks until the counter is non-zero, then reads and zeroes it; returns the count.
   * Only on a thread that may block (a worker); elsewhere it throws EAGAIN without waiting.
   */
  wait(): bigint;
  /**
   * Resolves `'signaled'` once the counter is non-zero, or `'timed-out'` after `timeoutMs`. It
   * does not consume the count (poll, then read): follow it with `tryRead()`, as one does with an
   * eventfd under epoll. Never blocks the thread.
   */
  waitAsync(timeoutMs?: number): Promise<WaitResult>;
  /** Non-blocking read-and-clear: the count, or 0n when nothing was signalled. */
  tryRead(): bigint;
  /** The counter's value, without clearing it (crosvm `EventExt::read_count`). */
  readCount(): bigint;
  /** Sets the counter (crosvm `EventExt::write_count`); EINVAL above `EVENT_COUNTER_MAX`. */
  writeCount(value: number | bigint): void;
  /** Clears the counter without waiting. */
  reset(): void;
  /** A second handle on the same counter. */
  tryClone(): Event;
  /** The serialisable form of this handle, for `postMessage`. */
  descriptor(): EventDescriptor;
  /** Whether `other` is a handle on this same counter (a clone, or rebuilt from its descriptor). */
  sameCounter(other: Event): boolean;
}

type EventFactory = (descriptor: EventDescriptor) => Event;

const backings = new Map<string, EventFactory>();

/**
 * Registers how to rebuild events of a backing from their descriptors. The memory backing is
 * registered here; `irqchip/kvm` registers the OS backing, so the core never loads native code.
 */
export function registerEventBacking(kind: string, factory: EventFactory): void {
  backings.set(kind, factory);
}

/** Companion of the `Event` interface: `Event.create()` and `Event.fromDescriptor()`. */
export const Event = {
  /** A new memory-backed event with count 0 (crosvm `Event::new`). */
  create(): Event {
    return new MemoryEvent();
  },
  /** Rebuilds an event, on this thread, onto the counter a descriptor names. */
  fromDescriptor(descriptor: EventDescriptor): Event {
    const factory = backings.get(descriptor.kind);
    if (factory === undefined) {
      throw new IrqChipError(ErrorCode.EINVAL, `no event backing '${descriptor.kind}' is registered in this thread`);
    }
    return factory(descriptor);
  },
};

/** Converts and checks a count given by a caller. */
export function toCount(value: number | bigint, what: string): bigint {
  if (typeof value === 'number' && !Number.isSafeInteger(value)) {
    throw new IrqChipError(ErrorCode.EINVAL, `${what} must be a safe integer or a bigint, got ${String(value)}`);
  }
  const count = BigInt(value);
  if (count < 0n || count > EVENT_COUNTER_MAX) {
    throw new IrqChipError(ErrorCode.EINVAL, `${what} must be in [0, 0xfffffffffffffffe], got ${String(value)}`);
  }
  return count;
}

export function overflowError(current: bigint, added: bigint): IrqChipError {
  return new IrqChipError(ErrorCode.EAGAIN, `event counter ${current} + ${added} would pass 0xfffffffffffffffe`);
}

export function mustNotBlockError(): IrqChipError {
  return new IrqChipError(ErrorCode.EAGAIN, 'Event.wait() blocks; call it on a worker thread, or use waitAsync()');
}

// ---------------------------------------------------------------------------------------------
// Memory backing. Layout of its SharedArrayBuffer (24 bytes):
//   bytes 0–7   the counter, u64 (read through BigUint64Array; waited on through BigInt64Array,
//               which is what Atomics.wait accepts — the zero test is the same in both)
//   bytes 8–11  number of threads waiting, i32: signal() notifies only when it is non-zero
//   bytes 16–23 identity: 64 random bits written at creation. A SharedArrayBuffer that crosses
//               threads (or structuredClone) arrives as a new object over the same memory, so
//               object identity cannot tell whether two handles share a counter; this can.
// ---------------------------------------------------------------------------------------------

export interface MemoryEventDescriptor extends EventDescriptor {
  readonly kind: 'memory';
  readonly buffer: SharedArrayBuffer;
}

const COUNTER = 0;
const WAITER_COUNT = 0; // index into the Int32Array view over bytes 8–11
const MEMORY_EVENT_BYTES = 24;
const IDENTITY_OFFSET = 16;

export class MemoryEvent implements Event {
  private readonly counter: BigUint64Array;
  private readonly counterForWait: BigInt64Array;
  private readonly waiters: Int32Array;
  private readonly identity: BigUint64Array;

  /** A new event with count 0, or a handle on the counter in `buffer`. */
  constructor(buffer?: SharedArrayBuffer) {
    const memory = buffer ?? new SharedArrayBuffer(MEMORY_EVENT_BYTES);
    if (!(memory instanceof SharedArrayBuffer) || memory.byteLength < MEMORY_EVENT_BYTES) {
      throw new IrqChipError(ErrorCode.EINVAL, `a memory event needs a SharedArrayBuffer of ${MEMORY_EVENT_BYTES} bytes`);
    }
    this.counter = new BigUint64Array(memory, 0, 1);
    this.counterForWait = new BigInt64Array(memory, 0, 1);
    this.waiters = new Int32Array(memory, 8, 1);
    this.identity = new BigUint64Array(memory, IDENTITY_OFFSET, 1);
    if (buffer === undefined) crypto.getRandomValues(this.identity);
  }

  static fromDescriptor(descriptor: EventDescriptor): MemoryEvent {
    const { buffer } = descriptor as Partial<MemoryEventDescriptor>;
    if (descriptor.kind !== 'memory' || !(buffer instanceof SharedArrayBuffer)) {
      throw new IrqChipError(ErrorCode.EINVAL, 'not a memory event descriptor');
    }
    return new MemoryEvent(buffer);
  }

  signal(n: number | bigint = 1): void {
    // Fast path for the common signal(1): no conversion, one CAS.
    const added = n === 1 ? 1n : toCount(n, 'signal count');
    for (;;) {
      const current = Atomics.load(this.counter, COUNTER);
      const next = current + added;
      if (next > EVENT_COUNTER_MAX) throw overflowError(current, added);
      if (Atomics.compareExchange(this.counter, COUNTER, current, next) === current) break;
    }
    if (added !== 0n) this.wakeWaiter();
  }

  wait(): bigint {
    if (!threadMayBlock) throw mustNotBlockError();
    for (;;) {
      const count = Atomics.exchange(this.counter, COUNTER, 0n);
      if (count !== 0n) return count;
      Atomics.add(this.waiters, WAITER_COUNT, 1);
      Atomics.wait(this.counterForWait, COUNTER, 0n);
      Atomics.sub(this.waiters, WAITER_COUNT, 1);
    }
  }

  async waitAsync(timeoutMs?: number): Promise<WaitResult> {
    const deadline = timeoutMs === undefined ? Infinity : performance.now() + timeoutMs;
    for (;;) {
      if (Atomics.load(this.counter, COUNTER) !== 0n) return 'signaled';
      const remaining = deadline - performance.now();
      if (remaining <= 0) return 'timed-out';
      Atomics.add(this.waiters, WAITER_COUNT, 1);
      try {
        await waitAsyncKeepingAlive(this.counterForWait, COUNTER, 0n, remaining);
      } finally {
        Atomics.sub(this.waiters, WAITER_COUNT, 1);
      }
    }
  }

  tryRead(): bigint {
    return Atomics.exchange(this.counter, COUNTER, 0n);
  }

  readCount(): bigint {
    return Atomics.load(this.counter, COUNTER);
  }

  writeCount(value: number | bigint): void {
    const count = toCount(value, 'event count');
    Atomics.store(this.counter, COUNTER, count);
    if (count !== 0n) this.wakeWaiter();
  }

  reset(): void {
    Atomics.store(this.counter, COUNTER, 0n);
  }

  tryClone(): MemoryEvent {
    return new MemoryEvent(this.counter.buffer as SharedArrayBuffer);
  }

  sameCounter(other: Event): boolean {
    return other instanceof MemoryEvent && other.identity[0] === this.identity[0];
  }

  /** Notifies only when a waiter has said it waits: an unconditional notify doubles the cost of a signal. */
  private wakeWaiter(): void {
    if (Atomics.load(this.waiters, WAITER_COUNT) !== 0) Atomics.notify(this.counterForWait, COUNTER);
  }

  descriptor(): MemoryEventDescriptor {
    return { kind: 'memory', buffer: this.counter.buffer as SharedArrayBuffer };
  }
}

registerEventBacking('memory', (descriptor) => MemoryEvent.fromDescriptor(descriptor));
