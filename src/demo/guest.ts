/**
 * The guest `npm start` runs on its vCPUs: what an operating system does with the interrupt
 * controllers, written as port and MMIO accesses through the chip's buses.
 *
 * The BSP (vCPU 0) programs the 8259A pair (ICW1–4, then masks all but the UART's IRQ), the IOAPIC
 * entry of the NIC and its local APIC, starts the application processors with INIT-SIPI-SIPI
 * (SDM vol. 3 §9.4.4), waits until each says it runs, and starts its periodic timer. Every vCPU
 * software-enables its local APIC. The handlers end each interrupt as the guest must: LAPIC EOI, or for the 8259A's
 * vectors a non-specific EOI to its command port; the NIC's handler completes one descriptor
 * through the NIC's registers before its EOI, so the device re-asserts at the resample while work
 * is left.
 */

import type { BusDevice } from '../chip/bus.ts';
import { localApicRegisterAddress } from '../chip/chip-bus-devices.ts';
import type { SimGuest } from '../chip/sim-vcpu.ts';
import { IOAPIC_DEFAULT_BASE_ADDRESS, IoapicMmioOffset, IoapicRegisterIndex } from '../x86/ioapic/ioapic.ts';
import { RTE_POLARITY_ACTIVE_LOW, RTE_TRIGGER_LEVEL } from '../x86/ioapic/redirection-entry.ts';
import {
  ApicRegister,
  ICR_LEVEL_ASSERT,
  ICR_DELIVERY_MODE_SHIFT,
  LVT_TIMER_MODE_SHIFT,
  SVR_APIC_ENABLED,
  TimerMode,
  XAPIC_ID_SHIFT,
} from '../x86/lapic/apic-registers.ts';
import { DeliveryMode } from '../x86/interrupt-message.ts';
import { CASCADE_PIN } from '../x86/pic/pic-chip.ts';
import { picPairInitialisationWrites } from '../x86/pic/pic-init.ts';
import { PicPort } from '../x86/pic/pic.ts';
import {
  APPLICATION_PROCESSORS,
  DEVICE_VCPU,
  IPI_VCPU,
  NIC_ACK,
  NIC_GSI,
  NIC_MMIO_BASE,
  NIC_STATUS,
  PIC_SPURIOUS_IRQ,
  SIPI_VECTOR,
  TICKS_PER_IPI,
  UART_IRQ,
  Vector,
  type MachineMemory,
} from './machine-layout.ts';

const APIC_SVR = localApicRegisterAddress(ApicRegister.SpuriousVector);
const APIC_LVT_TIMER = localApicRegisterAddress(ApicRegister.LvtTimer);
const APIC_TIMER_INITIAL_COUNT = localApicRegisterAddress(ApicRegister.TimerInitialCount);
const APIC_TIMER_DIVIDE = localApicRegisterAddress(ApicRegister.TimerDivideConfiguration);
/** SVR: APIC software-enabled, spurious vector 0xFF (SDM §11.9). */
const SVR_ENABLED_SPURIOUS_FF = SVR_APIC_ENABLED | 0xff;
/** TDCR 1011b: divide by 1, so with the 1 ns bus cycle the count is in ns (SDM Figure 11-10). */
const TIMER_DIVIDE_BY_1 = 0xb;

const IOAPIC_REGISTER_SELECT = IOAPIC_DEFAULT_BASE_ADDRESS + IoapicMmioOffset.RegisterSelect;
const IOAPIC_WINDOW = IOAPIC_DEFAULT_BASE_ADDRESS + IoapicMmioOffset.Window;

const ALL_MASKED = 0xff;

/** How long the BSP waits for an application processor to come up. */
const AP_STARTUP_TIMEOUT_MS = 10_000;

/** What one vCPU's guest did, for the VMM's report. */
export interface GuestTally {
  readonly handled: Map<number, number>;
  ipisSent: number;
  startupIpisSent: number;
  nicSpurious: number;
  timerTicks: number;
}

export function newGuestTally(): GuestTally {
  return { handled: new Map(), ipisSent: 0, startupIpisSent: 0, nicSpurious: 0, timerTicks: 0 };
}

/** Every vCPU: software-enable the local APIC. */
export function enableLocalApic(guest: SimGuest): void {
  guest.writeMmio32(APIC_SVR, SVR_ENABLED_SPURIOUS_FF);
}

/**
 * The BSP's set-up of the machine's interrupt controllers: its local APIC enabled, the 8259A pair
 * with only the UART's IRQ (and the cascade) unmasked, and the NIC's IOAPIC entry (level, active
 * low as PCI INTx is, fixed to vCPU 1). The BSP's LINT0 stays in ExtINT mode, as RESET leaves it,
 * so the 8259A reaches vCPU 0 through the virtual wire.
 */
export function programControllers(guest: SimGuest): void {
  enableLocalApic(guest);
  for (const [port, value] of picPairInitialisationWrites({ masterVectorBase: Vector.PicMasterBase, slaveVectorBase: Vector.PicSlaveBase })) {
    guest.outb(port, value);
  }
  guest.outb(PicPort.MasterData, ALL_MASKED & ~(1 << UART_IRQ) & ~(1 << CASCADE_PIN));
  guest.outb(PicPort.SlaveData, ALL_MASKED);

  // 82093AA §3.2.4: the destination (high half) first, then the low half, which unmasks.
  const redirectionEntry = IoapicRegisterIndex.RedirectionTable + 2 * NIC_GSI;
  guest.writeMmio32(IOAPIC_REGISTER_SELECT, redirectionEntry + 1);
  guest.writeMmio32(IOAPIC_WINDOW, DEVICE_VCPU << XAPIC_ID_SHIFT);
  guest.writeMmio32(IOAPIC_REGISTER_SELECT, redirectionEntry);
  guest.writeMmio32(IOAPIC_WINDOW, Vector.Nic | RTE_TRIGGER_LEVEL | RTE_POLARITY_ACTIVE_LOW);
}

/** The BSP's local APIC timer: periodic, divide by 1, so the initial count is the period in ns. */
export function startTimer(guest: SimGuest, timerPeriodNs: number): void {
  guest.writeMmio32(APIC_TIMER_DIVIDE, TIMER_DIVIDE_BY_1);
  guest.writeMmio32(APIC_LVT_TIMER, (TimerMode.Periodic << LVT_TIMER_MODE_SHIFT) | Vector.Timer);
  guest.writeMmio32(APIC_TIMER_INITIAL_COUNT, timerPeriodNs);
}

/** The BSP starts each application processor with INIT, SIPI, SIPI and waits until it runs. */
export function startApplicationProcessors(guest: SimGuest, memory: MachineMemory, tally: GuestTally): void {
  for (const ap of APPLICATION_PROCESSORS) {
    guest.sendIpi(ap, (DeliveryMode.Init << ICR_DELIVERY_MODE_SHIFT) | ICR_LEVEL_ASSERT);
    // The SDM's algorithm sends the SIPI twice; an AP already started ignores the second.
    guest.sendIpi(ap, (DeliveryMode.StartUp << ICR_DELIVERY_MODE_SHIFT) | ICR_LEVEL_ASSERT | SIPI_VECTOR);
    guest.sendIpi(ap, (DeliveryMode.StartUp << ICR_DELIVERY_MODE_SHIFT) | ICR_LEVEL_ASSERT | SIPI_VECTOR);
    tally.startupIpisSent += 3;
  }
  for (const ap of APPLICATION_PROCESSORS) {
    if (!memory.waitApOnline(ap, AP_STARTUP_TIMEOUT_MS)) throw new Error(`vCPU ${ap} did not start within ${AP_STARTUP_TIMEOUT_MS} ms`);
  }
}

/**
 * The guest's interrupt handlers, one table for every vCPU (each takes only what was routed to it).
 * An unknown vector is still counted and ended, so the report shows it.
 */
export function handleInterrupt(vector: number, guest: SimGuest, tally: GuestTally): void {
  tally.handled.set(vector, (tally.handled.get(vector) ?? 0) + 1);
  switch (vector) {
    case Vector.Timer:
      tally.timerTicks++;
      // A scheduler tick that kicks another CPU now and then.
      if (tally.timerTicks % TICKS_PER_IPI === 0) {
        guest.sendIpi(IPI_VCPU, (DeliveryMode.Fixed << ICR_DELIVERY_MODE_SHIFT) | ICR_LEVEL_ASSERT | Vector.Ipi);
        tally.ipisSent++;
      }
      guest.eoiLocalApic();
      return;
    case Vector.PicMasterBase + UART_IRQ:
      guest.eoiPic(UART_IRQ);
      return;
    case Vector.PicMasterBase + PIC_SPURIOUS_IRQ:
      // A spurious IRQ 7 set no ISR bit, so it takes no EOI (8259A datasheet; x86-controllers.md §1.9).
      return;
    case Vector.Nic:
      // One descriptor per interrupt: what is left keeps the line asserted past the EOI.
      if (guest.readMmio32(NIC_MMIO_BASE + NIC_STATUS) > 0) guest.writeMmio32(NIC_MMIO_BASE + NIC_ACK, 1);
      else tally.nicSpurious++;
      guest.eoiLocalApic();
      return;
    default:
      guest.eoiLocalApic();
  }
}

/** The NIC's registers on a vCPU thread's MMIO bus, over the NIC's state in shared memory. */
export class NicRegisters implements BusDevice {
  readonly busName = 'demo-nic';
  constructor(private readonly memory: MachineMemory) {}

  read(offset: number): number {
    return offset === NIC_STATUS ? this.memory.nicPending() : 0;
  }

  write(offset: number, _size: number, value: number): void {
    if (offset === NIC_ACK) this.memory.completeNicWork(value);
  }
}
