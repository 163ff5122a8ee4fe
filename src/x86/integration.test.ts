/**
 * Cross-controller scenarios (x86-controllers.md §7): real `LocalApic`s, `Ioapic` and `PicPair`
 * wired through the real `ApicBus`, driven the way a guest drives them (MMIO, MSRs, port I/O,
 * device lines, MSI writes). Each controller's own behaviour is tested beside it; these tests pin
 * what only the wiring can show.
 */
import assert from 'node:assert/strict';
import { describe, test } from 'node:test';
import { VirtualClock } from '../base/clock.ts';
import { rejectsWith } from '../testing/irq-chip-error.ts';
import { DeliveryMode, type EoiBroadcastListener } from './interrupt-message.ts';
import { Ioapic } from './ioapic/ioapic.ts';
import { entryHigh, entryLow, writeEntry } from './ioapic/test-support.ts';
import { ApicBus, type ApicBusOptions } from './lapic/apic-bus.ts';
import { LocalApic, NO_INTERRUPT } from './lapic/local-apic.ts';
import { APIC_BASE_DISABLED, APIC_BASE_X2APIC, Mmio, MSR_APIC_BASE, SVR_ENABLED, vectorsOf } from './lapic/local-apic-test-support.ts';
import { PicPair } from './pic/pic.ts';
import { standardInit } from './pic/pic-test-support.ts';
import { TestWorker } from '../testing/test-worker.ts';
import type { BusWorkerReply, BusWorkerRequest } from './apic-bus-worker.fixture.ts';

/** DFR with the cluster model (bits 31:28 = 0); bits 27:0 read as ones. */
const DFR_CLUSTER = 0x0fffffff;
/** ICR low bits (SDM §11.6.1). */
const ICR_LOGICAL = 1 << 11;
const ICR_ASSERT = 1 << 14;
const ICR_LOWEST_PRIORITY = DeliveryMode.LowestPriority << 8;
/** The x2APIC ICR: one 64-bit MSR, destination in bits 63:32 (SDM §11.12.9). */
const MSR_X2APIC_ICR = 0x830;
/** LVT LINT0 in ExtINT mode, unmasked (the BSP's RESET value, §3.14), and masked. */
const LINT0_EXTINT = 0x700;
const LINT0_MASKED = 0x10000;
/** IOAPIC pin used by the scenarios that need one. */
const PIN = 5;
/** PIC IRQ 4 with the standard init (vector base 0x08) is vector 0x0C. */
const PIC_IRQ4_VECTOR = 0x0c;

interface MachineOptions {
  readonly apics?: number;
  /** x2APIC IDs by bus index (default: the bus index). */
  readonly x2apicIds?: readonly number[];
  readonly bus?: ApicBusOptions;
  /** Software-enable every APIC (SVR = 0x1FF). Default true. */
  readonly softwareEnabled?: boolean;
}

/** One small machine: a PIC pair, an IOAPIC, local APICs, all on one APIC bus, one clock. */
class Machine {
  readonly clock = new VirtualClock();
  readonly bus: ApicBus;
  readonly pic = PicPair.create();
  readonly ioapic: Ioapic;
  readonly apics: LocalApic[];
  /** Every EOI broadcast a local APIC made, in order (they are forwarded to the IOAPIC). */
  readonly eoiBroadcasts: number[] = [];

  constructor(options: MachineOptions = {}) {
    this.bus = ApicBus.create(options.bus);
    this.ioapic = Ioapic.create({ sink: this.bus, clock: this.clock });
    const eoiListener: EoiBroadcastListener = {
      endOfInterrupt: (vector) => {
        this.eoiBroadcasts.push(vector);
        this.ioapic.endOfInterrupt(vector);
      },
    };
    this.apics = Array.from({ length: options.apics ?? 2 }, (_, busIndex) =>
      LocalApic.create({
        busIndex,
        bsp: busIndex === 0,
        x2apicId: options.x2apicIds?.[busIndex] ?? busIndex,
        clock: this.clock,
        ipiSink: this.bus,
        eoiListener,
        extInt: this.pic,
      }),
    );
    for (const apic of this.apics) {
      this.bus.addMember(apic);
      if (options.softwareEnabled !== false) apic.mmioWrite(Mmio.SpuriousVector, 4, SVR_ENABLED);
    }
    // The chip's wiring: the PIC's INT output drives the BSP's LINT0 (x86-controllers.md §3.14).
    this.pic.setOutputListener((level) => {
      this.apic(0).setLintLevel(0, level);
    });
  }

  apic(busIndex: number): LocalApic {
    const apic = this.apics[busIndex];
    assert.ok(apic !== undefined, `no APIC ${busIndex}`);
    return apic;
  }

  write(busIndex: number, offset: number, value: number): void {
    this.apic(busIndex).mmioWrite(offset, 4, value >>> 0);
  }

  /** The xAPIC IPI sequence: ICR high (destination in bits 31:24), then ICR low, which sends. */
  sendIpi(from: number, destination: number, icrLow: number): void {
    this.write(from, Mmio.IcrHigh, destination << 24);
    this.write(from, Mmio.IcrLow, icrLow);
  }

  /** Vectors pending in each APIC's IRR, by bus index. */
  requests(): number[][] {
    return this.apics.map((apic) => vectorsOf((vector) => apic.irr(vector)));
  }

  /** Bus indexes of the APICs with `vector` in IRR. */
  holders(vector: number): number[] {
    return this.apics.filter((apic) => apic.irr(vector)).map((apic) => apic.busIndex);
  }

  enterX2apicMode(): void {
    for (const apic of this.apics) assert.equal(apic.writeMsr(MSR_APIC_BASE, (apic.apicBase() & 0x100n) | APIC_BASE_X2APIC), true);
  }
}

describe('IPIs between local APICs through the bus (§7.3)', () => {
  test('L11 IPI phys: ICR high 0x01000000, low 0x00004041 from LA0 → LA1 IRR 0x41; ICR low reads 0x00004041', () => {
    const machine = new Machine();
    machine.sendIpi(0, 0x01, 0x00004041);
    assert.deepEqual(machine.requests(), [[], [0x41]]);
    assert.equal(machine.apic(0).mmioRead(Mmio.IcrLow, 4), 0x00004041);
  });

  test('L12 shorthands from LA1: self 0x00044042 → LA1 only; all 0x00084043 → all; all-but-self 0x000C4044 → others', () => {
    const machine = new Machine({ apics: 3 });
    machine.sendIpi(1, 0, 0x00044042);
    machine.sendIpi(1, 0, 0x00084043);
    machine.sendIpi(1, 0, 0x000c4044);
    assert.deepEqual(machine.holders(0x42), [1]);
    assert.deepEqual(machine.holders(0x43), [0, 1, 2]);
    assert.deepEqual(machine.holders(0x44), [0, 2]);
  });

  test('L13 flat logical: LDR 0x01000000 / 0x02000000; dest 0x02 → LA1 only; dest 0x03 → both', () => {
    const machine = new Machine();
    machine.write(0, Mmio.LogicalDestination, 0x01000000);
    machine.write(1, Mmio.LogicalDestination, 0x02000000);
    machine.sendIpi(0, 0x02, ICR_ASSERT | ICR_LOGICAL | 0x50);
    machine.sendIpi(0, 0x03, ICR_ASSERT | ICR_LOGICAL | 0x51);
    assert.deepEqual(machine.holders(0x50), [1]);
    assert.deepEqual(machine.holders(0x51), [0, 1]);
  });

  test('L14 cluster: LDR 0x12 / 0x21; dest 0x12 → LA0; 0x13 → LA0; 0x11 → none; 0xFF → both', () => {
    const machine = new Machine();
    for (const busIndex of [0, 1]) machine.write(busIndex, Mmio.DestinationFormat, DFR_CLUSTER);
    machine.write(0, Mmio.LogicalDestination, 0x12000000);
    machine.write(1, Mmio.LogicalDestination, 0x21000000);
    const cases: readonly (readonly [number, number, readonly number[]])[] = [
      [0x12, 0x60, [0]],
      [0x13, 0x61, [0]],
      [0x11, 0x62, []],
      [0xff, 0x63, [0, 1]],
    ];
    for (const [destination, vector] of cases) machine.sendIpi(1, destination, ICR_ASSERT | ICR_LOGICAL | vector);
    for (const [destination, vector, expected] of cases) assert.deepEqual(machine.holders(vector), expected, `dest 0x${destination.toString(16)}`);
  });

  test('L15 physical broadcast dest 0xFF fixed reaches every APIC, the sender included', () => {
    const machine = new Machine({ apics: 3 });
    machine.sendIpi(2, 0xff, ICR_ASSERT | 0x45);
    assert.deepEqual(machine.holders(0x45), [0, 1, 2]);
  });

  test('L34 lowest priority: TPR LA0 0x10, LA1 0 → only LA1 gets 0x6F; then TPR LA1 0x20, LA0 0 → only LA0', () => {
    const machine = new Machine();
    machine.write(0, Mmio.LogicalDestination, 0x01000000);
    machine.write(1, Mmio.LogicalDestination, 0x02000000);
    machine.write(0, Mmio.TaskPriority, 0x10);
    machine.sendIpi(0, 0x03, 0x0000496f);
    assert.deepEqual(machine.holders(0x6f), [1]);
    assert.equal(machine.apic(1).acknowledgeInterrupt(), 0x6f);
    machine.write(1, Mmio.TaskPriority, 0x20);
    machine.write(0, Mmio.TaskPriority, 0x00);
    machine.sendIpi(0, 0x03, 0x0000496f);
    assert.deepEqual(machine.holders(0x6f), [0]);
  });

  test('an x2APIC IPI to destination 0xFF is a plain ID (the broadcast quirk is for IOAPIC/MSI only)', () => {
    const machine = new Machine({ apics: 3, x2apicIds: [0, 1, 0xff] });
    machine.enterX2apicMode();
    assert.equal(machine.apic(0).writeMsr(MSR_X2APIC_ICR, (0xffn << 32n) | BigInt(ICR_ASSERT | 0x48)), true);
    assert.deepEqual(machine.holders(0x48), [2]);
  });

  test('an IPI to an APIC ID nobody has is counted by the bus and reaches nobody', () => {
    const machine = new Machine();
    machine.sendIpi(0, 0x07, ICR_ASSERT | 0x46);
    assert.deepEqual(machine.requests(), [[], []]);
    assert.equal(machine.bus.counters().noDestination, 1);
  });

  test('lowest priority skips a software-disabled APIC even when its PPR is lowest', () => {
    const machine = new Machine();
    machine.write(0, Mmio.LogicalDestination, 0x01000000);
    machine.write(1, Mmio.LogicalDestination, 0x02000000);
    machine.write(1, Mmio.TaskPriority, 0x30);
    machine.write(0, Mmio.SpuriousVector, 0xff);
    machine.sendIpi(1, 0x03, ICR_ASSERT | ICR_LOGICAL | ICR_LOWEST_PRIORITY | 0x47);
    assert.deepEqual(machine.holders(0x47), [1]);
  });
});

describe('MSIs through the bus to local APICs (§7.4)', () => {
  test('M1 address 0xFEE01000, data 0xF1 → LA1 IRR 0xF1, TMR clear', () => {
    const machine = new Machine();
    assert.equal(machine.bus.deliverMsi(0xfee01000, 0, 0x000000f1), 1);
    assert.deepEqual(machine.requests(), [[], [0xf1]]);
    assert.equal(machine.apic(1).tmr(0xf1), false);
  });

  test('M2 address 0xFEE0300C (dest 3, RH, logical), data 0x1F2, flat LDRs 1/2 → exactly one of LA0/LA1', () => {
    const machine = new Machine();
    machine.write(0, Mmio.LogicalDestination, 0x01000000);
    machine.write(1, Mmio.LogicalDestination, 0x02000000);
    assert.equal(machine.bus.deliverMsi(0xfee0300c, 0, 0x000001f2), 1);
    assert.equal(machine.holders(0xf2).length, 1);
  });

  test('M2 variant: with the redirection hint a fixed MSI goes to the lower-priority APIC only', () => {
    const machine = new Machine();
    machine.write(0, Mmio.LogicalDestination, 0x01000000);
    machine.write(1, Mmio.LogicalDestination, 0x02000000);
    machine.write(0, Mmio.TaskPriority, 0x40);
    assert.equal(machine.bus.deliverMsi(0xfee0300c, 0, 0x000000f2), 1);
    assert.deepEqual(machine.holders(0xf2), [1]);
  });

  test('M3 data 0xC0F3 (level, assert) → TMR bit set; take and EOI → EOI broadcast of 0xF3', () => {
    const machine = new Machine();
    assert.equal(machine.bus.deliverMsi(0xfee00000, 0, 0x0000c0f3), 1);
    const target = machine.apic(0);
    assert.equal(target.tmr(0xf3), true);
    assert.equal(target.acknowledgeInterrupt(), 0xf3);
    machine.write(0, Mmio.Eoi, 0);
    assert.deepEqual(machine.eoiBroadcasts, [0xf3]);
  });

  test('a level-triggered MSI with the level bit clear is a de-assert: nothing is accepted (SDM §11.11.2)', () => {
    const machine = new Machine();
    assert.equal(machine.bus.deliverMsi(0xfee00000, 0, 0x000080f3), 0);
    assert.deepEqual(machine.requests(), [[], []]);
  });

  test('M4 data 0x400 → NMI pending on the target, no IRR bit', () => {
    const machine = new Machine();
    assert.equal(machine.bus.deliverMsi(0xfee01000, 0, 0x00000400), 1);
    assert.deepEqual(machine.requests(), [[], []]);
    assert.equal(machine.apic(0).takeNmi(), false);
    assert.equal(machine.apic(1).takeNmi(), true);
  });

  test('M5 32-bit IDs on: addr_hi 0x100, addr_lo 0xFEE02000 → x2APIC ID 0x102; addr_hi 0x101 → EINVAL', () => {
    const machine = new Machine({ x2apicIds: [0x002, 0x102], bus: { x2apicDestinationIds: true, x2apicBroadcastQuirk: false } });
    machine.enterX2apicMode();
    assert.equal(machine.bus.deliverMsi(0xfee02000, 0x00000100, 0x31), 1);
    assert.deepEqual(machine.holders(0x31), [1]);
    assert.throws(() => machine.bus.deliverMsi(0xfee02000, 0x00000101, 0x32), rejectsWith('EINVAL'));
    assert.deepEqual(machine.holders(0x32), []);
  });

  test('M6 extended destination ID advertised: addr_lo 0xFEE00020 → destination 0x100', () => {
    const machine = new Machine({ x2apicIds: [0x000, 0x100], bus: { extendedDestinationId: true } });
    machine.enterX2apicMode();
    assert.equal(machine.bus.deliverMsi(0xfee00020, 0, 0x31), 1);
    assert.deepEqual(machine.holders(0x31), [1]);
  });

  test('M6 hotplug rule: an xAPIC-mode APIC with x2APIC ID 0x100 is reached by destination 0x100', () => {
    const machine = new Machine({ x2apicIds: [0x000, 0x100], bus: { extendedDestinationId: true } });
    assert.equal(machine.bus.deliverMsi(0xfee00020, 0, 0x31), 1);
    assert.deepEqual(machine.holders(0x31), [1]);
  });

  test('M7 addr 0xFEEFF000 physical, x2APIC targets: broadcast to all with the quirk', () => {
    const machine = new Machine({ apics: 3, x2apicIds: [0, 1, 0xff] });
    machine.enterX2apicMode();
    assert.equal(machine.bus.deliverMsi(0xfeeff000, 0, 0x31), 3);
    assert.deepEqual(machine.holders(0x31), [0, 1, 2]);
  });

  test('M7 with the broadcast quirk disabled: only x2APIC ID 0xFF', () => {
    const machine = new Machine({ apics: 3, x2apicIds: [0, 1, 0xff], bus: { x2apicBroadcastQuirk: false } });
    machine.enterX2apicMode();
    assert.equal(machine.bus.deliverMsi(0xfeeff000, 0, 0x31), 1);
    assert.deepEqual(machine.holders(0x31), [2]);
  });

  test('an MSI to a software-disabled APIC returns 0; to an ID nobody has -1', () => {
    const machine = new Machine({ softwareEnabled: false });
    assert.equal(machine.bus.deliverMsi(0xfee01000, 0, 0x31), 0);
    assert.equal(machine.bus.deliverMsi(0xfee09000, 0, 0x31), -1);
    assert.deepEqual(machine.requests(), [[], []]);
  });
});

describe('IOAPIC → bus → local APICs (§7.2)', () => {
  test('I22 logical dest 0x03 flat, LDR 0x01000000 / 0x02000000, fixed → both IRRs set', () => {
    const machine = new Machine();
    machine.write(0, Mmio.LogicalDestination, 0x01000000);
    machine.write(1, Mmio.LogicalDestination, 0x02000000);
    writeEntry(machine.ioapic, PIN, entryLow({ vector: 0x38, logical: true }), entryHigh(0x03));
    assert.equal(machine.ioapic.setIrq(PIN, true), 2);
    assert.deepEqual(machine.holders(0x38), [0, 1]);
  });

  test('I23 lowest priority, dest 0x03 logical, LA0 TPR 0x20, LA1 TPR 0 → only LA1', () => {
    const machine = new Machine();
    machine.write(0, Mmio.LogicalDestination, 0x01000000);
    machine.write(1, Mmio.LogicalDestination, 0x02000000);
    machine.write(0, Mmio.TaskPriority, 0x20);
    writeEntry(machine.ioapic, PIN, entryLow({ vector: 0x39, logical: true, deliveryMode: DeliveryMode.LowestPriority }), entryHigh(0x03));
    assert.equal(machine.ioapic.setIrq(PIN, true), 1);
    assert.deepEqual(machine.holders(0x39), [1]);
  });

  test('I24 NMI delivery-mode RTE, edge → NMI pending on the target, no IRR bit', () => {
    const machine = new Machine();
    writeEntry(machine.ioapic, PIN, entryLow({ vector: 0x3a, deliveryMode: DeliveryMode.Nmi }), entryHigh(0x01));
    machine.ioapic.setIrq(PIN, true);
    assert.deepEqual(machine.requests(), [[], []]);
    assert.equal(machine.apic(1).takeNmi(), true);
  });

  test('I25 ExtINT RTE to LA0 with PIC IRQ4 pending → the vector comes from the PIC INTA (0x0C)', () => {
    const machine = new Machine();
    // LINT0 masked, so the PIC reaches LA0 only through the IOAPIC's ExtINT message.
    machine.write(0, Mmio.LvtLint0, LINT0_MASKED);
    standardInit(machine.pic);
    machine.pic.setIrq(4, true);
    assert.equal(machine.apic(0).hasInterrupt(), false);
    writeEntry(machine.ioapic, PIN, entryLow({ vector: 0, deliveryMode: DeliveryMode.ExtInt }), entryHigh(0x00));
    assert.equal(machine.ioapic.setIrq(PIN, true), 1);
    assert.equal(machine.apic(0).hasInterrupt(), true);
    assert.equal(machine.apic(0).acknowledgeInterrupt(), PIC_IRQ4_VECTOR);
    assert.deepEqual(machine.requests(), [[], []]);
  });

  test('a level interrupt completes its journey: IOAPIC → LAPIC → EOI broadcast clears remote IRR and re-delivers a held line', () => {
    const machine = new Machine();
    writeEntry(machine.ioapic, PIN, entryLow({ vector: 0x3b, level: true }), entryHigh(0x01));
    machine.ioapic.setIrq(PIN, true);
    const target = machine.apic(1);
    assert.equal(target.tmr(0x3b), true);
    assert.equal(machine.ioapic.remoteIrr(PIN), true);
    assert.equal(target.acknowledgeInterrupt(), 0x3b);
    machine.write(1, Mmio.Eoi, 0);
    assert.deepEqual(machine.eoiBroadcasts, [0x3b]);
    // Still asserted: the EOI re-delivers at once (x86-controllers.md §2.8).
    assert.equal(target.irr(0x3b), true);
    assert.equal(machine.ioapic.remoteIrr(PIN), true);
    assert.equal(target.acknowledgeInterrupt(), 0x3b);
    machine.ioapic.setIrq(PIN, false);
    machine.write(1, Mmio.Eoi, 0);
    assert.equal(machine.ioapic.remoteIrr(PIN), false);
    assert.deepEqual(machine.requests(), [[], []]);
  });

  test('a physical 0xFF RTE reaches x2APIC-mode APICs through the broadcast quirk', () => {
    const machine = new Machine({ apics: 3 });
    machine.enterX2apicMode();
    writeEntry(machine.ioapic, PIN, entryLow({ vector: 0x3c }), entryHigh(0xff));
    assert.equal(machine.ioapic.setIrq(PIN, true), 3);
    assert.deepEqual(machine.holders(0x3c), [0, 1, 2]);
  });
});

describe('PIC output → LAPIC LINT0 (§7.1)', () => {
  test('P30 LINT0 masked: no ExtINT; LVT0 = 0x700 → PIC vector via INTA; APIC EN = 0 → ExtINT accepted', () => {
    const machine = new Machine();
    const bsp = machine.apic(0);
    standardInit(machine.pic);
    machine.write(0, Mmio.LvtLint0, LINT0_MASKED);
    machine.pic.setIrq(4, true);
    assert.equal(machine.pic.outputLevel(), true);
    assert.equal(bsp.hasInterrupt(), false);
    assert.equal(bsp.acknowledgeInterrupt(), NO_INTERRUPT);

    machine.write(0, Mmio.LvtLint0, LINT0_EXTINT);
    assert.equal(bsp.hasInterrupt(), true);
    assert.equal(bsp.acknowledgeInterrupt(), PIC_IRQ4_VECTOR);
    assert.equal(machine.pic.outputLevel(), false);

    machine.pic.writePort(0x20, 1, 0x20);
    machine.write(0, Mmio.LvtLint0, LINT0_MASKED);
    machine.pic.setIrq(4, false);
    machine.pic.setIrq(4, true);
    assert.equal(bsp.hasInterrupt(), false);
    assert.equal(bsp.writeMsr(MSR_APIC_BASE, APIC_BASE_DISABLED | 0x100n), true);
    assert.equal(bsp.hasInterrupt(), true);
    assert.equal(bsp.acknowledgeInterrupt(), PIC_IRQ4_VECTOR);
  });

  test('the PIC reaches only APICs whose LINT0 is in ExtINT mode: an AP (LINT0 masked at RESET) takes nothing', () => {
    const machine = new Machine();
    standardInit(machine.pic);
    machine.pic.setIrq(4, true);
    assert.equal(machine.apic(1).hasInterrupt(), false);
    assert.equal(machine.apic(0).acknowledgeInterrupt(), PIC_IRQ4_VECTOR);
  });
});

describe('the bus across threads', () => {
  test('a device worker with its own bus and LAPIC views delivers MSIs this thread sees, and shares the bus counters', async () => {
    const machine = new Machine();
    const device = new TestWorker<BusWorkerRequest, BusWorkerReply>(new URL('./apic-bus-worker.fixture.ts', import.meta.url));
    try {
      const results = await device.request({
        bus: machine.bus.descriptor(),
        apics: machine.apics.map((apic) => apic.descriptor()),
        clock: machine.clock.descriptor(),
        writes: [
          { addressLow: 0xfee01000, data: 0x52 },
          { addressLow: 0xfeeff000, data: 0x53 },
          { addressLow: 0xfed00000, data: 0x54 },
        ],
      });
      assert.deepEqual(results, [1, 2, -1]);
      assert.deepEqual(machine.requests(), [[0x53], [0x52, 0x53]]);
      assert.equal(machine.bus.counters().nonInterruptAddresses, 1);
    } finally {
      await device.terminate();
    }
  });
});
