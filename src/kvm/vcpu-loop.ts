/**
 * `KvmVcpuLoop`: one KVM vCPU's run loop, on its own thread, for every chip mode.
 *
 * Before each KVM_RUN the chip injects what is pending (`injectInterrupts`: nothing for KVM's
 * chip; the 8259A's ExtINT on a split chip; our local APIC's interrupt on the userspace chip).
 * After it, the exit is served: port and MMIO accesses go to this thread's buses (the VMM's
 * devices and, for split and userspace chips, our controllers); an IOAPIC EOI exit (split chip)
 * goes to `broadcastEoi`; HLT (userspace chip; KVM halts in the kernel otherwise) to `halted`,
 * and the next turn waits in `waitUntilRunnable`; RDMSR/WRMSR of the local APIC's MSRs
 * (userspace chip, userspace-apic-msrs.ts) to our local APIC.
 *
 * With our local APIC (the userspace chip), the vCPU in KVM_RUN cannot see an interrupt arrive,
 * so the loop publishes its thread while in guest code (`LocalApic.enterGuest`) and whoever rings
 * the APIC's doorbell kicks it; and it arms a POSIX timer on its thread for the APIC timer's next
 * deadline, whose signal ends KVM_RUN when the timer is due.
 *
 * The loop ends on a stop request, a kick with `end` set, or an exit it cannot serve (a guest
 * SHUTDOWN — triple fault —, an entry failure, an internal error); it reports which, with counts
 * of the exits it saw.
 */

import { HostClock, type Clock } from '../base/clock.ts';
import { isBusAccessSize, type Bus } from '../chip/bus.ts';
import { readVcpuMmio, writeVcpuMmio } from '../chip/chip-bus-devices.ts';
import type { IrqChip } from '../chip/irq-chip.ts';
import type { LocalApic } from '../x86/lapic/local-apic.ts';
import { addon } from './addon.ts';
import { KvmExit } from './kvm-abi.ts';
import type { KvmVcpu } from './kvm-vcpu.ts';
import { KICK_SIGNAL, check } from './linux.ts';
import { isUserspaceApicMsr } from './userspace-apic-msrs.ts';
import './vcpu-kick.ts';

export interface KvmVcpuLoopOptions {
  readonly vcpu: KvmVcpu;
  /** This thread's view of the VM's chip. */
  readonly chip: IrqChip;
  /** This thread's port bus: the VMM's devices, and the chip's controllers after `finalizeDevices`. */
  readonly io: Bus;
  readonly mmio: Bus;
  /** The userspace chip's local APIC of this vCPU; absent for KVM's and the split chip. */
  readonly localApic?: LocalApic;
  /** The clock of that local APIC's timer (default: the host's). */
  readonly clock?: Clock;
}

/** Why `run()` returned. */
export type VcpuLoopEnd =
  | { readonly reason: 'stopped' }
  | { readonly reason: 'ended' }
  | { readonly reason: 'fatal-exit'; readonly exit: number };

/** Nanoseconds never passed to a timer: an overdue deadline still arms it (1 ns: at once). */
const MIN_TIMER_DELAY_NS = 1;

export class KvmVcpuLoop {
  /** Exits seen, by KvmExit value. */
  readonly exitCounts = new Map<number, number>();
  /** MMIO exits of a size no register takes (a page-crossing access split by KVM): not decoded. */
  oddSizedMmioAccesses = 0;
  /** Set by a device (on this thread) to end the loop after the current exit. */
  endRequested = false;
  private readonly vcpu: KvmVcpu;
  private readonly chip: IrqChip;
  private readonly io: Bus;
  private readonly mmio: Bus;
  private readonly apic: LocalApic | undefined;
  private readonly clock: Clock;
  private readonly accessor: { readonly vcpuIndex: number };
  private readonly threadId = addon.threadId();
  private timerId = -1;
  private armedDeadlineNs: number | undefined;

  constructor(options: KvmVcpuLoopOptions) {
    this.vcpu = options.vcpu;
    this.chip = options.chip;
    this.io = options.io;
    this.mmio = options.mmio;
    this.apic = options.localApic;
    this.clock = options.clock ?? new HostClock();
    this.accessor = { vcpuIndex: options.vcpu.id };
    if (this.apic !== undefined) this.timerId = check(addon.timerCreate(this.threadId, KICK_SIGNAL), 'timer_create (local APIC timer)');
  }

  /** Runs the vCPU until a stop request, `endRequested`, or an exit it cannot serve. */
  run(): VcpuLoopEnd {
    try {
      for (;;) {
        if (this.vcpu.stopRequested) return { reason: 'stopped' };
        if (this.endRequested) return { reason: 'ended' };
        const exit = this.step();
        if (exit !== undefined && isFatalExit(exit)) return { reason: 'fatal-exit', exit };
      }
    } finally {
      this.dispose();
    }
  }

  /**
   * One turn: inject, run, serve the exit. Returns the exit served, or undefined when the vCPU
   * did not enter the guest (it was waiting, or something arrived while it got ready).
   */
  step(): number | undefined {
    if (!this.prepareEntry()) return undefined;
    const exit = this.vcpu.run();
    this.apic?.leaveGuest();
    this.exitCounts.set(exit, (this.exitCounts.get(exit) ?? 0) + 1);
    this.serve(exit);
    return exit;
  }

  /** Stops the APIC timer. `run()` does this when it returns. */
  dispose(): void {
    if (this.timerId < 0) return;
    addon.timerDelete(this.timerId);
    this.timerId = -1;
  }

  /** Injects, and with our local APIC publishes the thread; false when the vCPU must not enter now. */
  private prepareEntry(): boolean {
    const { apic, chip, vcpu } = this;
    if (apic === undefined) {
      chip.injectInterrupts(vcpu);
      return true;
    }
    const generation = apic.doorbellGeneration();
    // Injects too; blocks while the vCPU is halted or waiting for INIT/SIPI.
    if (chip.waitUntilRunnable(vcpu) === 'interrupted') return false;
    this.armTimer(apic.nextTimerDeadlineNs());
    return apic.enterGuest(this.threadId, generation);
  }

  private serve(exit: number): void {
    const { vcpu } = this;
    switch (exit) {
      case KvmExit.IO:
        if (vcpu.ioIsOut()) this.io.write(vcpu.ioPort(), vcpu.ioSize(), vcpu.ioValue(), this.accessor);
        else vcpu.setIoValue(this.io.read(vcpu.ioPort(), vcpu.ioSize(), this.accessor));
        return;
      case KvmExit.MMIO:
        // KVM's emulator splits an access that crosses a page at the boundary (x86 emulator_read_write),
        // so a guest can make exits of 3, 5, 6 or 7 bytes. No register takes such an access: it is
        // not decoded (reads all ones, writes dropped), and counted.
        if (!isBusAccessSize(vcpu.mmioSize())) {
          this.oddSizedMmioAccesses++;
          if (!vcpu.mmioIsWrite()) vcpu.setMmioAllOnes();
          return;
        }
        // Our local APIC first, wherever its IA32_APIC_BASE put its page and while it decodes it; the bus takes the rest.
        if (vcpu.mmioIsWrite()) writeVcpuMmio(this.apic, this.mmio, vcpu.mmioAddress(), vcpu.mmioSize(), vcpu.mmioValue(), this.accessor);
        else vcpu.setMmioValue(readVcpuMmio(this.apic, this.mmio, vcpu.mmioAddress(), vcpu.mmioSize(), this.accessor));
        return;
      case KvmExit.HLT:
        this.chip.halted(vcpu.id);
        return;
      case KvmExit.IOAPIC_EOI:
        this.chip.broadcastEoi(vcpu.eoiVector());
        return;
      case KvmExit.X86_RDMSR:
        vcpu.completeMsr(this.apic !== undefined && isUserspaceApicMsr(vcpu.msrIndex()) ? this.apic.readMsr(vcpu.msrIndex()) : { ok: false });
        return;
      case KvmExit.X86_WRMSR:
        vcpu.completeMsr({ ok: this.apic !== undefined && isUserspaceApicMsr(vcpu.msrIndex()) && this.apic.writeMsr(vcpu.msrIndex(), vcpu.msrValue()) });
        return;
      default:
        // INTR (a kick or the APIC timer), IRQ_WINDOW_OPEN: the next turn injects. Fatal exits end run().
        return;
    }
  }

  /** Keeps the thread timer on the APIC timer's next deadline (re-armed only when it changes). */
  private armTimer(deadlineNs: number | undefined): void {
    if (deadlineNs === this.armedDeadlineNs) return;
    this.armedDeadlineNs = deadlineNs;
    const delayNs = deadlineNs === undefined ? 0 : Math.max(MIN_TIMER_DELAY_NS, Math.ceil(deadlineNs - this.clock.nowNs()));
    check(addon.timerArm(this.timerId, delayNs), 'timer_settime (local APIC timer)');
  }
}

/** Exits after which the vCPU cannot go on: `run()` ends on them. */
export function isFatalExit(exit: number): boolean {
  return exit === KvmExit.SHUTDOWN || exit === KvmExit.FAIL_ENTRY || exit === KvmExit.INTERNAL_ERROR || exit === KvmExit.EXCEPTION || exit === KvmExit.UNKNOWN;
}
