/**
 * KVM_SIGNAL_MSI on KvmKernelIrqChip, and the irqfd and MSI-route facts of KVM the device layer
 * relies on, observed in the in-kernel LAPIC's IRR of a vCPU that never runs
 * (kvm-lapic-test-support.ts).
 */

import assert from 'node:assert/strict';
import { describe, test } from 'node:test';
import { msiTo } from '../device/device-test-support.ts';
import { IrqEdgeEvent } from '../event/irq-event.ts';
import { msiIrqRoute } from '../routing/irq-route.ts';
import { assertIrqChipError } from '../testing/irq-chip-error.ts';
import { XAPIC_BROADCAST } from '../x86/interrupt-message.ts';
import { APIC_BASE_DEFAULT_ADDRESS, SVR_APIC_ENABLED, SVR_VECTOR_MASK } from '../x86/lapic/apic-registers.ts';
import { KvmKernelIrqChip } from './kvm-kernel-irq-chip.ts';
import { KvmMsiSender } from './kvm-msi-sender.ts';
import { fixedMsi, lapicMachine, requestArrives, requestedVectors, setSpuriousVector, takeRequests } from './kvm-lapic-test-support.ts';
import { IRQ_SOURCE, kvmSkipReason } from './kvm-test-support.ts';
import { OsEvent } from './os-event.ts';

const skip = kvmSkipReason('KVM_SIGNAL_MSI and irqfd facts on real KVM');

/** A GSI past the IOAPIC's pins, for MSI routes made by hand. */
const MSI_GSI = 40;
/** An APIC ID no vCPU of the one-vCPU machines has. */
const ABSENT_APIC_ID = 5;

describe('KvmKernelIrqChip.signalMsi: KVM_SIGNAL_MSI', { skip }, () => {
  test('an MSI the LAPIC accepts sets its IRR bit and returns 1; the same vector again still returns 1 (KVM reports no coalescing for a fixed MSI)', () => {
    using machine = lapicMachine();
    assert.equal(machine.chip.signalMsi(...fixedMsi(0, 0x41)), 1);
    assert.equal(machine.chip.signalMsi(...fixedMsi(0, 0x41)), 1, 'vector 0x41 already in IRR: accepted again (__apic_accept_irq)');
    assert.equal(machine.chip.signalMsi(...fixedMsi(0, 0x42)), 1);
    assert.deepEqual(takeRequests(machine.vcpu), [0x41, 0x42]);
  });

  test('returns 0 when no LAPIC accepts: a destination with no APIC, or a software-disabled APIC (SVR bit 8 clear)', () => {
    using machine = lapicMachine({ softwareEnabled: false });
    assert.equal(machine.chip.signalMsi(...fixedMsi(0, 0x43)), 0, 'software-disabled APIC');
    setSpuriousVector(machine.vcpu, SVR_APIC_ENABLED | SVR_VECTOR_MASK);
    assert.equal(machine.chip.signalMsi(...fixedMsi(ABSENT_APIC_ID, 0x44)), 0, 'no APIC with that ID');
    assert.deepEqual(requestedVectors(machine.vcpu), []);
    assert.equal(machine.chip.signalMsi(...fixedMsi(0, 0x45)), 1, 'the same LAPIC, enabled, accepts');
  });

  test('returns -1 when the message reaches no present APIC: KVM answers -1, which the ioctl reports as EPERM, and signalMsi does not throw', () => {
    using machine = lapicMachine();
    // IA32_APIC_BASE without its enable bit (11): the APIC is hardware-disabled, absent to delivery.
    const sregs = machine.vcpu.getSregs();
    sregs.set('apicBase', BigInt(APIC_BASE_DEFAULT_ADDRESS >>> 0));
    machine.vcpu.setSregs(sregs);
    // A broadcast leaves KVM's fast path (kvm_irq_delivery_to_apic_fast); the slow path starts from -1.
    assert.equal(machine.chip.signalMsi(...fixedMsi(XAPIC_BROADCAST, 0x46)), -1);
    assert.equal(machine.chip.signalMsi(...fixedMsi(0, 0x46)), 0, 'the fast path reports the same APIC as 0');
  });

  test('KVM differs from the SDM: it accepts vectors 0-15 into IRR (SDM §11.5.3: an illegal vector sets ESR bit 6 and is not accepted; our LocalApic follows the SDM, decision 14)', () => {
    using machine = lapicMachine();
    assert.equal(machine.chip.signalMsi(...fixedMsi(0, 5)), 1);
    assert.deepEqual(takeRequests(machine.vcpu), [5]);
  });

  test('a caller\'s bad address or data is refused with EINVAL and nothing is sent', () => {
    using machine = lapicMachine();
    const [address, data] = fixedMsi(0, 0x47);
    for (const badAddress of [-1n, 1n << 64n, 0xfee00000 as unknown as bigint, undefined as unknown as bigint]) {
      assertIrqChipError(() => machine.chip.signalMsi(badAddress, data), 'EINVAL');
    }
    for (const badData of [-1, 2 ** 32, 71.5, Number.NaN, '71' as unknown as number, 0x47n as unknown as number]) {
      assertIrqChipError(() => machine.chip.signalMsi(address, badData), 'EINVAL');
    }
    assert.deepEqual(requestedVectors(machine.vcpu), []);
  });

  test('a view of the chip (fromDescriptor, as a worker builds it) sends through the same VM with its own scratch struct', () => {
    using machine = lapicMachine();
    const view = KvmKernelIrqChip.fromDescriptor(structuredClone(machine.chip.descriptor()));
    assert.equal(view.signalMsi(...fixedMsi(0, 0x48)), 1);
    assert.deepEqual(takeRequests(machine.vcpu), [0x48]);
  });
});

describe('KvmMsiSender.sendHalves: the same message with the address as two u32 halves', { skip }, () => {
  test('it delivers as send does, with KVM\'s answers (1 accepted, 0 no APIC with that ID); a bad half or data is EINVAL and nothing is sent', () => {
    using machine = lapicMachine();
    const sender = new KvmMsiSender(machine.vm);
    const { addressLow, addressHigh, data } = msiTo(0, 0x49);
    assert.equal(sender.sendHalves(addressLow, addressHigh, data), 1);
    assert.deepEqual(takeRequests(machine.vcpu), [0x49]);
    const absent = msiTo(ABSENT_APIC_ID, 0x4a);
    assert.equal(sender.sendHalves(absent.addressLow, absent.addressHigh, absent.data), 0);
    for (const bad of [-1, 2 ** 32, 0.5, Number.NaN, 0n as unknown as number]) {
      assertIrqChipError(() => sender.sendHalves(bad, addressHigh, data), 'EINVAL');
      assertIrqChipError(() => sender.sendHalves(addressLow, bad, data), 'EINVAL');
      assertIrqChipError(() => sender.sendHalves(addressLow, addressHigh, bad), 'EINVAL');
    }
    assert.deepEqual(requestedVectors(machine.vcpu), []);
  });
});

describe('KVM facts the device layer relies on', { skip }, () => {
  test('serviceIrq on an MSI-routed GSI: an assert sends the message (status > 0); a deassert sends nothing (status -1: kvm_set_msi ignores level 0)', () => {
    using machine = lapicMachine();
    const [address, data] = fixedMsi(0, 0x50);
    machine.chip.setIrqRoutes([...machine.chip.routes(), msiIrqRoute(MSI_GSI, address, data)]);
    assert.ok(machine.chip.serviceIrq(MSI_GSI, true) > 0);
    assert.deepEqual(takeRequests(machine.vcpu), [0x50]);
    assert.equal(machine.chip.serviceIrq(MSI_GSI, false), -1);
    assert.deepEqual(takeRequests(machine.vcpu), []);
  });

  test('an irqfd assigned on an eventfd holding a count injects once but leaves the count; the deassign reads it (kvm_irqfd_assign, irqfd_shutdown)', async () => {
    using machine = lapicMachine();
    machine.chip.setIrqRoutes([...machine.chip.routes(), msiIrqRoute(MSI_GSI, ...fixedMsi(0, 0x51))]);
    using trigger = OsEvent.create();
    const edge = new IrqEdgeEvent(trigger);
    trigger.signal(2);
    machine.chip.registerEdgeIrqEvent(MSI_GSI, edge, IRQ_SOURCE);
    await requestArrives(machine.vcpu, 0x51);
    assert.equal(trigger.readCount(), 2n, 'the assign polled the eventfd and scheduled one injection, reading nothing');
    machine.chip.unregisterEdgeIrqEvent(MSI_GSI, edge);
    assert.equal(trigger.readCount(), 0n, 'the deassign drained it');
    assert.deepEqual(takeRequests(machine.vcpu), [0x51]);
  });

  test('a signal on an armed irqfd is consumed in the write itself (irqfd_wakeup reads the count); an assign on an empty eventfd injects nothing', async () => {
    using machine = lapicMachine();
    machine.chip.setIrqRoutes([...machine.chip.routes(), msiIrqRoute(MSI_GSI, ...fixedMsi(0, 0x52))]);
    using trigger = OsEvent.create();
    const edge = new IrqEdgeEvent(trigger);
    machine.chip.registerEdgeIrqEvent(MSI_GSI, edge, IRQ_SOURCE);
    // The deassign waits for a pending injection (irqfd_shutdown flushes it): after it, IRR is final.
    machine.chip.unregisterEdgeIrqEvent(MSI_GSI, edge);
    assert.deepEqual(takeRequests(machine.vcpu), [], 'nothing to inject at an assign on an empty eventfd');
    machine.chip.registerEdgeIrqEvent(MSI_GSI, edge, IRQ_SOURCE);
    trigger.signal(3);
    assert.equal(trigger.readCount(), 0n);
    await requestArrives(machine.vcpu, 0x52);
    machine.chip.unregisterEdgeIrqEvent(MSI_GSI, edge);
    assert.deepEqual(takeRequests(machine.vcpu), [0x52]);
  });
});
