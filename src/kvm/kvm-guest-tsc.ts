/**
 * `GuestTscClock`: the clock of our local APICs' timers (userspace chip) on KVM, made to follow
 * the guest's TSC.
 *
 * Our `LocalApic` counts the guest TSC as `clock.nowNs() × tscHz / 1e9` (its TSC-deadline timer
 * fires when that reaches IA32_TSC_DEADLINE), while the guest's RDTSC reads KVM's TSC. A VMM on
 * VMX or SVM could make the two agree by writing the guest's TSC (KVM_SET_MSRS IA32_TSC = our
 * count). **Not on this PVM host**: the guest's TSC is the host's (RDTSC runs natively at CPL3,
 * where the hardware applies no offset), and PVM's `write_tsc_offset` zeroes every offset KVM
 * computes, so a KVM_SET_MSRS of IA32_TSC is accepted and has no effect (kvm-guest-tsc.test.ts
 * proves it). So the clock follows the guest's TSC instead, which is right on every host: it is
 * the host's monotonic clock plus an offset measured once per VM from a vCPU's TSC
 * (`calibrate`, KVM_GET_MSRS IA32_TSC between two clock reads), so that
 * `nowNs() × tscHz / 1e9` is the guest's TSC.
 *
 * Why the offset holds: CLOCK_MONOTONIC counts the host's TSC (the clocksource here is `tsc`)
 * converted with the kernel's tsc_khz, which is the frequency KVM_GET_TSC_KHZ reports for a vCPU
 * whose TSC is not scaled; so guest TSC and clock advance together (measured: after 10 s they
 * still agree within the few-µs window of one reading). vCPUs are created with synchronised TSCs
 * (KVM's `kvm_synchronize_tsc` at vCPU creation), so one offset serves the whole VM. A guest
 * that writes its own TSC (possible on VMX/SVM, ignored on PVM) moves it away from this clock.
 *
 * Never early: the TSC read is paired with the clock time *after* the read, so this clock's TSC
 * is at most the real one (late by at most the read's duration, a few µs of the narrowest of
 * several readings), and a deadline never fires before the guest's TSC reaches it (SDM vol. 3
 * §11.5.4.1). Until calibrated the clock reads the host's time; nothing of the chip is timed
 * before the guest runs, and the VM's vCPUs are set up (`setUpVcpu`) before it does.
 *
 * The offset lives in a SharedArrayBuffer, so every thread's view (`fromDescriptor`) reads the
 * same one: word (Int32) 0 the calibration state; float64 slot 1 the offset in ns, slot 2 the
 * window of the reading it came from (`lagBoundNs`).
 */

import { HostClock, type Clock } from '../base/clock.ts';
import { ErrorCode, IrqChipError } from '../base/errors.ts';
import { threadMayBlock } from '../base/thread.ts';
import { KvmIoctl } from './kvm-abi.ts';
import type { KvmVcpu } from './kvm-vcpu.ts';
import type { KvmVm } from './kvm-vm.ts';

/** IA32_TIME_STAMP_COUNTER (SDM vol. 4, Table 2-2). */
export const MSR_IA32_TSC = 0x10;

const HZ_PER_KHZ = 1000;
const NS_PER_SECOND = 1_000_000_000n;
/** TSC readings per calibration: the narrowest window between its two clock reads is used. */
const CALIBRATION_READINGS = 16;
/** How long a vCPU waits at a time for another that is calibrating (a few dozen ioctls take well under this). */
const CALIBRATION_WAIT_MS = 10;

const CalibrationState = { Uncalibrated: 0, Calibrating: 1, Calibrated: 2 } as const;
const STATE_WORD = 0;
const OFFSET_SLOT = 1;
const WINDOW_SLOT = 2;
const CLOCK_BYTES = 3 * Float64Array.BYTES_PER_ELEMENT;

export interface GuestTscClockDescriptor {
  readonly kind: 'guest-tsc-clock';
  readonly tscHz: number;
  readonly buffer: SharedArrayBuffer;
}

/** The VM's guest TSC frequency in Hz: KVM_GET_TSC_KHZ on the VM (the frequency every new vCPU gets). */
export function vmTscHz(vm: KvmVm): number {
  return vm.ioctl(KvmIoctl.GET_TSC_KHZ, 0, 'KVM_GET_TSC_KHZ on the VM') * HZ_PER_KHZ;
}

export class GuestTscClock implements Clock {
  private readonly host = new HostClock();
  private readonly state: Int32Array;
  private readonly times: Float64Array;

  private constructor(
    /** The guest TSC's frequency: the userspace chip's `tscHz`. */
    readonly tscHz: number,
    private readonly buffer: SharedArrayBuffer,
  ) {
    this.state = new Int32Array(buffer, 0, 1);
    this.times = new Float64Array(buffer);
  }

  /** A clock for `vm`'s guest TSC, not yet calibrated. */
  static create(vm: KvmVm): GuestTscClock {
    return new GuestTscClock(vmTscHz(vm), new SharedArrayBuffer(CLOCK_BYTES));
  }

  /** This clock on another thread: the same offset. */
  static fromDescriptor(descriptor: GuestTscClockDescriptor): GuestTscClock {
    // Descriptors arrive through postMessage: the type is a claim to check.
    const kind: unknown = descriptor.kind;
    const { tscHz, buffer } = descriptor;
    if (kind !== 'guest-tsc-clock' || !Number.isSafeInteger(tscHz) || tscHz <= 0 || !(buffer instanceof SharedArrayBuffer) || buffer.byteLength !== CLOCK_BYTES) {
      throw new IrqChipError(ErrorCode.EINVAL, 'not a guest TSC clock descriptor');
    }
    return new GuestTscClock(tscHz, buffer);
  }

  descriptor(): GuestTscClockDescriptor {
    return { kind: 'guest-tsc-clock', tscHz: this.tscHz, buffer: this.buffer };
  }

  nowNs(): number {
    return this.host.nowNs() + (this.times[OFFSET_SLOT] ?? 0);
  }

  /** Whether a vCPU's TSC has set the offset yet. */
  get calibrated(): boolean {
    return Atomics.load(this.state, STATE_WORD) === CalibrationState.Calibrated;
  }

  /** How far this clock's TSC may be behind the guest's (never ahead): the calibrating reading's window, in ns. */
  get lagBoundNs(): number {
    return this.times[WINDOW_SLOT] ?? 0;
  }

  /**
   * Sets the offset from `vcpu`'s TSC, once per VM: the first vCPU to get here measures, one
   * that comes while it does waits for it, later ones return at once. Call it on the vCPU's
   * thread before the guest runs. EINVAL when the vCPU's TSC frequency is not this clock's.
   */
  calibrate(vcpu: KvmVcpu): void {
    const vcpuHz = vcpu.tscKhz() * HZ_PER_KHZ;
    if (vcpuHz !== this.tscHz) throw new IrqChipError(ErrorCode.EINVAL, `vCPU ${vcpu.id}'s TSC runs at ${vcpuHz} Hz, the clock counts ${this.tscHz} Hz`);
    for (;;) {
      const state = Atomics.compareExchange(this.state, STATE_WORD, CalibrationState.Uncalibrated, CalibrationState.Calibrating);
      if (state === CalibrationState.Calibrated) return;
      if (state === CalibrationState.Uncalibrated) {
        this.measure(vcpu);
        return;
      }
      // Another vCPU measures: wait for it (the main thread may not block, so it looks again at once).
      if (threadMayBlock) Atomics.wait(this.state, STATE_WORD, CalibrationState.Calibrating, CALIBRATION_WAIT_MS);
    }
  }

  /** Measures and publishes the offset; on failure the clock is left uncalibrated for another vCPU to try. */
  private measure(vcpu: KvmVcpu): void {
    let published: number = CalibrationState.Uncalibrated;
    try {
      let best = { tsc: 0n, afterNs: 0, windowNs: Infinity };
      for (let reading = 0; reading < CALIBRATION_READINGS; reading++) {
        const beforeNs = this.host.nowNs();
        const tsc = vcpu.getMsr(MSR_IA32_TSC);
        const afterNs = this.host.nowNs();
        if (afterNs - beforeNs < best.windowNs) best = { tsc, afterNs, windowNs: afterNs - beforeNs };
      }
      // The TSC was read at or before afterNs: pairing it with afterNs keeps this clock's TSC at or behind the guest's.
      this.times[OFFSET_SLOT] = Number((best.tsc * NS_PER_SECOND) / BigInt(this.tscHz)) - best.afterNs;
      this.times[WINDOW_SLOT] = best.windowNs;
      published = CalibrationState.Calibrated;
    } finally {
      Atomics.store(this.state, STATE_WORD, published);
      Atomics.notify(this.state, STATE_WORD);
    }
  }
}
