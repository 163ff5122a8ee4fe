import assert from 'node:assert/strict';
import { describe, test } from 'node:test';
import { assertIrqChipError } from '../testing/irq-chip-error.ts';
import type { Vcpu } from '../chip/vcpu.ts';
import { Event } from '../event/event.ts';
import { IrqEdgeEvent, IrqLevelEvent } from '../event/irq-event.ts';
import { IrqSourceChip, defaultIrqRoutes, ioapicIrqRoute, msiIrqRoute, picIrqRoute } from '../routing/irq-route.ts';
import { KvmKernelIrqChip } from './kvm-kernel-irq-chip.ts';
import { IRQ_SOURCE, kernelChipMachine, kvmSkipReason, waitForLog, withPicGuest } from './kvm-test-support.ts';
import { KvmVcpu } from './kvm-vcpu.ts';
import { KvmVm } from './kvm-vm.ts';
import { OsEvent } from './os-event.ts';
import { GUEST_IRQ, GuestLog } from './pic-test-guest.ts';

const skip = kvmSkipReason('KvmKernelIrqChip on real KVM');

/** A vCPU that is not KVM's: the kernel chip cannot reach its MP state. */
const notKvmVcpu: Vcpu = {
  id: 1,
  readyForInterrupt: () => false,
  interrupt: () => undefined,
  injectNmi: () => undefined,
  setInterruptWindowRequested: () => undefined,
  applyInit: () => undefined,
  applySipi: () => undefined,
};

/** Interrupts per delivery test: enough to catch a lost or doubled one, quick at ~40 k/s. */
const ROUNDS = 300;

describe('KvmKernelIrqChip delivers to a real-mode guest on KVM', { skip }, () => {
  test('edge: an OsEvent irqfd on GSI 4 signalled N times, one per handler run, reaches the handler exactly N times in order', async () => {
    const machine = kernelChipMachine({ levelTriggered: false });
    using trigger = OsEvent.create();
    machine.chip.registerEdgeIrqEvent(GUEST_IRQ, new IrqEdgeEvent(trigger), IRQ_SOURCE);
    await withPicGuest(machine, {}, async () => {
      for (let round = 1; round <= ROUNDS; round++) {
        trigger.signal();
        await waitForLog(machine.log, GuestLog.Interrupts, round);
        assert.equal(Atomics.load(machine.log, GuestLog.Interrupts), round, 'one handler run per signal');
      }
      assert.equal(Atomics.load(machine.log, GuestLog.LastValue), ROUNDS);
      assert.equal(Atomics.load(machine.log, GuestLog.OutOfOrder), 0);
    });
  });

  test('level: a resample irqfd on GSI 4 (ELCR bit 4) signals the resamplefd at each EOI; re-triggering while work remains gives exactly N runs', async () => {
    const machine = kernelChipMachine({ levelTriggered: true });
    using trigger = OsEvent.create();
    using resample = OsEvent.create();
    const level = IrqLevelEvent.fromEventPair(trigger, resample);
    machine.chip.registerLevelIrqEvent(GUEST_IRQ, level, IRQ_SOURCE);
    await withPicGuest(machine, { resample: resample.descriptor() }, async () => {
      let resamples = 0;
      level.trigger();
      while (resamples < ROUNDS) {
        assert.equal(await resample.waitAsync(20_000), 'signaled', `resample ${resamples + 1} arrived`);
        const count = resample.tryRead();
        assert.equal(count, 1n, 'one resample per EOI');
        resamples += 1;
        // The handler reported before its EOI, so its run is logged by the time the resample comes.
        assert.equal(Atomics.load(machine.log, GuestLog.Interrupts), resamples);
        if (resamples < ROUNDS) level.trigger();
      }
      assert.equal(Atomics.load(machine.log, GuestLog.LastValue), ROUNDS);
      assert.equal(Atomics.load(machine.log, GuestLog.OutOfOrder), 0);
      assert.equal(Atomics.load(machine.log, GuestLog.ResampledBeforeEoi), 0, 'no resample before the EOI');
    });
    assert.equal(Atomics.load(machine.log, GuestLog.Interrupts), ROUNDS, 'no run after the device stopped asserting');
  });

  test('serviceIrq(4, true/false) goes through KVM_IRQ_LINE_STATUS: each assert is delivered (status > 0) and runs the handler once', async () => {
    const machine = kernelChipMachine({ levelTriggered: false });
    await withPicGuest(machine, {}, async () => {
      for (let round = 1; round <= 50; round++) {
        assert.ok(machine.chip.serviceIrq(GUEST_IRQ, true) > 0, `assert ${round} delivered`);
        await waitForLog(machine.log, GuestLog.Interrupts, round);
        machine.chip.serviceIrq(GUEST_IRQ, false);
      }
      assert.equal(Atomics.load(machine.log, GuestLog.Interrupts), 50);
      assert.equal(Atomics.load(machine.log, GuestLog.OutOfOrder), 0);
      assert.ok(machine.chip.serviceIrq(100, true) < 0, 'a GSI without routes reaches no controller: negative status');
    });
  });

  test('routeIrq pushes the table: GSI 10 routed to master pin 4 interrupts the guest through IRQ4', async () => {
    const machine = kernelChipMachine({ levelTriggered: false });
    await withPicGuest(machine, {}, async () => {
      machine.chip.routeIrq(picIrqRoute(IrqSourceChip.PicPrimary, 12));
      machine.chip.routeIrq({ gsi: 10, source: { kind: 'irqchip', chip: IrqSourceChip.PicPrimary, pin: GUEST_IRQ } });
      assert.deepEqual(
        machine.chip.routes().filter((route) => route.gsi === 10),
        [{ gsi: 10, source: { kind: 'irqchip', chip: IrqSourceChip.PicPrimary, pin: GUEST_IRQ } }],
        'routeIrq replaced both default routes of GSI 10',
      );
      assert.ok(machine.chip.serviceIrq(10, true) > 0);
      await waitForLog(machine.log, GuestLog.Interrupts, 1);
      machine.chip.serviceIrq(10, false);
      assert.equal(Atomics.load(machine.log, GuestLog.LastValue), 1);
    });
  });
});

describe('KvmKernelIrqChip: configuration and refusals', { skip }, () => {
  test('a memory event is refused with EBADF (KVM needs a file descriptor) and nothing is registered', () => {
    const { vm, chip } = kernelChipMachine({ levelTriggered: false });
    try {
      assertIrqChipError(() => {
        chip.registerEdgeIrqEvent(GUEST_IRQ, new IrqEdgeEvent(), IRQ_SOURCE);
      }, 'EBADF');
      using trigger = OsEvent.create();
      assertIrqChipError(() => {
        chip.registerLevelIrqEvent(GUEST_IRQ, IrqLevelEvent.fromEventPair(trigger, Event.create()), IRQ_SOURCE);
      }, 'EBADF');
      // Had the trigger been assigned, a second assignment of the same eventfd would be EBUSY.
      chip.registerEdgeIrqEvent(GUEST_IRQ, new IrqEdgeEvent(trigger), IRQ_SOURCE);
    } finally {
      vm.close();
    }
  });

  test('registering one eventfd twice on a GSI is EBUSY; unregistering (also through a clone) frees it for another registration', () => {
    const { vm, chip } = kernelChipMachine({ levelTriggered: false });
    try {
      using trigger = OsEvent.create();
      const edge = new IrqEdgeEvent(trigger);
      chip.registerEdgeIrqEvent(GUEST_IRQ, edge, IRQ_SOURCE);
      assertIrqChipError(() => {
        chip.registerEdgeIrqEvent(GUEST_IRQ, edge, IRQ_SOURCE);
      }, 'EBUSY');
      chip.unregisterEdgeIrqEvent(GUEST_IRQ, edge);
      chip.registerEdgeIrqEvent(GUEST_IRQ, edge, IRQ_SOURCE);
      using clone = trigger.tryClone();
      chip.unregisterEdgeIrqEvent(GUEST_IRQ, new IrqEdgeEvent(clone));
      chip.registerEdgeIrqEvent(GUEST_IRQ, edge, IRQ_SOURCE);
      chip.unregisterEdgeIrqEvent(GUEST_IRQ, new IrqEdgeEvent());
      assertIrqChipError(() => {
        chip.registerEdgeIrqEvent(4096, edge, IRQ_SOURCE);
      }, 'EINVAL');
    } finally {
      vm.close();
    }
  });

  test('routes start as KVM default table; a table KVM refuses is EINVAL and changes nothing', () => {
    const { vm, chip } = kernelChipMachine({ levelTriggered: false });
    try {
      assert.deepEqual(chip.routes(), defaultIrqRoutes(24));
      const before = chip.routes();
      // Two routes of one GSI to the same controller, and an MSI beside a pin: KVM refuses both.
      assertIrqChipError(() => {
        chip.setIrqRoutes([picIrqRoute(IrqSourceChip.PicPrimary, 5), { gsi: 5, source: { kind: 'irqchip', chip: IrqSourceChip.PicPrimary, pin: 6 } }]);
      }, 'EINVAL');
      assertIrqChipError(() => {
        chip.setIrqRoutes([ioapicIrqRoute(7), msiIrqRoute(7, 0xfee00000n, 0x31)]);
      }, 'EINVAL');
      assertIrqChipError(() => {
        chip.routeIrq(ioapicIrqRoute(24));
      }, 'EINVAL');
      assert.deepEqual(chip.routes(), before);
      chip.setIrqRoutes([ioapicIrqRoute(3), msiIrqRoute(40, 0xfee00000n, 0x41)]);
      assert.deepEqual(chip.routes(), [ioapicIrqRoute(3), msiIrqRoute(40, 0xfee00000n, 0x41)]);
      assert.deepEqual(KvmKernelIrqChip.fromDescriptor(structuredClone(chip.descriptor())).routes(), chip.routes(), 'a view sees the same routes');
    } finally {
      vm.close();
    }
  });

  test('MP state through KVM: vCPU 1 starts uninitialized under the in-kernel irqchip; set and get round-trip', () => {
    const { vm, chip } = kernelChipMachine({ levelTriggered: false, vcpuCount: 2 });
    const vcpus = [KvmVcpu.create(vm, 0), KvmVcpu.create(vm, 1)];
    try {
      vcpus.forEach((vcpu) => {
        chip.addVcpu(vcpu.id, vcpu);
      });
      assert.equal(chip.getMpState(0), 'runnable');
      assert.equal(chip.getMpState(1), 'uninitialized');
      chip.setMpState(1, 'runnable');
      assert.equal(chip.getMpState(1), 'runnable');
      assert.equal(chip.tryClone().getMpState(1), 'runnable', 'a clone shares the added vCPUs');
      assertIrqChipError(() => chip.getMpState(2), 'ENOENT');
      assertIrqChipError(() => KvmKernelIrqChip.fromDescriptor(chip.descriptor()).getMpState(0), 'ENOENT');
      assertIrqChipError(() => {
        chip.addVcpu(1, notKvmVcpu);
      }, 'EINVAL');
      assertIrqChipError(() => {
        chip.addVcpu(0, vcpus[1] as KvmVcpu);
      }, 'EINVAL');
    } finally {
      for (const vcpu of vcpus) vcpu.close();
      vm.close();
    }
  });

  test('the per-vCPU calls of a userspace chip return at once; capabilities follow KVM', async () => {
    const { vm, chip } = kernelChipMachine({ levelTriggered: false });
    const vcpu = KvmVcpu.create(vm, 0);
    try {
      assert.deepEqual(chip.irqEventTokens(), []);
      assert.equal(chip.irqDelayedEventToken(), undefined);
      assert.equal(chip.waitUntilRunnable(vcpu), 'runnable');
      assert.equal(await chip.waitUntilRunnableAsync(vcpu), 'runnable');
      chip.injectInterrupts(vcpu);
      chip.halted(0);
      chip.kickHaltedVcpus();
      chip.processDelayedIrqEvents();
      assert.equal(chip.checkCapability('x2apic'), true);
      assert.equal(chip.checkCapability('mp-state-get-set'), true);
      assert.equal(typeof chip.checkCapability('tsc-deadline-timer'), 'boolean');
    } finally {
      vcpu.close();
      vm.close();
    }
  });

  test('a second irqchip on one VM is refused (EEXIST), and so is one after a vCPU exists (EINVAL)', () => {
    const { vm } = kernelChipMachine({ levelTriggered: false });
    const late = KvmVm.create({ memoryBytes: 4096 });
    const vcpu = KvmVcpu.create(late, 0);
    try {
      assertIrqChipError(() => KvmKernelIrqChip.create(vm, { vcpuCount: 1 }), 'EEXIST');
      assertIrqChipError(() => KvmKernelIrqChip.create(late, { vcpuCount: 1 }), 'EINVAL');
    } finally {
      vcpu.close();
      late.close();
      vm.close();
    }
  });
});
