/**
 * `setUpVcpu` (vcpu-setup.ts) on real KVM, and the rule it states: KVM delivers the guest's INIT
 * and SIPI only to vCPUs that exist, so every vCPU must be created before the BSP runs. Proved
 * here on one thread with KVM's local APICs: the irq-probe guest's BSP sends INIT, SIPI, SIPI to
 * all but itself; an AP created before is started at the SIPI page, one created after waits for
 * an INIT forever.
 */
import assert from 'node:assert/strict';
import { describe, test } from 'node:test';
import { enterIrqProbe, loadIrqProbe, ProbePort } from './irq-probe.ts';
import { KvmExit } from './kvm-abi.ts';
import { findCpuid, getVcpuCpuid } from './kvm-cpuid.ts';
import { GuestTscClock } from './kvm-guest-tsc.ts';
import { KvmKernelIrqChip } from './kvm-kernel-irq-chip.ts';
import { kvmSkipReason } from './kvm-test-support.ts';
import { KvmVcpu } from './kvm-vcpu.ts';
import { KvmVm } from './kvm-vm.ts';
import { setUpVcpu } from './vcpu-setup.ts';

const skip = kvmSkipReason('vCPU set-up on real KVM');

/** The irq-probe guest and its tables fit in 4 MiB. */
const MEMORY_BYTES = 4 << 20;
/** irq-probe's AP start page (SIPI vector 9): CS selector 0x900, base 0x9000 (SDM vol. 3 §9.4.4.1). */
const SIPI_CS_SELECTOR = 0x900;
const SIPI_CS_BASE = 0x9000n;
/** Guest exits the BSP may take before it reports the end of its start-up sequence. */
const MAX_BSP_EXITS = 100;

describe('setUpVcpu on KVM', { skip }, () => {
  test("sets the vCPU's CPUID (its APIC ID, the VM's core count) and, with our local APICs, calibrates their clock", () => {
    const vm = KvmVm.create({ memoryBytes: 0x10000 });
    const vcpu = KvmVcpu.create(vm, 1);
    try {
      const clock = GuestTscClock.create(vm);
      setUpVcpu(vcpu, { vcpuCount: 2, userspaceLocalApic: { clock } });
      const cpuid = getVcpuCpuid(vcpu);
      assert.equal((findCpuid(cpuid, 1)?.ebx ?? 0) >>> 24, 1);
      assert.equal(findCpuid(cpuid, 0xb, 1)?.ebx, 2);
      assert.equal(clock.calibrated, true);
    } finally {
      vcpu.close();
      vm.close();
    }
  });

  test("KVM's local APIC: an AP created before the BSP's INIT, SIPI, SIPI starts at the SIPI page; one created after never sees the INIT and waits for one", () => {
    const vm = KvmVm.create({ memoryBytes: MEMORY_BYTES });
    const vcpus: KvmVcpu[] = [];
    try {
      KvmKernelIrqChip.create(vm, { vcpuCount: 3 });
      loadIrqProbe(vm.memory, { startAps: true });
      const bsp = KvmVcpu.create(vm, 0);
      const early = KvmVcpu.create(vm, 1);
      vcpus.push(bsp, early);
      for (const vcpu of vcpus) setUpVcpu(vcpu, { vcpuCount: 3 });
      enterIrqProbe(bsp);
      // The BSP runs here until it reports the whole sequence sent (its port exits; never its HLT).
      let exits = 0;
      while (!(bsp.run() === KvmExit.IO && bsp.ioPort() === ProbePort.StartupSent)) {
        exits += 1;
        assert.ok(exits < MAX_BSP_EXITS, 'the BSP reports the start-up sequence sent');
      }
      const late = KvmVcpu.create(vm, 2);
      vcpus.push(late);
      setUpVcpu(late, { vcpuCount: 3 });
      // KVM_GET_MP_STATE first accepts the INIT and SIPI the vCPU's local APIC latched.
      assert.equal(early.getMpState(), 'runnable');
      const cs = early.getSregs().segment('cs');
      assert.deepEqual([cs.selector, cs.base, early.getRegs().get('rip')], [SIPI_CS_SELECTOR, SIPI_CS_BASE, 0n]);
      assert.equal(late.getMpState(), 'uninitialized');
    } finally {
      for (const vcpu of vcpus) vcpu.close();
      vm.close();
    }
  });
});
