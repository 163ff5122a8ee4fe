/**
 * `SimVcpu`: a deterministic software vCPU for tests and demonstrations.
 *
 * It stands where a KVM vCPU would: the chip injects into it through the `Vcpu` interface, and it
 * behaves as a guest does with what it receives. `step(chip)` is one pass of a VMM's run loop:
 * `injectInterrupts`, then, if an interrupt was delivered, the guest's handler runs with
 * interrupts disabled (as an interrupt gate leaves them) and ends the interrupt the way the guest
 * would: an EOI written to its local APIC's window, or, for a vector the 8259A delivered, a
 * non-specific EOI to the PIC's ports. All guest accesses go through the chip's buses, so the
 * whole path (bus → controller → EOI broadcast → resample) is exercised.
 */

import { PIC_PINS_PER_CHIP } from '../routing/irq-route.ts';
import { ApicRegister, XAPIC_ID_SHIFT } from '../x86/lapic/apic-registers.ts';
import type { SipiStart } from '../x86/lapic/local-apic.ts';
import { OCW2_EOI } from '../x86/pic/pic-chip.ts';
import { PicPort } from '../x86/pic/pic.ts';
import type { Bus } from './bus.ts';
import { localApicRegisterAddress } from './chip-bus-devices.ts';
import type { IrqChip } from './irq-chip.ts';
import type { Vcpu } from './vcpu.ts';

/** The local APIC's EOI register (SDM vol. 3 §11.8.5) and ICR halves (§11.6.1). */
const LOCAL_APIC_EOI = localApicRegisterAddress(ApicRegister.EndOfInterrupt);
const LOCAL_APIC_ICR_LOW = localApicRegisterAddress(ApicRegister.InterruptCommand);
const LOCAL_APIC_ICR_HIGH = localApicRegisterAddress(ApicRegister.InterruptCommandHigh);
/** OCW2 non-specific EOI (8259A datasheet, OCW2 R/SL/EOI = 001). */
const PIC_NON_SPECIFIC_EOI = OCW2_EOI;

/** What a handler can do: the guest's port and MMIO accesses, and the usual ways to end an interrupt. */
export interface SimGuest {
  readonly vcpu: SimVcpu;
  outb(port: number, value: number): void;
  inb(port: number): number;
  writeMmio32(address: number, value: number): void;
  readMmio32(address: number): number;
  /** EOI to this vCPU's local APIC. */
  eoiLocalApic(): void;
  /** Non-specific EOI for an 8259A IRQ (to the slave too for IRQ 8–15). */
  eoiPic(irq: number): void;
  /**
   * Sends an IPI as xAPIC software does: the destination APIC ID into ICR high, then `commandLow`
   * (vector, delivery mode, level, shorthand) into ICR low, whose write sends it (SDM vol. 3 §11.6.1).
   */
  sendIpi(destinationApicId: number, commandLow: number): void;
}

/** A guest interrupt handler: runs with the vector; must end the interrupt as the guest would. */
export type SimInterruptHandler = (vector: number, guest: SimGuest) => void;

export interface SimVcpuOptions {
  /** The guest's port and MMIO buses (those the chip was finalized onto). */
  readonly ioBus: Bus;
  readonly mmioBus: Bus;
  /** The guest's handler; default: `defaultEoi` (PIC EOI for the PIC's vectors, else LAPIC EOI). */
  readonly handler?: SimInterruptHandler;
  /** The PIC's vector bases as the guest programmed them (ICW2), so the default handler knows its vectors. */
  readonly picVectorBases?: { readonly master: number; readonly slave: number };
}

export class SimVcpu implements Vcpu {
  /** RFLAGS.IF: the guest's `sti` / `cli`. */
  interruptsEnabled = true;
  /** Every vector the guest took, in order. */
  readonly taken: number[] = [];
  nmis = 0;
  inits = 0;
  lastSipi: SipiStart | undefined;
  interruptWindowRequested = false;
  private delivered: number | undefined;
  private inHandler = false;
  private readonly guest: SimGuest;
  private readonly handler: SimInterruptHandler;

  constructor(
    readonly id: number,
    private readonly options: SimVcpuOptions,
  ) {
    this.handler = options.handler ?? ((vector, guest) => {
      this.defaultEoi(vector, guest);
    });
    const accessor = { vcpuIndex: id };
    this.guest = {
      vcpu: this,
      outb: (port, value) => {
        options.ioBus.write(port, 1, value, accessor);
      },
      inb: (port) => options.ioBus.read(port, 1, accessor),
      writeMmio32: (address, value) => {
        options.mmioBus.write(address, 4, value, accessor);
      },
      readMmio32: (address) => options.mmioBus.read(address, 4, accessor),
      eoiLocalApic: () => {
        options.mmioBus.write(LOCAL_APIC_EOI, 4, 0, accessor);
      },
      sendIpi: (destinationApicId, commandLow) => {
        options.mmioBus.write(LOCAL_APIC_ICR_HIGH, 4, destinationApicId << XAPIC_ID_SHIFT, accessor);
        options.mmioBus.write(LOCAL_APIC_ICR_LOW, 4, commandLow, accessor);
      },
      eoiPic: (irq) => {
        if (irq >= PIC_PINS_PER_CHIP) options.ioBus.write(PicPort.SlaveCommand, 1, PIC_NON_SPECIFIC_EOI, accessor);
        options.ioBus.write(PicPort.MasterCommand, 1, PIC_NON_SPECIFIC_EOI, accessor);
      },
    };
  }

  // Vcpu ----------------------------------------------------------------------------------------

  readyForInterrupt(): boolean {
    return this.interruptsEnabled && !this.inHandler && this.delivered === undefined;
  }

  interrupt(vector: number): void {
    this.delivered = vector;
  }

  injectNmi(): void {
    this.nmis++;
  }

  setInterruptWindowRequested(requested: boolean): void {
    this.interruptWindowRequested = requested;
  }

  applyInit(): void {
    this.inits++;
  }

  applySipi(start: SipiStart): void {
    this.lastSipi = start;
  }

  // The guest's run loop -------------------------------------------------------------------------

  /** One pass: inject, then run the handler of the interrupt delivered, if any. Returns its vector. */
  step(chip: IrqChip): number | undefined {
    chip.injectInterrupts(this);
    const vector = this.delivered;
    if (vector === undefined) return undefined;
    this.delivered = undefined;
    this.taken.push(vector);
    this.inHandler = true;
    try {
      this.handler(vector, this.guest);
    } finally {
      this.inHandler = false;
    }
    return vector;
  }

  /** Steps until nothing more is delivered (at most `maxSteps`); returns the vectors taken. */
  runUntilIdle(chip: IrqChip, maxSteps = 10_000): number[] {
    const vectors: number[] = [];
    for (let step = 0; step < maxSteps; step++) {
      const vector = this.step(chip);
      if (vector === undefined) break;
      vectors.push(vector);
    }
    return vectors;
  }

  /** The guest executes HLT. */
  halt(chip: IrqChip): void {
    chip.halted(this.id);
  }

  /** The guest's accesses, for scripted guests outside a handler. */
  get bus(): SimGuest {
    return this.guest;
  }

  /** PIC EOI for the PIC's vectors (when the guest told us its bases), LAPIC EOI otherwise. */
  private defaultEoi(vector: number, guest: SimGuest): void {
    const bases = this.options.picVectorBases;
    if (bases !== undefined && vector >= bases.master && vector < bases.master + PIC_PINS_PER_CHIP) guest.eoiPic(vector - bases.master);
    else if (bases !== undefined && vector >= bases.slave && vector < bases.slave + PIC_PINS_PER_CHIP) guest.eoiPic(PIC_PINS_PER_CHIP + vector - bases.slave);
    else guest.eoiLocalApic();
  }
}
