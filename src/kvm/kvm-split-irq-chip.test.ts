/**
 * `KvmSplitIrqChip` against real KVM, without guest code: vCPU 0 is created on this thread and
 * never runs guest code, its in-kernel LAPIC software-enabled, so what KVM accepts for it stays in
 * its IRR and TMR (KVM_GET_LAPIC), where the tests look.
 */
import assert from 'node:assert/strict';
import { once } from 'node:events';
import { describe, test } from 'node:test';
import { Bus, IO_ADDRESS_LIMIT, MMIO_ADDRESS_LIMIT } from '../chip/bus.ts';
import { IrqAllocator } from '../chip/irq-allocator.ts';
import type { IrqEventIndex } from '../chip/types.ts';
import type { Vcpu } from '../chip/vcpu.ts';
import { Event } from '../event/event.ts';
import { IrqEdgeEvent, IrqLevelEvent } from '../event/irq-event.ts';
import { startTypeScriptWorker } from '../node/worker.ts';
import { IrqSourceChip, ioapicIrqRoute, msiIrqRoute, picIrqRoute } from '../routing/irq-route.ts';
import { assertIrqChipError } from '../testing/irq-chip-error.ts';
import { IOAPIC_DEFAULT_BASE_ADDRESS, IOAPIC_PIN_COUNT, IoapicMmioOffset } from '../x86/ioapic/ioapic.ts';
import { entryHigh, entryLow, writeEntry, writeEntryLow } from '../x86/ioapic/test-support.ts';
import { APIC_BASE_DEFAULT_ADDRESS, SVR_VECTOR_MASK } from '../x86/lapic/apic-registers.ts';
import { initialisePicPair } from '../x86/pic/pic-init.ts';
import { PicChip, PicPort } from '../x86/pic/pic.ts';
import { addon } from './addon.ts';
import { KvmExit, KvmIoctl } from './kvm-abi.ts';
import { KvmIrqfds } from './kvm-irqfd.ts';
import { KvmLapicState } from './kvm-lapic-state.ts';
import { fixedMsi, neverRunMachine, requestArrives, requestedVectors, setSpuriousVector, takeRequests, type NeverRunMachine } from './kvm-lapic-test-support.ts';
import { KvmSplitIrqChip } from './kvm-split-irq-chip.ts';
import { IRQ_SOURCE, kvmSkipReason } from './kvm-test-support.ts';
import { KvmVcpu } from './kvm-vcpu.ts';
import { KvmVm } from './kvm-vm.ts';
import { KICK_SIGNAL } from './linux.ts';
import { OsEvent } from './os-event.ts';
import type { SplitChipViewData, SplitChipViewReply } from './split-chip-view.fixture.ts';

const skip = kvmSkipReason('KvmSplitIrqChip on real KVM');

/** The vCPU never runs guest code: one page of RAM is KVM's minimum. */
const MEMORY_BYTES = 4096;
/** MSI address of APIC 0, physical destination (SDM vol. 3 §11.11.1). */
const MSI_TO_APIC_0 = 0xfee00000n;
/** RFLAGS with IF (bit 9) and the always-one bit 1. */
const RFLAGS_IF = 0x202n;
/** Data bits 15 (level trigger) and 14 (assert) of a level MSI (SDM §11.11.2). */
const MSI_DATA_LEVEL_ASSERT = 0xc000;

/** vCPU 0 is added to the chip on this thread, its LAPIC software-enabled, never run. */
type SplitMachine = NeverRunMachine<KvmSplitIrqChip>;

function splitMachine(vcpuCount = 1): SplitMachine {
  return neverRunMachine((vm) => KvmSplitIrqChip.create(vm, { vcpuCount }), { addVcpu: true });
}

/** Fixed delivery of `vector` to APIC 0, physical; edge unless `level`. */
function program(machine: SplitMachine, pin: number, fields: { vector: number; level?: boolean; masked?: boolean }): void {
  writeEntry(machine.chip.ioapic, pin, entryLow(fields), entryHigh(0));
}

/** An edge event on `gsi` that the chip services itself (not an irqfd), and its index. */
function chipServicedEdgeEvent(chip: KvmSplitIrqChip, gsi: number): { event: IrqEdgeEvent; index: IrqEventIndex } {
  const event = new IrqEdgeEvent();
  const index = chip.registerEdgeIrqEvent(gsi, event, IRQ_SOURCE);
  assert.ok(index !== undefined, `an event on GSI ${gsi} is the chip's to service`);
  return { event, index };
}

/** A device's signal on `event`, then the service thread's `serviceIrqEvent` on `chip` (the owner or a view). */
function signalAndService(chip: KvmSplitIrqChip, event: IrqEdgeEvent | IrqLevelEvent, index: IrqEventIndex): void {
  event.trigger();
  chip.serviceIrqEvent(index);
}

/** KVM's routing entry on `gsi` as the chip last pushed it. */
function kvmRouteOn(chip: KvmSplitIrqChip, gsi: number): unknown {
  return chip.kvmRoutes().filter((route) => route.gsi === gsi);
}

/** A vCPU that records what the chip does to it; `ready` says whether it takes an interrupt now. */
class RecordingVcpu implements Vcpu {
  readonly interrupts: number[] = [];
  windowRequested = false;
  constructor(
    readonly id: number,
    public ready: boolean,
  ) {}
  readyForInterrupt(): boolean {
    return this.ready;
  }
  interrupt(vector: number): void {
    this.interrupts.push(vector);
  }
  injectNmi(): void {
    throw new Error('no NMI expected');
  }
  setInterruptWindowRequested(requested: boolean): void {
    this.windowRequested = requested;
  }
  applyInit(): void {
    throw new Error('no INIT expected');
  }
  applySipi(): void {
    throw new Error('no SIPI expected');
  }
}

describe('KvmSplitIrqChip: the IOAPIC delivers into KVM local APICs', { skip }, () => {
  test('an edge event on IOAPIC pin 5 sets the programmed vector in KVM IRR (TMR clear), once per signal; masked, nothing', () => {
    using machine = splitMachine();
    const { chip, vcpu } = machine;
    program(machine, 5, { vector: 0x35 });
    const { event, index } = chipServicedEdgeEvent(chip, 5);
    for (let round = 0; round < 3; round++) {
      signalAndService(chip, event, index);
      const state = KvmLapicState.read(vcpu);
      assert.deepEqual(takeRequests(vcpu), [0x35], `signal ${round + 1} reached KVM's LAPIC`);
      assert.equal(state.tmr(0x35), false, 'edge: TMR clear');
    }
    program(machine, 5, { vector: 0x35, masked: true });
    signalAndService(chip, event, index);
    assert.deepEqual(requestedVectors(vcpu), [], 'a masked edge entry delivers nothing');
    assert.equal(chip.ioapic.counters().messagesAccepted, 3);
    assert.equal(chip.ioapic.counters().droppedMaskedEdges, 1);
  });

  test('a level event holds remote IRR until broadcastEoi(vector), which signals its resample event once; re-triggering delivers again', () => {
    using machine = splitMachine();
    const { chip, vcpu } = machine;
    program(machine, 10, { vector: 0x3a, level: true });
    const level = new IrqLevelEvent();
    const index = chip.registerLevelIrqEvent(10, level, IRQ_SOURCE);
    signalAndService(chip, level, index);
    assert.equal(KvmLapicState.read(vcpu).tmr(0x3a), true, 'level: KVM set TMR');
    assert.deepEqual(takeRequests(vcpu), [0x3a]);
    assert.equal(chip.ioapic.remoteIrr(10), true);
    signalAndService(chip, level, index);
    assert.deepEqual(requestedVectors(vcpu), [], 'while remote IRR is set the assertion coalesces');
    chip.broadcastEoi(0x3a);
    assert.equal(chip.ioapic.remoteIrr(10), false, 'the EOI cleared remote IRR');
    assert.equal(level.getResample().tryRead(), 1n, 'one resample for the EOI');
    assert.deepEqual(requestedVectors(vcpu), [], 'a resampled line is lowered, not re-delivered');
    signalAndService(chip, level, index);
    assert.deepEqual(takeRequests(vcpu), [0x3a], 'the device re-asserted: delivered again');
    assert.equal(chip.counters().resamplesSignalled, 1);
  });

  test('a line the VMM holds high (serviceIrq) is delivered again at each EOI while it stays asserted', () => {
    using machine = splitMachine();
    const { chip, vcpu } = machine;
    program(machine, 11, { vector: 0x3b, level: true });
    assert.ok(chip.serviceIrq(11, true) > 0, 'KVM accepted it');
    assert.deepEqual(takeRequests(vcpu), [0x3b]);
    chip.broadcastEoi(0x3b);
    assert.deepEqual(takeRequests(vcpu), [0x3b], 'still asserted at the EOI: re-delivered');
    chip.serviceIrq(11, false);
    chip.broadcastEoi(0x3b);
    assert.deepEqual(requestedVectors(vcpu), [], 'deasserted: the EOI ends it');
    assert.equal(chip.ioapic.remoteIrr(11), false);
  });

  test('a level line asserted while its entry is masked is delivered once, at the unmask', () => {
    using machine = splitMachine();
    const { chip, vcpu } = machine;
    // GSI 17: IOAPIC pin 17 only (GSIs 0–15 also reach the PIC).
    program(machine, 17, { vector: 0x49, level: true, masked: true });
    assert.ok(chip.serviceIrq(17, true) < 0, 'masked: held, nothing taken');
    assert.deepEqual(requestedVectors(vcpu), []);
    writeEntryLow(chip.ioapic, 17, entryLow({ vector: 0x49, level: true }));
    assert.deepEqual(takeRequests(vcpu), [0x49]);
    assert.equal(chip.ioapic.counters().messagesAccepted, 1, 'exactly one delivery');
  });

  test('a message no local APIC takes (destination 5, or the LAPIC software-disabled) sets no remote IRR: KVM answers 0', () => {
    using machine = splitMachine();
    const { chip, vcpu } = machine;
    writeEntry(chip.ioapic, 19, entryLow({ vector: 0x43, level: true }), entryHigh(5));
    assert.equal(chip.serviceIrq(19, true), 0, 'KVM_SIGNAL_MSI to an APIC ID no vCPU has: 0');
    assert.equal(chip.ioapic.remoteIrr(19), false, 'no taker, so no EOI will come: remote IRR stays clear');
    chip.serviceIrq(19, false);
    setSpuriousVector(vcpu, SVR_VECTOR_MASK);
    program(machine, 19, { vector: 0x43, level: true });
    assert.equal(chip.serviceIrq(19, true), 0, 'software-disabled LAPIC: 0');
    assert.equal(chip.ioapic.remoteIrr(19), false);
    assert.equal(KvmLapicState.read(vcpu).irr(0x43), false);
  });
});

describe("KvmSplitIrqChip: KVM's GSIs 0–23 mirror the redirection table", { skip }, () => {
  test('an unmasked entry is pushed as an MSI route on its pin’s GSI (bit 15 for level); KVM delivers that vector on the GSI', () => {
    using machine = splitMachine();
    const { chip, vm, vcpu } = machine;
    program(machine, 6, { vector: 0x56 });
    program(machine, 7, { vector: 0x57, level: true });
    assert.deepEqual(kvmRouteOn(chip, 6), [msiIrqRoute(6, MSI_TO_APIC_0, 0x56)]);
    assert.deepEqual(kvmRouteOn(chip, 7), [msiIrqRoute(7, MSI_TO_APIC_0, 0x57 | MSI_DATA_LEVEL_ASSERT)]);
    // KVM_IRQ_LINE on GSI 7 goes through KVM's own route: the vector KVM delivers is the mirror's.
    vm.ioctl(KvmIoctl.IRQ_LINE, new Uint32Array([7, 1]), 'KVM_IRQ_LINE');
    const state = KvmLapicState.read(vcpu);
    assert.deepEqual(takeRequests(vcpu), [0x57], 'KVM holds the pushed route');
    assert.equal(state.tmr(0x57), true, 'as a level route');
  });

  test('writes to a masked entry wait; the unmask pushes them in one batch; an unchanged rewrite pushes nothing', () => {
    using machine = splitMachine();
    const { chip } = machine;
    const before = chip.kvmRoutePushes();
    writeEntry(chip.ioapic, 12, entryLow({ vector: 0x5c, level: true, masked: true }), entryHigh(0));
    writeEntry(chip.ioapic, 13, entryLow({ vector: 0x5d, masked: true }), entryHigh(0));
    assert.equal(chip.kvmRoutePushes(), before, 'masked entries: no KVM_SET_GSI_ROUTING');
    assert.deepEqual(kvmRouteOn(chip, 12), [msiIrqRoute(12, MSI_TO_APIC_0, 0)], 'KVM still has the RESET entry');
    writeEntryLow(chip.ioapic, 12, entryLow({ vector: 0x5c, level: true }));
    assert.equal(chip.kvmRoutePushes(), before + 1, 'one push at the unmask');
    assert.deepEqual(kvmRouteOn(chip, 12), [msiIrqRoute(12, MSI_TO_APIC_0, 0x5c | MSI_DATA_LEVEL_ASSERT)]);
    assert.deepEqual(kvmRouteOn(chip, 13), [msiIrqRoute(13, MSI_TO_APIC_0, 0x5d)], 'the masked entry went in the same batch');
    writeEntry(chip.ioapic, 12, entryLow({ vector: 0x5c, level: true }), entryHigh(0));
    writeEntryLow(chip.ioapic, 12, entryLow({ vector: 0x5c, level: true, masked: true }));
    assert.equal(chip.kvmRoutePushes(), before + 1, 'rewriting the same route, or masking, pushes nothing');
  });

  test('a level entry unmasked with its line high is pushed before its delivery, and once', () => {
    using machine = splitMachine();
    const { chip, vcpu } = machine;
    writeEntry(chip.ioapic, 14, entryLow({ vector: 0x5e, level: true, masked: true }), entryHigh(0));
    chip.serviceIrq(14, true);
    const before = chip.kvmRoutePushes();
    // The unmask delivers inside the IOAPIC write, before its entry listener runs: the sink
    // itself finds KVM without the level route and pushes first.
    writeEntryLow(chip.ioapic, 14, entryLow({ vector: 0x5e, level: true }));
    assert.deepEqual(takeRequests(vcpu), [0x5e]);
    assert.equal(chip.kvmRoutePushes(), before + 1);
    assert.deepEqual(kvmRouteOn(chip, 14), [msiIrqRoute(14, MSI_TO_APIC_0, 0x5e | MSI_DATA_LEVEL_ASSERT)]);
  });
});

describe('KvmSplitIrqChip: MSI routes, irqfds and serviceIrq', { skip }, () => {
  test('an OsEvent on an MSI route at GSI 30 is a KVM irqfd: a signal sets the vector in IRR with no service call', async () => {
    using machine = splitMachine();
    const { chip, vcpu } = machine;
    const [address, data] = fixedMsi(0, 0x51);
    chip.routeIrq(msiIrqRoute(30, address, data));
    assert.deepEqual(kvmRouteOn(chip, 30), [msiIrqRoute(30, address, data)], 'KVM has the route');
    using trigger = OsEvent.create();
    assert.equal(chip.registerEdgeIrqEvent(30, new IrqEdgeEvent(trigger), IRQ_SOURCE), undefined, 'KVM services it');
    assert.deepEqual(chip.irqEventTokens(), []);
    trigger.signal();
    await requestArrives(vcpu, 0x51);
    assert.equal(trigger.readCount(), 0n, 'KVM consumed the signal');
    takeRequests(vcpu);
    chip.unregisterEdgeIrqEvent(30, new IrqEdgeEvent(trigger));
    trigger.signal();
    assert.equal(trigger.readCount(), 1n, 'unregistered: KVM no longer reads it');
    assert.deepEqual(requestedVectors(vcpu), []);
  });

  test('a memory event cannot be an irqfd (EBADF) and is not registered; an irqchip route on GSI 30 is EINVAL and changes nothing', () => {
    using machine = splitMachine();
    const { chip } = machine;
    assertIrqChipError(() => chip.registerEdgeIrqEvent(30, new IrqEdgeEvent(Event.create()), IRQ_SOURCE), 'EBADF');
    const routes = chip.routes();
    const kvmRoutes = chip.kvmRoutes();
    const pushes = chip.kvmRoutePushes();
    assertIrqChipError(() => {
      chip.routeIrq({ gsi: 30, source: { kind: 'irqchip', chip: IrqSourceChip.Ioapic, pin: 3 } });
    }, 'EINVAL');
    assertIrqChipError(() => {
      chip.setIrqRoutes([...routes, { gsi: 31, source: { kind: 'irqchip', chip: IrqSourceChip.PicPrimary, pin: 1 } }]);
    }, 'EINVAL');
    assert.deepEqual(chip.routes(), routes);
    assert.deepEqual(chip.kvmRoutes(), kvmRoutes);
    assert.equal(chip.kvmRoutePushes(), pushes);
  });

  test('serviceIrq on an MSI GSI sends the message with KVM_SIGNAL_MSI; a level event on an MSI GSI is serviced by the chip', () => {
    using machine = splitMachine();
    const { chip, vcpu } = machine;
    chip.routeIrq(msiIrqRoute(40, ...fixedMsi(0, 0x61)));
    assert.equal(chip.serviceIrq(40, true), 1, 'one local APIC took it');
    assert.equal(chip.serviceIrq(40, false), -1, 'a deassert sends nothing');
    assert.deepEqual(takeRequests(vcpu), [0x61]);
    assert.equal(chip.signalMsi(...fixedMsi(0, 0x62)), 1, 'signalMsi: the same path without a route');
    assert.deepEqual(takeRequests(vcpu), [0x62]);
    const level = new IrqLevelEvent();
    const index = chip.registerLevelIrqEvent(40, level, IRQ_SOURCE);
    signalAndService(chip, level, index);
    assert.deepEqual(takeRequests(vcpu), [0x61]);
    assert.equal(chip.counters().msisSent, 2);
  });

  test('an MSI route on GSI 20 (a mirror GSI in KVM) stays ours: KVM keeps the mirror there, and the chip sends the message', () => {
    using machine = splitMachine();
    const { chip, vcpu } = machine;
    chip.setIrqRoutes([...chip.routes().filter((route) => route.gsi !== 20), msiIrqRoute(20, ...fixedMsi(0, 0x66))]);
    assert.deepEqual(kvmRouteOn(chip, 20), [msiIrqRoute(20, MSI_TO_APIC_0, 0)], 'KVM’s GSI 20 is still IOAPIC pin 20’s mirror');
    const { event, index } = chipServicedEdgeEvent(chip, 20);
    signalAndService(chip, event, index);
    assert.deepEqual(takeRequests(vcpu), [0x66]);
  });

  test('KVM refuses a resample irqfd on a split irqchip (EINVAL), on an IOAPIC GSI and an MSI GSI alike: level events are the chip’s', () => {
    using machine = splitMachine();
    const irqfds = new KvmIrqfds(machine.vm);
    using trigger = OsEvent.create();
    using resample = OsEvent.create();
    assertIrqChipError(() => {
      irqfds.assign(5, trigger, resample);
    }, 'EINVAL');
    assertIrqChipError(() => {
      irqfds.assign(30, trigger, resample);
    }, 'EINVAL');
    const index = machine.chip.registerLevelIrqEvent(5, IrqLevelEvent.fromEventPair(trigger, resample), IRQ_SOURCE);
    assert.deepEqual(
      machine.chip.irqEventTokens().map((token) => token.index),
      [index],
    );
  });
});

describe('KvmSplitIrqChip: the 8259A reaches vCPU 0 through KVM_INTERRUPT', { skip }, () => {
  test('injectInterrupts acknowledges the PIC only when vCPU 0 is ready, and requests a window while its output is high', () => {
    using machine = splitMachine();
    const { chip } = machine;
    initialisePicPair(chip.pic, { masterVectorBase: 0x20, slaveVectorBase: 0x28 });
    assert.ok(chip.serviceIrq(3, true) > 0, 'IRQ 3 (PIC and IOAPIC pin 3) raised the PIC output');
    const vcpu = new RecordingVcpu(0, false);
    chip.injectInterrupts(vcpu);
    assert.deepEqual(vcpu.interrupts, [], 'not ready: nothing injected');
    assert.equal(vcpu.windowRequested, true);
    assert.equal(chip.pic.registers(PicChip.Master).isr, 0, 'and the PIC was not acknowledged');
    vcpu.ready = true;
    chip.injectInterrupts(vcpu);
    assert.deepEqual(vcpu.interrupts, [0x23]);
    assert.equal(chip.pic.registers(PicChip.Master).isr, 1 << 3, 'INTA moved IRQ 3 to ISR');
    assert.equal(vcpu.windowRequested, false, 'nothing else pending');
    const other = new RecordingVcpu(1, true);
    assertIrqChipError(() => {
      chip.injectInterrupts(other);
    }, 'ENOENT');
  });

  test('KVM takes the vector on a split chip and holds it: until a KVM_RUN has taken it the vCPU is not ready, so the next request waits in the PIC and is acknowledged only when KVM can take it', () => {
    using machine = splitMachine();
    const { chip, vcpu } = machine;
    initialisePicPair(chip.pic, { masterVectorBase: 0x20, slaveVectorBase: 0x28 });
    const regs = vcpu.getRegs();
    regs.set('rflags', RFLAGS_IF);
    vcpu.setRegs(regs);
    // A kick on our own thread makes the next KVM_RUN return at once (immediate_exit), after
    // KVM has filled in ready_for_interrupt_injection (x86.c post_kvm_run_save).
    const runOnce = (): void => {
      addon.kick(addon.threadId(), KICK_SIGNAL);
      assert.equal(vcpu.run(), KvmExit.INTR);
    };
    runOnce();
    assert.equal(vcpu.readyForInterrupt(), true, 'IF set, LINT0 in ExtINT mode after RESET');
    chip.serviceIrq(5, true);
    chip.serviceIrq(5, false);
    chip.injectInterrupts(vcpu);
    assert.equal(chip.pic.registers(PicChip.Master).isr, 1 << 5, 'KVM_INTERRUPT accepted: the PIC was acknowledged');
    // IRQ 1 outranks IRQ 5 in service, so the PIC raises its output again.
    chip.serviceIrq(1, true);
    chip.serviceIrq(1, false);
    // KVM holds the first vector until a KVM_RUN injects it (a second KVM_INTERRUPT would be
    // EEXIST on a split chip): KvmVcpu.interrupt cleared kvm_run's ready flag, so IRQ 1 stays
    // requested in the PIC, not acknowledged.
    assert.equal(vcpu.readyForInterrupt(), false, 'not ready once KVM holds a vector');
    chip.injectInterrupts(vcpu);
    assert.equal(chip.pic.registers(PicChip.Master).isr, 1 << 5, 'IRQ 1 not acknowledged yet');
    assert.equal(chip.pic.registers(PicChip.Master).irr & (1 << 1), 1 << 1, 'IRQ 1 waits in the IRR');
    runOnce();
    assert.equal(vcpu.readyForInterrupt(), false, 'KVM holds an ExtINT: not ready');
    const window = new RecordingVcpu(0, false);
    chip.injectInterrupts(window);
    assert.equal(window.windowRequested, true, 'the kept vector keeps the window requested');
    window.ready = true;
    chip.injectInterrupts(window);
    assert.deepEqual(window.interrupts, [0x21], 'and is handed over when the vCPU is ready');
  });

  test('a rise of the PIC output on another view kicks vCPU 0’s thread: its next KVM_RUN returns at once', () => {
    using machine = splitMachine();
    const { chip, vcpu } = machine;
    initialisePicPair(chip.pic, { masterVectorBase: 0x20, slaveVectorBase: 0x28 });
    const descriptor = chip.createView();
    const view = KvmSplitIrqChip.fromDescriptor(descriptor);
    try {
      // vCPU 0 was added on this thread by the owner, not on the view: the view kicks the
      // published thread, which is this one, and the kick sets its kvm_run.immediate_exit.
      view.serviceIrq(6, true);
      assert.equal(vcpu.run(), KvmExit.INTR, 'kicked');
    } finally {
      descriptor.registry.close();
    }
  });
});

describe('KvmSplitIrqChip: views, MP state, snapshots, misuse', { skip }, () => {
  test('a view services the owner’s events and shares KVM’s table', () => {
    using machine = splitMachine();
    const { chip, vcpu } = machine;
    const descriptor = chip.createView();
    const view = KvmSplitIrqChip.fromDescriptor(descriptor);
    try {
      program(machine, 4, { vector: 0x44 });
      const { event, index } = chipServicedEdgeEvent(chip, 4);
      signalAndService(view, event, index);
      assert.deepEqual(takeRequests(vcpu), [0x44]);
      view.routeIrq(msiIrqRoute(50, ...fixedMsi(0, 0x70)));
      assert.deepEqual(kvmRouteOn(chip, 50), kvmRouteOn(view, 50));
      assert.equal(chip.serviceIrq(50, true), 1);
      assert.deepEqual(takeRequests(vcpu), [0x70]);
    } finally {
      descriptor.registry.close();
    }
  });

  test('a view on another thread pushes KVM’s table, services an event registered after it was described, and kicks vCPU 0’s thread', async () => {
    using machine = splitMachine();
    const { chip, vcpu } = machine;
    initialisePicPair(chip.pic, { masterVectorBase: 0x20, slaveVectorBase: 0x28 });
    const descriptor = chip.createView();
    const pushes = chip.kvmRoutePushes();
    const level = new IrqLevelEvent();
    const eventIndex = chip.registerLevelIrqEvent(21, level, IRQ_SOURCE);
    level.trigger();
    const workerData: SplitChipViewData = { chip: descriptor, pin: 21, vector: 0x75, eventIndex, picIrq: 6 };
    const worker = startTypeScriptWorker(new URL('./split-chip-view.fixture.ts', import.meta.url), { workerData, transferList: [descriptor.registry] });
    const [reply] = (await once(worker, 'message')) as [SplitChipViewReply];
    await worker.terminate();
    assert.equal(reply.pushesSeen, pushes + 1, 'the worker’s write pushed once, before its delivery');
    assert.deepEqual(kvmRouteOn(chip, 21), [msiIrqRoute(21, MSI_TO_APIC_0, 0x75 | MSI_DATA_LEVEL_ASSERT)], 'this thread sees the pushed table');
    assert.equal(KvmLapicState.read(vcpu).tmr(0x75), true);
    assert.deepEqual(takeRequests(vcpu), [0x75], 'the worker delivered the owner’s level event');
    assert.equal(chip.ioapic.remoteIrr(21), true);
    assert.equal(vcpu.run(), KvmExit.INTR, 'the PIC’s rise on the worker kicked this thread, where vCPU 0 was added');
    chip.broadcastEoi(0x75);
    assert.equal(level.getResample().tryRead(), 1n, 'the EOI on this thread resampled the event');
  });

  test('finalizeDevices puts our PIC ports and IOAPIC window on the buses, not the LAPIC window (KVM decodes it), and moves the allocator past pin 23', () => {
    using machine = splitMachine();
    const io = new Bus('io', IO_ADDRESS_LIMIT);
    const mmio = new Bus('mmio', MMIO_ADDRESS_LIMIT);
    const allocator = new IrqAllocator();
    machine.chip.finalizeDevices(allocator, io, mmio);
    const accessor = { vcpuIndex: 0 };
    io.write(PicPort.MasterData, 1, 0xa5, accessor);
    assert.equal(machine.chip.pic.registers(PicChip.Master).imr, 0xa5, 'port 0x21 reaches our PIC');
    mmio.write(IOAPIC_DEFAULT_BASE_ADDRESS + IoapicMmioOffset.RegisterSelect, 4, 0x12, accessor);
    assert.equal(machine.chip.ioapic.mmioRead(IoapicMmioOffset.RegisterSelect, 4), 0x12, 'the IOAPIC window reaches our IOAPIC');
    assert.equal(mmio.read(APIC_BASE_DEFAULT_ADDRESS >>> 0, 4, accessor), 0xffffffff, 'nothing of ours at the LAPIC window');
    assert.equal(allocator.allocate(), IOAPIC_PIN_COUNT);
  });

  test('MP states are KVM’s: vCPU 1 starts uninitialized under the in-kernel LAPIC and can be made runnable', () => {
    using machine = splitMachine(2);
    const { chip, vm } = machine;
    const ap = KvmVcpu.create(vm, 1);
    try {
      assertIrqChipError(() => chip.getMpState(1), 'ENOENT');
      chip.addVcpu(1, ap);
      assert.equal(chip.getMpState(0), 'runnable');
      assert.equal(chip.getMpState(1), 'uninitialized');
      chip.setMpState(1, 'runnable');
      assert.equal(chip.getMpState(1), 'runnable');
      assert.equal(chip.checkCapability('x2apic'), true);
      assert.equal(chip.checkCapability('mp-state-get-set'), true);
    } finally {
      ap.close();
    }
  });

  test('snapshot and restore our part: entries, lines and routes come back and KVM gets the restored mirror; bad bytes change nothing', () => {
    using machine = splitMachine();
    const { chip } = machine;
    program(machine, 8, { vector: 0x48, level: true });
    chip.routeIrq(msiIrqRoute(33, ...fixedMsi(0, 0x71)));
    const saved = chip.snapshot();
    const kvmRoutes = chip.kvmRoutes();
    program(machine, 8, { vector: 0x4f });
    chip.routeIrq(msiIrqRoute(33, ...fixedMsi(0, 0x72)));
    const changed = chip.kvmRoutes();
    const damaged = saved.slice();
    damaged[40] = (damaged[40] ?? 0) ^ 0xff;
    assertIrqChipError(() => {
      chip.restore(damaged);
    }, 'EINVAL');
    assert.deepEqual(chip.kvmRoutes(), changed, 'a damaged snapshot changed nothing');
    chip.restore(saved);
    assert.deepEqual(chip.kvmRoutes(), kvmRoutes);
    assert.equal(chip.ioapic.redirectionEntry(8).low, entryLow({ vector: 0x48, level: true }));
  });

  test('misuse throws and changes nothing: a vCPU created before the chip, a vCPU not KVM’s, bad ids and GSIs', () => {
    const vm = KvmVm.create({ memoryBytes: MEMORY_BYTES });
    const early = KvmVcpu.create(vm, 0);
    try {
      assert.throws(
        () => KvmSplitIrqChip.create(vm, { vcpuCount: 1 }),
        (error: unknown) => error instanceof Error && 'code' in error && error.code === 'EEXIST' && /before any vCPU/.test(error.message),
      );
    } finally {
      early.close();
      vm.close();
    }
    using machine = splitMachine();
    const { chip } = machine;
    assertIrqChipError(() => KvmSplitIrqChip.create(machine.vm, { vcpuCount: 1 }), 'EEXIST');
    assertIrqChipError(() => {
      chip.addVcpu(0, new RecordingVcpu(0, true));
    }, 'EINVAL');
    assertIrqChipError(() => {
      chip.addVcpu(1, machine.vcpu);
    }, 'ENOENT');
    const routes = chip.routes();
    const pushes = chip.kvmRoutePushes();
    for (const gsi of [-1, 4096, 1.5]) {
      assertIrqChipError(() => chip.registerEdgeIrqEvent(gsi, new IrqEdgeEvent(), IRQ_SOURCE), 'EINVAL');
      assertIrqChipError(() => chip.registerLevelIrqEvent(gsi, new IrqLevelEvent(), IRQ_SOURCE), 'EINVAL');
      assertIrqChipError(() => chip.serviceIrq(gsi, true), 'EINVAL');
      assertIrqChipError(() => {
        chip.routeIrq(ioapicIrqRoute(gsi));
      }, 'EINVAL');
    }
    assertIrqChipError(() => {
      chip.routeIrq(picIrqRoute(IrqSourceChip.PicPrimary, 4096));
    }, 'EINVAL');
    assert.deepEqual(chip.irqEventTokens(), []);
    assert.deepEqual(chip.routes(), routes);
    assert.equal(chip.kvmRoutePushes(), pushes);
    assert.equal(chip.getMpState(0), 'runnable', 'vCPU 0 is still the one added');
    assert.equal(chip.pic.readPort(PicPort.MasterData, 1), 0, 'the PIC untouched');
  });
});
