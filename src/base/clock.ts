/**
 * Time for the models (docs/architecture.md, decision 4).
 *
 * Nothing in the package reads the wall clock directly: the LAPIC timer and the IOAPIC's storm
 * limiter ask a `Clock`. Tests use a `VirtualClock` they advance by hand (deterministic, no
 * sleeps); the VMM uses a `HostClock`. Times are nanoseconds as JavaScript numbers: exact up to
 * 2^53 ns, about 104 days of guest uptime.
 */

export interface Clock {
  /** Monotonic time in nanoseconds. */
  nowNs(): number;
}

/** The host's monotonic clock (`performance.now()`, which exists in Node and in browsers). */
export class HostClock implements Clock {
  nowNs(): number {
    return Math.round(performance.now() * 1e6);
  }
}

/** Serialisable form of a `VirtualClock`, for `postMessage`. */
export interface VirtualClockDescriptor {
  readonly kind: 'virtual-clock';
  readonly buffer: SharedArrayBuffer;
}

/**
 * A clock that moves only when told to. Its time lives in a SharedArrayBuffer so that workers
 * holding a descriptor see the same time.
 */
export class VirtualClock implements Clock {
  private readonly time: Float64Array;

  constructor(startNs = 0, buffer: SharedArrayBuffer = new SharedArrayBuffer(Float64Array.BYTES_PER_ELEMENT)) {
    this.time = new Float64Array(buffer);
    if (startNs !== 0) this.time[0] = startNs;
  }

  static fromDescriptor(descriptor: VirtualClockDescriptor): VirtualClock {
    return new VirtualClock(0, descriptor.buffer);
  }

  descriptor(): VirtualClockDescriptor {
    return { kind: 'virtual-clock', buffer: this.time.buffer as SharedArrayBuffer };
  }

  nowNs(): number {
    return this.time[0] ?? 0;
  }

  /** Moves time forward by `deltaNs` (negative deltas are ignored: the clock is monotonic). */
  advance(deltaNs: number): void {
    if (deltaNs > 0) this.time[0] = this.nowNs() + deltaNs;
  }
}
