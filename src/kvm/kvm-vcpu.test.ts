import assert from 'node:assert/strict';
import { spawnSync } from 'node:child_process';
import { fileURLToPath } from 'node:url';
import { describe, test } from 'node:test';
import { ErrorCode, IrqChipError } from '../base/errors.ts';
import { IrqEdgeEvent } from '../event/irq-event.ts';
import { KvmExit } from './kvm-abi.ts';
import { IRQ_SOURCE, kernelChipMachine, kvmSkipReason, runPicGuest, waitForLog, withPicGuest } from './kvm-test-support.ts';
import { KvmVcpu } from './kvm-vcpu.ts';
import { KvmVm } from './kvm-vm.ts';
import { OsEvent } from './os-event.ts';
import { GUEST_IRQ, GuestLog, enterRealModeGuest } from './pic-test-guest.ts';
import { addon } from './addon.ts';
import { KICK_SIGNAL } from './linux.ts';
import { allocateVcpuControl } from './kvm-vcpu.ts';
import { kickVcpuThread } from './vcpu-kick.ts';

/** `jmp $`: a guest that never exits by itself. */
const SPIN_FOREVER = [0xeb, 0xfe];
/** IA32_SYSENTER_CS (SDM vol. 4, Table 2-2): an MSR every KVM keeps; 0x40001234 is in no range KVM knows. */
const MSR_IA32_SYSENTER_CS = 0x174;
const MSR_UNKNOWN = 0x40001234;

const skip = kvmSkipReason('KvmVcpu on real KVM');

describe('KvmVcpu registers and start-up', { skip }, () => {
  test('applySipi starts real mode at vector << 12; IN and OUT exits carry their port, size and value', () => {
    // No irqchip: HLT then exits to userspace, so this vCPU can run on the test's own thread.
    const vm = KvmVm.create({ memoryBytes: 0x10000 });
    const vcpu = KvmVcpu.create(vm, 0);
    try {
      // in al, 0x12; out 0x10, al; hlt
      vm.memory.set([0xe4, 0x12, 0xe6, 0x10, 0xf4], 0x2000);
      vcpu.applySipi({ vector: 2, csSelector: 0x200, csBase: 0x2000, ip: 0 });
      assert.equal(vcpu.run(), KvmExit.IO);
      assert.deepEqual([vcpu.ioIsOut(), vcpu.ioPort(), vcpu.ioSize()], [false, 0x12, 1]);
      vcpu.setIoValue(0x77);
      assert.equal(vcpu.run(), KvmExit.IO);
      assert.deepEqual([vcpu.ioIsOut(), vcpu.ioPort(), vcpu.ioValue()], [true, 0x10, 0x77]);
      assert.equal(vcpu.run(), KvmExit.HLT);
      assert.equal(vcpu.getRegs().get('rip'), 5n, 'IP after the HLT');
    } finally {
      vcpu.close();
      vm.close();
    }
  });

  test('KVM_INTERRUPT takes one vector until the next KVM_RUN: after one, readyForInterrupt() says no (a second would replace the first)', () => {
    const vm = KvmVm.create({ memoryBytes: 0x10000 });
    const vcpu = KvmVcpu.create(vm, 0);
    try {
      // sti; nop; hlt: the HLT exit comes with interrupts enabled and no interrupt shadow.
      vm.memory.set([0xfb, 0x90, 0xf4], 0x2000);
      vcpu.applySipi({ vector: 2, csSelector: 0x200, csBase: 0x2000, ip: 0 });
      assert.equal(vcpu.run(), KvmExit.HLT);
      assert.equal(vcpu.readyForInterrupt(), true, 'KVM says an interrupt can be injected now');
      vcpu.interrupt(0x30);
      assert.equal(vcpu.readyForInterrupt(), false, 'the queued vector is not taken yet: no second injection before KVM_RUN');
    } finally {
      vcpu.close();
      vm.close();
    }
  });

  test('applyInit gives the SDM INIT state: F000:FFF0 with CS base 0xffff0000, CR0 0x60000010, rdx 0x600, CR4 and EFER clear', () => {
    const vm = KvmVm.create({ memoryBytes: 0x10000 });
    const vcpu = KvmVcpu.create(vm, 0);
    try {
      const regs = vcpu.getRegs();
      regs.set('rax', 5);
      regs.set('rip', 0x1234);
      vcpu.setRegs(regs);
      const sregs = vcpu.getSregs();
      sregs.set('cr0', sregs.get('cr0') | 0x2n); // MP
      sregs.set('cr4', 0x200n); // OSFXSR
      sregs.setSegment('ds', { ...sregs.segment('ds'), base: 0x5000n, selector: 0x500 });
      vcpu.setSregs(sregs);
      vcpu.applyInit();
      const after = vcpu.getRegs();
      assert.deepEqual([after.get('rip'), after.get('rflags'), after.get('rax'), after.get('rdx')], [0xfff0n, 2n, 0n, 0x600n]);
      const special = vcpu.getSregs();
      const cs = special.segment('cs');
      assert.deepEqual([cs.selector, cs.base, cs.limit, cs.type, cs.present, cs.s], [0xf000, 0xffff0000n, 0xffff, 0xb, 1, 1]);
      const ds = special.segment('ds');
      assert.deepEqual([ds.selector, ds.base, ds.limit], [0, 0n, 0xffff]);
      assert.deepEqual([special.get('cr0'), special.get('cr4'), special.get('efer')], [0x60000010n, 0n, 0n]);
      assert.deepEqual(special.table('idt'), { base: 0n, limit: 0xffff });
    } finally {
      vcpu.close();
      vm.close();
    }
  });

  test('getMsr and setMsr move one MSR (IA32_SYSENTER_CS); an MSR KVM does not know is refused with EINVAL; tscKhz is the TSC frequency', () => {
    const vm = KvmVm.create({ memoryBytes: 0x10000 });
    const vcpu = KvmVcpu.create(vm, 0);
    try {
      vcpu.setMsr(MSR_IA32_SYSENTER_CS, 0x10n);
      assert.equal(vcpu.getMsr(MSR_IA32_SYSENTER_CS), 0x10n);
      for (const refused of [() => vcpu.getMsr(MSR_UNKNOWN), () => { vcpu.setMsr(MSR_UNKNOWN, 1n); }]) {
        assert.throws(refused, (error: unknown) => error instanceof IrqChipError && error.code === ErrorCode.EINVAL);
      }
      assert.ok(vcpu.tscKhz() > 0);
    } finally {
      vcpu.close();
      vm.close();
    }
  });
});

describe('kicks reach a vCPU thread wherever it is', { skip }, () => {
  test('a kick that lands while the vCPU thread runs JavaScript makes its next KVM_RUN return INTR at once (the handler sets immediate_exit)', () => {
    const vm = KvmVm.create({ memoryBytes: 0x10000 });
    const control = allocateVcpuControl();
    const vcpu = KvmVcpu.create(vm, 0, control);
    try {
      vm.memory.set(SPIN_FOREVER, 0x1000);
      enterRealModeGuest(vcpu, 0x1000);
      // The vCPU's thread is this one: the signal is handled before kickVcpuThread returns.
      kickVcpuThread(control);
      assert.equal(vcpu.run(), KvmExit.INTR, 'the kick was not lost: KVM_RUN returned at once');
      assert.equal(vcpu.getRegs().get('rip'), 0x1000n, 'the guest did not advance');
    } finally {
      vcpu.close();
      vm.close();
    }
    assert.doesNotThrow(() => {
      kickVcpuThread(control);
    }, 'a closed vCPU is not kicked');
  });

  test('a POSIX thread timer (timerCreate/timerArm) takes a spinning guest out of KVM_RUN when it expires; arming with 0 disarms', () => {
    const vm = KvmVm.create({ memoryBytes: 0x10000 });
    const vcpu = KvmVcpu.create(vm, 0);
    const timer = addon.timerCreate(addon.threadId(), KICK_SIGNAL);
    try {
      assert.ok(timer >= 0, `timer_create: ${timer}`);
      vm.memory.set(SPIN_FOREVER, 0x1000);
      enterRealModeGuest(vcpu, 0x1000);
      assert.equal(addon.timerArm(timer, 2_000_000), 0);
      assert.equal(vcpu.run(), KvmExit.INTR, 'the timer ended KVM_RUN');
      assert.equal(addon.timerArm(timer, 1_000_000), 0);
      assert.equal(addon.timerArm(timer, 0), 0, 'disarmed');
      // A guest that exits by itself after a while: the disarmed timer must not cut it short.
      vm.memory.set([0xb9, 0x00, 0x80, 0xe2, 0xfe, 0xe6, 0x10], 0x1000); // mov cx, 0x8000; loop $; out 0x10, al
      enterRealModeGuest(vcpu, 0x1000);
      assert.equal(vcpu.run(), KvmExit.IO, 'no kick after disarming');
    } finally {
      addon.timerDelete(timer);
      vcpu.close();
      vm.close();
    }
  });
});

describe('VcpuThread: kicks and shutdown', { skip }, () => {
  test('a kick takes a vCPU halted inside KVM_RUN out of it (KvmExit.INTR), and it runs on: every kick is seen', async () => {
    const machine = kernelChipMachine({ levelTriggered: false });
    using trigger = OsEvent.create();
    machine.chip.registerEdgeIrqEvent(GUEST_IRQ, new IrqEdgeEvent(trigger), IRQ_SOURCE);
    await withPicGuest(machine, {}, async (thread) => {
      for (let kick = 1; kick <= 20; kick++) {
        const kicked = Atomics.load(machine.log, GuestLog.Kicked);
        thread.kick();
        await waitForLog(machine.log, GuestLog.Kicked, kicked + 1);
      }
      trigger.signal();
      await waitForLog(machine.log, GuestLog.Interrupts, 1);
      assert.equal(Atomics.load(machine.log, GuestLog.FatalExit), 0);
    });
  });

  test('stop() ends a vCPU asleep in KVM_RUN: the loop sees the stop flag, closes the vCPU, the worker ends', async () => {
    const machine = kernelChipMachine({ levelTriggered: false });
    const thread = await runPicGuest(machine);
    await thread.stop();
    thread.kick();
    assert.equal(Atomics.load(machine.log, GuestLog.FatalExit), 0);
    machine.vm.close();
  });

  test('process.exit() with a vCPU asleep in KVM_RUN and no stop() still ends the process (the exit hook kicks)', () => {
    const child = spawnSync(process.execPath, ['--import', 'tsx', fileURLToPath(new URL('./exit-without-stop.fixture.ts', import.meta.url))], {
      encoding: 'utf8',
      timeout: 60_000,
    });
    assert.equal(child.signal, null, `the child was killed after the timeout: it hung (${child.stderr})`);
    assert.equal(child.status, 0, child.stderr);
    assert.match(child.stdout, /vcpu halted in KVM_RUN; exiting/);
  });
});
