/**
 * The simulated machine `npm start` runs (machine-demo.ts): what its parts agree on. The threads
 * share the chip (its own descriptor), and this module's `MachineMemory`: a few words of shared
 * memory standing for the guest's RAM (the flags its CPUs exchange), the NIC's registers, and the
 * VMM's requests to its vCPU and device threads.
 */

import type { IrqEdgeEventDescriptor, IrqLevelEventDescriptor } from '../event/irq-event.ts';
import type { UserspaceIrqChipDescriptor } from '../chip/userspace-irq-chip.ts';
import { SPURIOUS_PIN } from '../x86/pic/pic-chip.ts';

/** vCPU 0 is the bootstrap processor: it programs the machine and owns the timer and the 8259A's ExtINT. */
export const BSP = 0;
/** vCPU 1 services the NIC and the MSI source. */
export const DEVICE_VCPU = 1;
/** vCPU 2 takes the BSP's IPIs. */
export const IPI_VCPU = 2;
export const VCPU_COUNT = 3;
export const APPLICATION_PROCESSORS = [DEVICE_VCPU, IPI_VCPU] as const;

/** Vectors the guest chose. The timer and IPI ones are Linux's (LOCAL_TIMER_VECTOR, RESCHEDULE_VECTOR). */
export const Vector = {
  Timer: 0xef,
  Ipi: 0xfd,
  Nic: 0x51,
  Msi: 0x61,
  /** ICW2 of each 8259A: IRQ 0–7 at 0x20–0x27, IRQ 8–15 at 0x28–0x2f. */
  PicMasterBase: 0x20,
  PicSlaveBase: 0x28,
} as const;

/** ISA IRQ of the UART (COM1's), through the 8259A. */
export const UART_IRQ = 4;
/** The 8259A's spurious IRQ 7: an INTA that found no request answers with IR7's vector and sets no ISR bit. */
export const PIC_SPURIOUS_IRQ = SPURIOUS_PIN;
/** GSI of the NIC's PCI INTA#: IOAPIC pin 16, the first pin the default table gives the IOAPIC alone. */
export const NIC_GSI = 16;
/** SIPI vector: the application processors start at 0x10000 (vector × 4 KiB). */
export const SIPI_VECTOR = 0x10;
/** The BSP's timer handler sends vCPU 2 an IPI every this many ticks. */
export const TICKS_PER_IPI = 4;

/** The NIC's register window (a PCI BAR): STATUS reads the descriptors waiting; writing n to ACK completes n. */
export const NIC_MMIO_BASE = 0xfebf0000;
export const NIC_MMIO_BYTES = 0x10;
export const NIC_STATUS = 0x0;
export const NIC_ACK = 0x4;

/** Device-thread phases, set by the VMM. */
export const DevicePhase = {
  Waiting: 0,
  Running: 1,
  /** No new work: the NIC finishes what it has (re-asserting at each resample) and reports idle. */
  Draining: 2,
  Exit: 3,
} as const;

/** Word indexes of `MachineMemory`. */
const Word = {
  DevicePhase: 0,
  /** 1 while the devices are draining and the NIC has no work and no assertion outstanding. */
  DevicesIdle: 1,
  NicPending: 2,
  NicCompleted: 3,
  /** Guest RAM: an application processor sets its flag once it runs (the BSP waits on it). */
  ApOnline: 4,
  /** The VMM asks vCPU n to stop at its next kick. */
  VcpuStop: 4 + VCPU_COUNT,
} as const;
const MACHINE_WORDS = Word.VcpuStop + VCPU_COUNT;

/** Shared words with one accessor per meaning; every thread builds its own over the same buffer. */
export class MachineMemory {
  readonly words: Int32Array;

  constructor(readonly buffer: SharedArrayBuffer = new SharedArrayBuffer(MACHINE_WORDS * Int32Array.BYTES_PER_ELEMENT)) {
    this.words = new Int32Array(buffer);
  }

  devicePhase(): number {
    return Atomics.load(this.words, Word.DevicePhase);
  }

  setDevicePhase(phase: number): void {
    Atomics.store(this.words, Word.DevicePhase, phase);
    Atomics.notify(this.words, Word.DevicePhase);
  }

  /** Blocks (worker only) until the device phase is no longer `phase`. */
  waitWhileDevicePhase(phase: number): void {
    while (this.devicePhase() === phase) Atomics.wait(this.words, Word.DevicePhase, phase);
  }

  /** Sleeps (worker only) for `timeoutMs`, or less if the device phase leaves `phase`. */
  sleepInDevicePhase(phase: number, timeoutMs: number): void {
    Atomics.wait(this.words, Word.DevicePhase, phase, timeoutMs);
  }

  devicesIdle(): boolean {
    return Atomics.load(this.words, Word.DevicesIdle) === 1;
  }

  setDevicesIdle(idle: boolean): void {
    Atomics.store(this.words, Word.DevicesIdle, idle ? 1 : 0);
  }

  nicPending(): number {
    return Atomics.load(this.words, Word.NicPending);
  }

  /** The NIC received `count` packets; returns how many wait now. */
  addNicWork(count: number): number {
    return Atomics.add(this.words, Word.NicPending, count) + count;
  }

  /** The driver completed up to `count` descriptors (never more than wait); returns how many it completed. */
  completeNicWork(count: number): number {
    for (;;) {
      const pending = this.nicPending();
      const completed = Math.min(pending, Math.max(0, count));
      if (Atomics.compareExchange(this.words, Word.NicPending, pending, pending - completed) === pending) {
        Atomics.add(this.words, Word.NicCompleted, completed);
        return completed;
      }
    }
  }

  nicCompleted(): number {
    return Atomics.load(this.words, Word.NicCompleted);
  }

  setApOnline(vcpuId: number): void {
    Atomics.store(this.words, Word.ApOnline + vcpuId, 1);
    Atomics.notify(this.words, Word.ApOnline + vcpuId);
  }

  /** Blocks (worker only) until the AP is online or `timeoutMs` passes; returns whether it is online. */
  waitApOnline(vcpuId: number, timeoutMs: number): boolean {
    Atomics.wait(this.words, Word.ApOnline + vcpuId, 0, timeoutMs);
    return Atomics.load(this.words, Word.ApOnline + vcpuId) === 1;
  }

  requestVcpuStop(vcpuId: number): void {
    Atomics.store(this.words, Word.VcpuStop + vcpuId, 1);
  }

  vcpuStopRequested(vcpuId: number): boolean {
    return Atomics.load(this.words, Word.VcpuStop + vcpuId) === 1;
  }
}

// ---------------------------------------------------------------------------------------------
// Worker set-up and reports
// ---------------------------------------------------------------------------------------------

export interface VcpuWorkerData {
  readonly chip: UserspaceIrqChipDescriptor;
  readonly memory: SharedArrayBuffer;
  readonly vcpuId: number;
  /** The BSP's LAPIC timer period, in ns of the host clock (= TMICT at divide-by-1 and a 1 ns bus cycle). */
  readonly timerPeriodNs: number;
}

export interface DevicesWorkerData {
  readonly chip: UserspaceIrqChipDescriptor;
  readonly memory: SharedArrayBuffer;
  readonly uart: IrqEdgeEventDescriptor;
  readonly nic: IrqLevelEventDescriptor;
  readonly msiGsi: number;
  /** Seed of the devices' arrival schedule. */
  readonly seed: number;
}

/** What a vCPU thread tells the VMM. */
export type VcpuMessage =
  | {
      readonly kind: 'booted';
      /** The BSP's first timer deadline, read right after it armed the timer (the timer's phase origin). */
      readonly firstTimerDeadlineNs: number;
    }
  | { readonly kind: 'report'; readonly report: VcpuReport }
  | { readonly kind: 'failed'; readonly reason: string };

export interface VcpuReport {
  readonly vcpuId: number;
  /** Interrupts the guest's handlers took, by vector. */
  readonly handled: Readonly<Record<number, number>>;
  /** Fixed IPIs the guest wrote to its ICR. */
  readonly ipisSent: number;
  /** Start-up IPIs (INIT, SIPI) the guest wrote to its ICR. */
  readonly startupIpisSent: number;
  /** INITs and SIPIs the chip applied to this vCPU. */
  readonly initsApplied: number;
  readonly sipisApplied: number;
  /** NIC interrupts that found no descriptor waiting. */
  readonly nicSpurious: number;
  readonly halts: number;
}

export interface DevicesReport {
  readonly uartPulses: number;
  readonly msiSent: number;
  /** serviceIrq results for the MSI: > 0 accepted, 0 coalesced, < 0 taken by nobody. */
  readonly msiAccepted: number;
  readonly msiCoalesced: number;
  readonly msiRejected: number;
  readonly nicPackets: number;
  readonly nicTriggers: number;
  /** Resample events the NIC read (the eventfd merges those signalled before a read). */
  readonly nicResamplesSeen: number;
}
