/**
 * The controller half of `npm start`: a small simulated PC built from the x86 models, on one
 * thread, driven by a virtual clock. Four sources raise interrupts and two simulated CPUs take
 * them the way a guest would (acknowledge, run a handler, write EOI):
 *
 * - a level-triggered device on IOAPIC pin 10 (an IrqLevelEvent: it re-asserts at each resample
 *   while it still has work), to CPU 1;
 * - the local APIC timer of CPU 0 in periodic mode;
 * - an MSI source writing its message straight to the APIC bus, to CPU 1;
 * - ISA IRQ 3 on the 8259A, reaching CPU 0 through LINT0 in virtual-wire (ExtINT) mode.
 *
 * It returns, per source, how many interrupts were raised and how many the CPUs handled, so a
 * reader can see each interrupt's journey accounted for.
 */
import { VirtualClock } from '../base/clock.ts';
import { IrqLevelEvent } from '../event/irq-event.ts';
import { Ioapic } from '../x86/ioapic/ioapic.ts';
import { ApicBus } from '../x86/lapic/apic-bus.ts';
import { LocalApic, NO_INTERRUPT } from '../x86/lapic/local-apic.ts';
import { encodeMsi } from '../x86/msi/msi-codec.ts';
import { DeliveryMode, DestinationMode, TriggerMode } from '../x86/interrupt-message.ts';
import { PicPair } from '../x86/pic/pic.ts';

export interface ControllerSourceSummary {
  readonly source: string;
  readonly path: string;
  readonly raised: number;
  readonly handled: number;
}

// Guest-visible constants the simulated guest programs (SDM vol. 3 ch. 11; 8259A datasheet; 82093AA).
const APIC_SVR_OFFSET = 0xf0;
const APIC_EOI_OFFSET = 0xb0;
const APIC_LVT_TIMER_OFFSET = 0x320;
const APIC_TIMER_INITIAL_COUNT_OFFSET = 0x380;
const APIC_TIMER_DIVIDE_OFFSET = 0x3e0;
const SVR_ENABLE_SPURIOUS_FF = 0x1ff;
const LVT_TIMER_PERIODIC = 1 << 17;
const TIMER_DIVIDE_BY_1 = 0xb;
const IOREGSEL = 0x00;
const IOWIN = 0x10;
const IOAPIC_RTE_LEVEL = 1 << 15;
const PIC_MASTER_COMMAND = 0x20;
const PIC_MASTER_DATA = 0x21;
const PIC_SLAVE_COMMAND = 0xa0;
const PIC_SLAVE_DATA = 0xa1;
const PIC_NON_SPECIFIC_EOI = 0x20;

const DEVICE_PIN = 10;
const DEVICE_VECTOR = 0x3a;
const TIMER_VECTOR = 0xef;
const MSI_VECTOR = 0x41;
const PIC_IRQ = 3;
const PIC_VECTOR_BASE = 0x20;
const TIMER_PERIOD_NS = 250_000;
const STEP_NS = 10_000;

interface Machine {
  readonly clock: VirtualClock;
  readonly pic: PicPair;
  readonly ioapic: Ioapic;
  readonly bus: ApicBus;
  readonly cpus: readonly LocalApic[];
}

function buildMachine(): Machine {
  const clock = new VirtualClock();
  const bus = ApicBus.create();
  const pic = PicPair.create();
  const ioapic = Ioapic.create({ sink: bus, clock });
  const cpus = [0, 1].map((index) => LocalApic.create({ busIndex: index, bsp: index === 0, clock, ipiSink: bus, eoiListener: ioapic, extInt: pic }));
  for (const cpu of cpus) {
    bus.addMember(cpu);
    cpu.mmioWrite(APIC_SVR_OFFSET, 4, SVR_ENABLE_SPURIOUS_FF);
  }
  // The PIC's INT output is CPU 0's LINT0, which the BSP's RESET state sets to ExtINT.
  pic.setOutputListener((level) => {
    cpus[0]?.setLintLevel(0, level);
  });
  // Guest firmware: 8259A in PC cascade, vectors 0x20/0x28, only IRQ 3 (and the cascade) unmasked.
  for (const [port, value] of [
    [PIC_MASTER_COMMAND, 0x11],
    [PIC_MASTER_DATA, PIC_VECTOR_BASE],
    [PIC_MASTER_DATA, 0x04],
    [PIC_MASTER_DATA, 0x01],
    [PIC_SLAVE_COMMAND, 0x11],
    [PIC_SLAVE_DATA, PIC_VECTOR_BASE + 8],
    [PIC_SLAVE_DATA, 0x02],
    [PIC_SLAVE_DATA, 0x01],
    [PIC_MASTER_DATA, 0xff & ~(1 << PIC_IRQ) & ~(1 << 2)],
    [PIC_SLAVE_DATA, 0xff],
  ] as const) {
    pic.writePort(port, 1, value);
  }
  // IOAPIC pin 10: level, vector 0x3A, physical destination APIC 1.
  ioapic.mmioWrite(IOREGSEL, 4, 0x10 + 2 * DEVICE_PIN);
  ioapic.mmioWrite(IOWIN, 4, DEVICE_VECTOR | IOAPIC_RTE_LEVEL);
  ioapic.mmioWrite(IOREGSEL, 4, 0x10 + 2 * DEVICE_PIN + 1);
  ioapic.mmioWrite(IOWIN, 4, 1 << 24);
  // CPU 0's timer: periodic, divide by 1, 250 µs at one tick per ns (KVM clamps periods under 200 µs).
  const cpu0 = cpus[0];
  cpu0?.mmioWrite(APIC_TIMER_DIVIDE_OFFSET, 4, TIMER_DIVIDE_BY_1);
  cpu0?.mmioWrite(APIC_LVT_TIMER_OFFSET, 4, LVT_TIMER_PERIODIC | TIMER_VECTOR);
  cpu0?.mmioWrite(APIC_TIMER_INITIAL_COUNT_OFFSET, 4, TIMER_PERIOD_NS);
  return { clock, pic, ioapic, bus, cpus };
}

/** Runs the machine for `steps` steps of 10 µs of virtual time. */
export function runControllerDemo(steps = 2_000): ControllerSourceSummary[] {
  const machine = buildMachine();
  const { clock, pic, ioapic, bus, cpus } = machine;
  const handled = new Map<number, number>();
  const raised = { device: 0, timer: 0, msi: 0, pic: 0 };

  // The level device: work arrives every 7th step; it keeps its line asserted (re-triggering at
  // each resample) until its queue is empty.
  const device = new IrqLevelEvent();
  let deviceQueue = 0;
  ioapic.setPinResampled(DEVICE_PIN, true);
  ioapic.setResampleListener((pin) => {
    if (pin === DEVICE_PIN) device.triggerResample();
  });
  const msi = encodeMsi({ destination: 1, destinationMode: DestinationMode.Physical, deliveryMode: DeliveryMode.Fixed, vector: MSI_VECTOR, triggerMode: TriggerMode.Edge, level: true, redirectionHint: false });

  for (let step = 0; step < steps; step++) {
    clock.advance(STEP_NS);
    if (step % 7 === 0) {
      deviceQueue++;
      if (deviceQueue === 1) device.trigger();
    }
    if (step % 5 === 0) {
      bus.deliverMsi(msi.addressLow, msi.addressHigh, msi.data);
      raised.msi++;
    }
    if (step % 11 === 0) {
      pic.setIrq(PIC_IRQ, true);
      pic.setIrq(PIC_IRQ, false);
      raised.pic++;
    }
    // The chip's side of the level event: an assertion raises the IOAPIC pin.
    if (device.clearTrigger()) {
      ioapic.setIrq(DEVICE_PIN, true);
      raised.device++;
    }
    const timerDeadline = cpus[0]?.nextTimerDeadlineNs();
    if (timerDeadline !== undefined && timerDeadline <= clock.nowNs()) {
      cpus[0]?.processTimerExpiry();
      raised.timer++;
    }
    for (const cpu of cpus) runGuest(cpu, pic, handled, () => {
      if (cpu.busIndex === 1) deviceQueue = Math.max(0, deviceQueue - 1);
    });
    // The device's side of a resample: still work to do → assert again.
    if (device.clearResample() && deviceQueue > 0) device.trigger();
  }
  const handledOf = (vector: number) => handled.get(vector) ?? 0;
  return [
    { source: 'level device', path: 'IrqLevelEvent → IOAPIC pin 10 → CPU 1, EOI → resample', raised: raised.device, handled: handledOf(DEVICE_VECTOR) },
    { source: 'LAPIC timer', path: 'CPU 0 periodic timer → CPU 0', raised: raised.timer, handled: handledOf(TIMER_VECTOR) },
    { source: 'MSI', path: 'MSI 0xFEE01000/0x41 → APIC bus → CPU 1', raised: raised.msi, handled: handledOf(MSI_VECTOR) },
    { source: 'ISA IRQ 3', path: '8259A → LINT0 ExtINT → CPU 0, EOI to port 0x20', raised: raised.pic, handled: handledOf(PIC_VECTOR_BASE + PIC_IRQ) },
  ];
}

/** A guest's interrupt entry on one CPU: take every deliverable interrupt, handle it, EOI. */
function runGuest(cpu: LocalApic, pic: PicPair, handled: Map<number, number>, onDeviceInterrupt: () => void): void {
  for (;;) {
    const vector = cpu.acknowledgeInterrupt();
    if (vector === NO_INTERRUPT) return;
    handled.set(vector, (handled.get(vector) ?? 0) + 1);
    if (vector === DEVICE_VECTOR) onDeviceInterrupt();
    if (vector >= PIC_VECTOR_BASE && vector < PIC_VECTOR_BASE + 16) pic.writePort(PIC_MASTER_COMMAND, 1, PIC_NON_SPECIFIC_EOI);
    else cpu.mmioWrite(APIC_EOI_OFFSET, 4, 0);
  }
}
