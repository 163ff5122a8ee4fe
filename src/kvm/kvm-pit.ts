/**
 * KVM's in-kernel 8254 PIT, the kernel chip's timer on GSI 0 (crosvm's `KvmKernelIrqChip` makes
 * it too; the split and userspace chips use our `Pit8254` instead, src/vmm/devices/pit-8254.ts).
 *
 * KVM_CREATE_PIT2 (linux/arch/x86/kvm/x86.c, i8254.c) puts the PIT on ports 0x40-0x43 and, with
 * KVM_PIT_SPEAKER_DUMMY, port 0x61 (channel 2's GATE and OUT, the speaker bit) in the kernel:
 * those accesses never exit. It needs KVM's PIC: current kernels refuse it before
 * KVM_CREATE_IRQCHIP with ENOENT (x86.c, "if (!pic_in_kernel(kvm))"; older ones created a PIT
 * nothing could deliver), and there is one per VM (EEXIST). Its channel 0 pulses GSI 0 from an
 * hrtimer, through whatever routes GSI 0 has.
 *
 * Where it departs from the 8254 datasheet (src/vmm/devices/pit-channel.ts lists the register
 * differences), two matter to a guest's timekeeping:
 * - **Re-injection** (KVM's default): a tick that finds the previous one not yet acknowledged (by
 *   the 8259A's or the IOAPIC's EOI, `kvm_pit_ack_irq`) is queued (`pending`), and the queue
 *   drains one tick per acknowledgement through the kvm-pit worker thread (`pit_do_work`), so a
 *   guest that kept interrupts off for k periods takes k more interrupts afterwards. Hardware and
 *   our `Pit8254` coalesce them into one (the 8259A's IRR holds one edge). Measured on this host:
 *   the backlog drains at roughly one tick per millisecond, so at a 1 ms period it hardly
 *   shrinks, and at 10 ms it is gone within a few periods. `setKvmPitReinject(vm, false)` gives
 *   the hardware rule, as QEMU's `lost_tick_policy=discard` does. pit-guest.test.ts shows both.
 * - **A floor on the period**: a periodic count shorter than the kvm module's
 *   `min_timer_period_us` (200 µs by default) fires at that period instead (`create_pit_timer`);
 *   the count the guest reads still runs at the programmed rate.
 */

import { KVM_PIT_CONFIG_BYTES, KVM_PIT_SPEAKER_DUMMY, KVM_REINJECT_CONTROL_BYTES, KvmIoctl } from './kvm-abi.ts';
import type { KvmVm } from './kvm-vm.ts';

/**
 * Creates KVM's PIT on `vm`, with port 0x61 in the kernel too. After KVM_CREATE_IRQCHIP: ENOENT
 * before it, EEXIST for a second PIT.
 */
export function createKvmPit(vm: KvmVm): void {
  // struct kvm_pit_config: flags u32, pad u32[15].
  const config = new Uint32Array(KVM_PIT_CONFIG_BYTES / Uint32Array.BYTES_PER_ELEMENT);
  config[0] = KVM_PIT_SPEAKER_DUMMY;
  vm.ioctl(KvmIoctl.CREATE_PIT2, config, 'KVM_CREATE_PIT2 (after KVM_CREATE_IRQCHIP, once per VM)');
}

/**
 * Whether KVM's PIT re-injects ticks the guest has not acknowledged yet (true, KVM's default) or
 * lets them coalesce as the hardware does (false). A VM without KVM's PIT refuses with ENXIO.
 */
export function setKvmPitReinject(vm: KvmVm, reinject: boolean): void {
  // struct kvm_reinject_control: pit_reinject u8, reserved u8[31].
  const control = new Uint8Array(KVM_REINJECT_CONTROL_BYTES);
  control[0] = reinject ? 1 : 0;
  vm.ioctl(KvmIoctl.REINJECT_CONTROL, control, 'KVM_REINJECT_CONTROL (needs KVM_CREATE_PIT2)');
}
