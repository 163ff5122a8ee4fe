/**
 * INTx end to end on the userspace chip: the function's pin (VfioIrqs) → the host's automask and
 * trigger eventfd → the level event on GSI 10 → IOAPIC → the guest (SimVcpu) → its EOI → the
 * chip's resample → the host's unmask eventfd (serviced by the owner loop) → re-delivery while the
 * device still asserts.
 */
import assert from 'node:assert/strict';
import { describe, test } from 'node:test';
import type { SimInterruptHandler } from '../chip/sim-vcpu.ts';
import { VFIO_PCI_INTX_IRQ_INDEX as INTX, VFIO_PCI_MSIX_IRQ_INDEX as MSIX } from './vfio-uapi.ts';
import { msiConfig } from '../device/chip-interrupt-group.ts';
import { deliverAll, INTX_VECTOR, makePassthroughRig, PASSTHROUGH_FUNCTION, serviceVmm, type PassthroughRig } from './vfio-pci-test-support.ts';
import { VfioIrqs } from './vfio-irqs.ts';
import { VfioPciInterrupts } from './vfio-pci-interrupts.ts';
import { makeMachine } from '../chip/chip-test-support.ts';

/**
 * A device with a work queue and the guest's driver for it: each interrupt the driver takes
 * services one unit; the device drops its line when the queue is empty.
 */
class WorkQueueDevice {
  queued = 0;
  serviced = 0;
  rig: PassthroughRig | undefined;

  /** The guest's handler: services one unit for the INTx vector, then EOIs. */
  readonly handler: SimInterruptHandler = (vector, guest) => {
    if (vector === INTX_VECTOR) this.serviceOne();
    guest.eoiLocalApic();
  };

  add(units: number): void {
    this.queued += units;
    if (units > 0) this.kernel().raiseIntx();
  }

  private serviceOne(): void {
    assert.ok(this.queued > 0, 'an INTx delivered with no work queued (spurious)');
    this.queued--;
    this.serviced++;
    if (this.queued === 0) this.kernel().lowerIntx();
  }

  private kernel(): VfioIrqs {
    assert.ok(this.rig);
    return this.rig.kernel;
  }
}

function intxRig(): { rig: PassthroughRig; device: WorkQueueDevice } {
  const device = new WorkQueueDevice();
  const rig = makePassthroughRig({ handler: device.handler });
  device.rig = rig;
  return { rig, device };
}

describe('VfioPciInterrupts: INTx through a level event', () => {
  test('wiring: two SET_IRQS calls, TRIGGER on the level event\'s trigger and UNMASK on its resample', () => {
    const { rig } = intxRig();
    assert.deepEqual(rig.device.calls, ['intx trigger eventfd @0 [#]', 'intx unmask eventfd @0 [#]']);
    const level = rig.vfio.intxLevelEvent();
    const state = rig.kernel.state();
    assert.equal(state.activeIndex, INTX);
    assert.ok(level);
    assert.equal(state.intxTrigger?.sameCounter(level.getTrigger()), true);
    assert.equal(state.intxUnmaskEvent?.sameCounter(level.getResample()), true);
    assert.deepEqual(rig.vfio.serviceEvents(), [level.getResample()]);
  });

  test('one cycle: assert → automasked → delivered → the EOI resamples → the owner loop unmasks', () => {
    const { rig, device } = intxRig();
    const vcpu = rig.machine.vcpus[0];
    assert.ok(vcpu);
    device.add(1);
    assert.equal(rig.kernel.state().intxMasked, true, 'the host masked INTx as it signalled the trigger');
    serviceVmm(rig);
    assert.equal(vcpu.step(rig.machine.chip), INTX_VECTOR, 'the guest takes the interrupt and EOIs');
    assert.equal(rig.machine.chip.counters().resamplesSignalled, 1);
    assert.equal(rig.kernel.state().intxMasked, true, 'still masked until the unmask eventfd is serviced');
    rig.vfio.service();
    assert.equal(rig.kernel.state().intxMasked, false, 'the resample unmasked INTx, no trap and no SET_IRQS');
    assert.equal(rig.vfio.setIrqsCalls(), 2);
    device.add(1);
    assert.deepEqual(deliverAll(rig), [INTX_VECTOR], 'the next assert is delivered again');
  });

  test('the device still asserts at the EOI: the unmask re-delivers instead, once per unit of work', () => {
    const { rig, device } = intxRig();
    device.add(3);
    assert.deepEqual(deliverAll(rig), [INTX_VECTOR, INTX_VECTOR, INTX_VECTOR]);
    assert.deepEqual([device.serviced, device.queued], [3, 0]);
    assert.equal(rig.kernel.state().intxMasked, false);
  });

  test('work arriving while the line is masked (before the EOI) is delivered after the EOI', () => {
    const { rig, device } = intxRig();
    const vcpu = rig.machine.vcpus[0];
    assert.ok(vcpu);
    device.add(1);
    serviceVmm(rig);
    // The device gets more work while the guest has not taken the first interrupt yet.
    device.add(1);
    assert.deepEqual(deliverAll(rig), [INTX_VECTOR, INTX_VECTOR]);
    assert.equal(device.serviced, 2);
  });

  test('no interrupt lost over 600 cycles of varying work: every unit delivered once, no SET_IRQS after wiring', () => {
    const { rig, device } = intxRig();
    let offered = 0;
    let deliveries = 0;
    for (let cycle = 0; cycle < 600; cycle++) {
      const units = [1, 2, 0, 3, 1][cycle % 5] ?? 0;
      offered += units;
      device.add(units);
      // Sometimes more work arrives after the chip took the trigger, before the guest ran.
      if (cycle % 7 === 0) {
        serviceVmm(rig);
        device.add(1);
        offered++;
      }
      deliveries += deliverAll(rig).filter((vector) => vector === INTX_VECTOR).length;
      assert.equal(device.queued, 0, `cycle ${cycle}: work left undelivered`);
    }
    assert.equal(device.serviced, offered);
    assert.equal(deliveries, offered, 'one delivery per unit of work');
    assert.equal(rig.vfio.setIrqsCalls(), 2, 'the EOI path needs no SET_IRQS');
    assert.equal(rig.kernel.counters().undeliverableRaises, 0);
  });

  test('an unmask not yet serviced is honoured before the next assert (VfioIrqs services it on raise)', () => {
    const { rig, device } = intxRig();
    const vcpu = rig.machine.vcpus[0];
    assert.ok(vcpu);
    device.add(1);
    serviceVmm(rig);
    vcpu.step(rig.machine.chip); // EOI: resample signalled, nobody serviced it
    device.add(1);
    serviceSignalledEventsOnly(rig);
    assert.equal(vcpu.step(rig.machine.chip), INTX_VECTOR);
  });

  test('the owner loop wakes on the resample with waitAsync (which leaves the count to the device) and unmasks', async () => {
    const { rig, device } = intxRig();
    const vcpu = rig.machine.vcpus[0];
    const [resample] = rig.vfio.serviceEvents();
    assert.ok(vcpu && resample);
    device.add(1);
    serviceVmm(rig);
    vcpu.step(rig.machine.chip);
    assert.equal(await resample.waitAsync(1000), 'signaled');
    assert.equal(resample.readCount(), 1n, 'waiting did not consume the unmask');
    rig.vfio.service();
    assert.equal(resample.readCount(), 0n);
    assert.equal(rig.kernel.state().intxMasked, false);
  });

  test('a function whose pin has no host IRQ: INTx refused once (ENODEV), not asked again; MSI-X still enables', () => {
    const machine = makeMachine();
    const kernel = new VfioIrqs({ ...PASSTHROUGH_FUNCTION, intxHostIrq: false });
    const vfio = new VfioPciInterrupts({ device: kernel, chip: machine.chip, gsis: machine.allocator, intxGsi: 10 });
    assert.deepEqual(vfio.counters().setIrqsFailed, 1);
    assert.equal(vfio.activeHostIndex(), null);
    vfio.batch(() => undefined);
    assert.equal(vfio.setIrqsCalls(), 1, 'not retried');
    vfio.msix?.enable(Array.from({ length: 16 }, () => msiConfig(0xfee00000, 0, 0x30)));
    assert.equal(vfio.activeHostIndex(), MSIX);
    assert.equal(vfio.setIrqsCalls(), 2);
  });

  test('an INTx GSI for a function without a pin is a caller error: EINVAL', () => {
    const machine = makeMachine();
    const kernel = new VfioIrqs({ ...PASSTHROUGH_FUNCTION, intx: false });
    assert.throws(() => new VfioPciInterrupts({ device: kernel, chip: machine.chip, gsis: machine.allocator, intxGsi: 10 }), /EINVAL/);
  });

  test('dispose disables INTx on the host and unregisters the level event', () => {
    const { rig } = intxRig();
    const tokens = rig.machine.chip.irqEventTokens().length;
    rig.vfio.dispose();
    rig.vfio.dispose();
    assert.equal(rig.kernel.state().activeIndex, null);
    assert.equal(rig.machine.chip.irqEventTokens().length, tokens - 1);
    assert.deepEqual(rig.device.since(2), ['intx trigger none @0+0']);
  });
});

/** The chip's half of the loop only (no `vfio.service()`), to show the raise path services the unmask itself. */
function serviceSignalledEventsOnly(rig: PassthroughRig): void {
  for (const token of rig.machine.chip.irqEventTokens()) if (token.event.readCount() !== 0n) rig.machine.chip.serviceIrqEvent(token.index);
}
