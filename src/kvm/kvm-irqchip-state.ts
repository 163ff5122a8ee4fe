/**
 * The in-kernel controllers' state as KVM_GET_IRQCHIP reports it (struct kvm_irqchip, layout in
 * kvm-abi.ts; x86-controllers.md Appendix A).
 *
 * struct kvm_pic_state is 16 u8 fields, in `KVM_PIC_STATE_FIELDS` order from the union's start
 * (linux/arch/x86/include/uapi/asm/kvm.h). Unlike our model it has no single_mode and no ltim:
 * KVM implements neither (§1.11). struct kvm_ioapic_state is described at `KvmIoapicState`.
 */

import { KVM_IOAPIC_NUM_PINS, KVM_IRQCHIP_BYTES, KVM_IRQCHIP_UNION, KvmIoapicStateLayout, KvmIoctl, KvmIrqchipId } from './kvm-abi.ts';
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

const REDIRECTION_ENTRY_BYTES = 8;
const HALF_ENTRY_BYTES = 4;

/** One redirection-table entry as two 32-bit halves (bits 31:0 and 63:32). */
export interface KvmRedirectionEntry {
  readonly low: number;
  readonly high: number;
}

/**
 * struct kvm_ioapic_state (chip 2; layout `KvmIoapicStateLayout`): the IOAPIC as KVM holds it.
 * `id` is the 4-bit IOAPIC ID (not shifted to bits 27:24 as IOAPICID reads it). `irr` is KVM's
 * pin-level bitmap with the edge pins whose assertion was already delivered left out
 * (arch/x86/kvm/ioapic.c `kvm_get_ioapic`: `state->irr &= ~ioapic->irr_delivered`).
 */
export interface KvmIoapicState {
  readonly ioregsel: number;
  readonly id: number;
  readonly irr: number;
  readonly redirectionTable: readonly KvmRedirectionEntry[];
}

/** KVM_GET_IRQCHIP for the IOAPIC. */
export function readKvmIoapicState(vm: KvmVm): KvmIoapicState {
  const irqchip = new DataView(new ArrayBuffer(KVM_IRQCHIP_BYTES));
  irqchip.setUint32(0, KvmIrqchipId.Ioapic, true);
  vm.ioctl(KvmIoctl.GET_IRQCHIP, irqchip, 'KVM_GET_IRQCHIP (IOAPIC)');
  const field = (offset: number): number => irqchip.getUint32(KVM_IRQCHIP_UNION + offset, true);
  const redirectionTable: KvmRedirectionEntry[] = [];
  for (let pin = 0; pin < KVM_IOAPIC_NUM_PINS; pin++) {
    const entry = KvmIoapicStateLayout.REDIRECTION_TABLE + pin * REDIRECTION_ENTRY_BYTES;
    redirectionTable.push({ low: field(entry), high: field(entry + HALF_ENTRY_BYTES) });
  }
  return {
    ioregsel: field(KvmIoapicStateLayout.IOREGSEL),
    id: field(KvmIoapicStateLayout.ID),
    irr: field(KvmIoapicStateLayout.IRR),
    redirectionTable,
  };
}

