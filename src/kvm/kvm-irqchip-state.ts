/**
 * The in-kernel controllers' state as KVM_GET_IRQCHIP reports it (struct kvm_irqchip, layout in
 * kvm-abi.ts; x86-controllers.md Appendix A).
 *
 * struct kvm_pic_state is 16 u8 fields, in `KVM_PIC_STATE_FIELDS` order from the union's start
 * (linux/arch/x86/include/uapi/asm/kvm.h). Unlike our model it has no single_mode and no ltim:
 * KVM implements neither (§1.11).
 */

import { KVM_IRQCHIP_BYTES, KVM_IRQCHIP_UNION, KvmIoctl, KvmIrqchipId } from './kvm-abi.ts';
import type { KvmVm } from './kvm-vm.ts';

/** kvm_pic_state's fields, in struct order (one byte each). */
export const KVM_PIC_STATE_FIELDS = [
  'lastIrr',
  'irr',
  'imr',
  'isr',
  'priorityAdd',
  'irqBase',
  'readRegisterSelect',
  'poll',
  'specialMask',
  'initState',
  'autoEoi',
  'rotateOnAutoEoi',
  'specialFullyNestedMode',
  'init4',
  'elcr',
  'elcrMask',
] as const;
export type KvmPicStateField = (typeof KVM_PIC_STATE_FIELDS)[number];
/** One 8259A as KVM holds it; every field a byte. */
export type KvmPicState = Record<KvmPicStateField, number>;

export type KvmPicChipId = typeof KvmIrqchipId.PicMaster | typeof KvmIrqchipId.PicSlave;

/** KVM_GET_IRQCHIP for one of the two 8259As. */
export function readKvmPicState(vm: KvmVm, chip: KvmPicChipId): KvmPicState {
  const irqchip = new Uint8Array(KVM_IRQCHIP_BYTES);
  new DataView(irqchip.buffer).setUint32(0, chip, true);
  vm.ioctl(KvmIoctl.GET_IRQCHIP, irqchip, `KVM_GET_IRQCHIP (chip ${chip})`);
  const state = {} as KvmPicState;
  KVM_PIC_STATE_FIELDS.forEach((field, index) => {
    state[field] = irqchip[KVM_IRQCHIP_UNION + index] ?? 0;
  });
  return state;
}
