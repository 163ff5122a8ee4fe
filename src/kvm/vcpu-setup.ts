/**
 * `setUpVcpu`: what a VMM does to each KVM vCPU, on its own thread, after creating it and before
 * it first runs, in every chip mode: its CPUID (kvm-cpuid.ts: KVM's supported set with x2APIC,
 * the TSC-deadline timer, its APIC ID and the VM's topology) and, when the local APICs are ours,
 * the calibration of their timers' clock to the guest's TSC (kvm-guest-tsc.ts).
 *
 * Create every vCPU of the VM (and set each up) before any of them runs guest code: KVM delivers
 * the guest's INIT and SIPI only to vCPUs that exist (kvm_irq_delivery_to_apic walks the VM's
 * vCPUs), and a vCPU created after its INIT waits for one forever — its SIPIs are dropped outside
 * the wait-for-SIPI state (kvm_apic_accept_events). A real machine has every CPU from power-on.
 */

import { setVcpuCpuid, supportedCpuid, vcpuCpuidTable } from './kvm-cpuid.ts';
import type { GuestTscClock } from './kvm-guest-tsc.ts';
import type { KvmVcpu } from './kvm-vcpu.ts';

export interface VcpuSetUpOptions {
  /** vCPUs in the VM: the topology CPUID describes. */
  readonly vcpuCount: number;
  /**
   * Present when the local APICs are ours (userspace chip): the clock their timers count on,
   * calibrated here to the guest's TSC. Absent: the local APIC is KVM's (kernel and split chips).
   */
  readonly userspaceLocalApic?: { readonly clock: GuestTscClock };
}

/** Sets `vcpu`'s CPUID (KVM_SET_CPUID2) and, with our local APICs, calibrates their clock. */
export function setUpVcpu(vcpu: KvmVcpu, options: VcpuSetUpOptions): void {
  const { vcpuCount, userspaceLocalApic } = options;
  setVcpuCpuid(vcpu, vcpuCpuidTable(supportedCpuid(), { vcpuId: vcpu.id, vcpuCount, userspaceLocalApic: userspaceLocalApic !== undefined }));
  userspaceLocalApic?.clock.calibrate(vcpu);
}
