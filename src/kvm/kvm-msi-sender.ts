/**
 * KVM_SIGNAL_MSI: one x86 MSI sent to a VM's in-kernel local APICs without a route or a GSI. It
 * needs KVM's LAPICs (a full in-kernel irqchip, or a split one: `irqchip_in_kernel`), so both KVM
 * chips send with it (`signalMsi`).
 *
 * KVM's answer (virt/kvm/irqchip.c `kvm_send_userspace_msi` → arch/x86/kvm/irq_comm.c
 * `kvm_set_msi` → lapic.c `kvm_irq_delivery_to_apic`) is the ioctl's return value:
 * - > 0: the number of local APICs that accepted the message. There is no "coalesced" answer for
 *   a fixed MSI: a vector already in IRR still counts as accepted (`__apic_accept_irq`).
 * - 0: none accepted: the destination names no APIC, or its APIC is software-disabled (SVR bit 8).
 * - -1: the message reached no present APIC (the slow delivery path starts from -1 and only a
 *   matching APIC raises it; e.g. a broadcast while every APIC is hardware-disabled). Being the
 *   ioctl's return value, -1 reaches userspace as errno EPERM (1); it is the guest's doing, not a
 *   refusal, so it is returned, not thrown.
 */

import { constants } from 'node:os';
import { ErrorCode, IrqChipError } from '../base/errors.ts';
import { highHalf, isU32, isU64, lowHalf } from '../base/integers.ts';
import { addon } from './addon.ts';
import { KVM_MSI_BYTES, KvmIoctl, KvmMsiLayout } from './kvm-abi.ts';
import type { KvmVm } from './kvm-vm.ts';
import { check as checkSystemCall } from './linux.ts';

const { EPERM } = constants.errno;
/** What `send` returns when the message reached no present local APIC (KVM's -1). */
export const MSI_REACHED_NO_LOCAL_APIC = -1;

/** Sends MSIs into one VM; one per thread (it reuses one struct kvm_msi, so nothing is allocated per message). */
export class KvmMsiSender {
  private readonly msi = new DataView(new ArrayBuffer(KVM_MSI_BYTES));

  constructor(private readonly vm: KvmVm) {}

  /**
   * Sends the x86 MSI (`address` a u64 bigint, `data` a u32; EINVAL otherwise, and nothing is
   * sent). KVM decodes it as the guest programmed it (`kvm_set_msi_irq`), so no message the guest
   * wrote throws. struct kvm_msi's flags and device id stay 0: x86 MSIs carry no device id.
   * Returns KVM's answer (see the file comment). Splitting the bigint makes new bigints: a caller
   * that has the halves already sends with `sendHalves`.
   */
  send(address: bigint, data: number): number {
    // Plain tests, not `check` with a message closure: this runs once per interrupt.
    if (!isU64(address)) throw new IrqChipError(ErrorCode.EINVAL, `MSI address must be a u64 bigint, got ${String(address)}`);
    return this.sendHalves(lowHalf(address) >>> 0, highHalf(address) >>> 0, data);
  }

  /**
   * `send` with the address as its two 32-bit halves (each a u32, as msi-codec.ts encodes them;
   * EINVAL otherwise, and nothing is sent): nothing is allocated per message.
   */
  sendHalves(addressLow: number, addressHigh: number, data: number): number {
    if (!isU32(addressLow) || !isU32(addressHigh)) {
      throw new IrqChipError(ErrorCode.EINVAL, `MSI address halves must be u32s, got ${String(addressLow)} and ${String(addressHigh)}`);
    }
    if (!isU32(data)) throw new IrqChipError(ErrorCode.EINVAL, `MSI data must be a u32, got ${String(data)}`);
    const { msi } = this;
    msi.setUint32(KvmMsiLayout.ADDRESS_LO, addressLow, true);
    msi.setUint32(KvmMsiLayout.ADDRESS_HI, addressHigh, true);
    msi.setUint32(KvmMsiLayout.DATA, data, true);
    const result = addon.ioctl(this.vm.fd, KvmIoctl.SIGNAL_MSI, msi);
    if (result === -EPERM) return MSI_REACHED_NO_LOCAL_APIC;
    return checkSystemCall(result, 'KVM_SIGNAL_MSI');
  }
}
