/**
 * `kvm_regs` and `kvm_sregs` as typed views (layouts in kvm-abi.ts), for KVM_GET/SET_REGS and
 * KVM_GET/SET_SREGS.
 */

import {
  KVM_REGS,
  KVM_SEGMENTS,
  KVM_SEGMENT_BYTES,
  KVM_SREGS_BYTES,
  KvmSegmentLayout,
  KvmSregsLayout,
  type KvmControlRegName,
  type KvmRegName,
  type KvmSegmentName,
} from './kvm-abi.ts';

/** The general registers, rip and rflags. */
export class KvmRegs {
  /** The raw struct, passed to the ioctls in place. */
  readonly words = new BigUint64Array(KVM_REGS.length);

  get(name: KvmRegName): bigint {
    return this.words[KVM_REGS.indexOf(name)] ?? 0n;
  }

  set(name: KvmRegName, value: number | bigint): void {
    this.words[KVM_REGS.indexOf(name)] = BigInt(value);
  }
}

/** One segment register as KVM describes it (struct kvm_segment). */
export interface KvmSegment {
  readonly base: bigint;
  readonly limit: number;
  readonly selector: number;
  /** The descriptor type field (4 bits), e.g. 0xb for an accessed execute/read code segment. */
  readonly type: number;
  readonly present: number;
  readonly dpl: number;
  readonly db: number;
  /** 1 for a code or data segment, 0 for a system segment. */
  readonly s: number;
  readonly l: number;
  readonly g: number;
  readonly avl: number;
  readonly unusable: number;
}

const CONTROL_OFFSET: Readonly<Record<KvmControlRegName, number>> = {
  cr0: KvmSregsLayout.CR0,
  cr2: KvmSregsLayout.CR2,
  cr3: KvmSregsLayout.CR3,
  cr4: KvmSregsLayout.CR4,
  cr8: KvmSregsLayout.CR8,
  efer: KvmSregsLayout.EFER,
  apicBase: KvmSregsLayout.APIC_BASE,
};

/** kvm_segment's one-byte fields, in their order from `KvmSegmentLayout.BYTE_FIELDS`. */
const SEGMENT_BYTE_FIELDS = ['type', 'present', 'dpl', 'db', 's', 'l', 'g', 'avl', 'unusable'] as const;

/** Segment registers, descriptor tables and control registers. */
export class KvmSregs {
  /** The raw struct, passed to the ioctls in place. */
  readonly bytes = new Uint8Array(KVM_SREGS_BYTES);
  private readonly view = new DataView(this.bytes.buffer);

  segment(name: KvmSegmentName): KvmSegment {
    const at = segmentOffset(name);
    const bytes: Record<(typeof SEGMENT_BYTE_FIELDS)[number], number> = { type: 0, present: 0, dpl: 0, db: 0, s: 0, l: 0, g: 0, avl: 0, unusable: 0 };
    for (const field of SEGMENT_BYTE_FIELDS) bytes[field] = this.view.getUint8(at + byteFieldOffset(field));
    return {
      base: this.view.getBigUint64(at + KvmSegmentLayout.BASE, true),
      limit: this.view.getUint32(at + KvmSegmentLayout.LIMIT, true),
      selector: this.view.getUint16(at + KvmSegmentLayout.SELECTOR, true),
      ...bytes,
    };
  }

  setSegment(name: KvmSegmentName, segment: KvmSegment): void {
    const at = segmentOffset(name);
    this.view.setBigUint64(at + KvmSegmentLayout.BASE, segment.base, true);
    this.view.setUint32(at + KvmSegmentLayout.LIMIT, segment.limit, true);
    this.view.setUint16(at + KvmSegmentLayout.SELECTOR, segment.selector, true);
    for (const field of SEGMENT_BYTE_FIELDS) this.view.setUint8(at + byteFieldOffset(field), segment[field]);
  }

  /** A descriptor-table register (GDTR or IDTR). */
  table(name: 'gdt' | 'idt'): { readonly base: bigint; readonly limit: number } {
    const at = name === 'gdt' ? KvmSregsLayout.GDT : KvmSregsLayout.IDT;
    return { base: this.view.getBigUint64(at, true), limit: this.view.getUint16(at + 8, true) };
  }

  setTable(name: 'gdt' | 'idt', base: bigint, limit: number): void {
    const at = name === 'gdt' ? KvmSregsLayout.GDT : KvmSregsLayout.IDT;
    this.view.setBigUint64(at, base, true);
    this.view.setUint16(at + 8, limit, true);
  }

  get(name: KvmControlRegName): bigint {
    return this.view.getBigUint64(CONTROL_OFFSET[name], true);
  }

  set(name: KvmControlRegName, value: bigint): void {
    this.view.setBigUint64(CONTROL_OFFSET[name], value, true);
  }
}

function segmentOffset(name: KvmSegmentName): number {
  return KVM_SEGMENTS.indexOf(name) * KVM_SEGMENT_BYTES;
}

function byteFieldOffset(field: (typeof SEGMENT_BYTE_FIELDS)[number]): number {
  return KvmSegmentLayout.BYTE_FIELDS + SEGMENT_BYTE_FIELDS.indexOf(field);
}
