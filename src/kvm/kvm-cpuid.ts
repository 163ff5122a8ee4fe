/**
 * The CPUID a KVM vCPU shows its guest: KVM's supported set (KVM_GET_SUPPORTED_CPUID on
 * /dev/kvm; a VM fd answers ENOTTY, measured here), made into one vCPU's table and applied with
 * KVM_SET_CPUID2 before the vCPU first runs (KVM refuses a different table after KVM_RUN).
 *
 * What the table says, on top of what KVM supports:
 * - Leaf 1: the APIC (EDX[9]), x2APIC (ECX[21]) and the TSC-deadline timer (ECX[24]) on every chip
 *   mode: KVM's local APIC accepts IA32_APIC_BASE.EXTD only when CPUID has x2APIC, and derives
 *   its timer modes from ECX[24] (cpuid.c, kvm_vcpu_after_set_cpuid); our local APIC has both.
 *   ECX[31] says a hypervisor is present. EBX[31:24] is the initial APIC ID = the vCPU id.
 * - Topology: every vCPU is one core of one package, one thread per core (the plainest topology
 *   a guest can be told). Leaves 0xB and 0x1F (SDM vol. 2A, CPUID: extended topology) have an
 *   SMT level (shift 0, 1 thread) and a core level (shift = bits that number every vCPU, count =
 *   vCPUs), each subleaf's EDX the x2APIC ID = the vCPU id; KVM's supported set carries the
 *   host's topology there, which is replaced. Leaf 1 sets HTT and EBX[23:16] (addressable IDs)
 *   when there is more than one vCPU. The cache leaves (4 on Intel, 0x8000001D on AMD, where
 *   EAX[25:14] has the same meaning) say L1 and L2 are private to a core and L3 is shared by the
 *   package; leaf 4's EAX[31:26] counts the package's core IDs. On AMD, 0x80000008 ECX has the
 *   core count and the APIC ID bits per package, 0x8000001E this vCPU's extended APIC ID and
 *   core ID (KVM zeroes it: "do not return host topology information").
 * - KVM's paravirtual features that go through KVM's local APIC (PV EOI, PV unhalt, PV IPIs, PV
 *   sched-yield, async page faults by interrupt) are withdrawn when the local APIC is ours: KVM
 *   would refuse their MSRs or send their IPIs to an APIC that does not exist (QEMU withdraws
 *   them without an in-kernel irqchip too).
 *
 * **This PVM host** lists few instruction-set features in KVM_GET_SUPPORTED_CPUID (CPUID.1:ECX
 * has x2APIC, TSC-deadline, CMPXCHG16B and hypervisor, no SSE3 to AVX) but fills CPUID.1:ECX,
 * leaf 7 and leaf 0xD of a vCPU with the host's own at KVM_SET_CPUID2: KVM_GET_CPUID2 shows them
 * and so does the guest's CPUID (kvm-cpuid.test.ts, chip-modes.test.ts). A PVM guest runs at
 * CPL3 on the host's CPU, where it can execute those instructions whatever its CPUID says. The
 * published PVM module leaves `vcpu_after_set_cpuid` empty, so the code doing it is elsewhere in
 * this host's kernel. Everything this module sets comes back exactly.
 */

import { constants } from 'node:os';
import { IrqChipError, ErrorCode, checkRange } from '../base/errors.ts';
import { addon } from './addon.ts';
import {
  KVM_CPUID2_HEADER_BYTES,
  KVM_CPUID_ENTRY2_BYTES,
  KVM_CPUID_FLAG_SIGNIFCANT_INDEX,
  KvmCpuidEntryLayout,
  KvmIoctl,
} from './kvm-abi.ts';
import type { KvmVcpu } from './kvm-vcpu.ts';
import { KVM_DEVICE_PATH } from './kvm-vm.ts';
import { O_CLOEXEC, O_RDWR, check, systemError } from './linux.ts';

/** One CPUID leaf (and subleaf) as KVM carries it: struct kvm_cpuid_entry2 (`function`, `index`). */
export interface CpuidEntry {
  readonly leaf: number;
  readonly subleaf: number;
  /** KVM_CPUID_FLAG_*: SIGNIFCANT_INDEX when the entry is for one subleaf only. */
  readonly flags: number;
  readonly eax: number;
  readonly ebx: number;
  readonly ecx: number;
  readonly edx: number;
}

/** Which vCPU of how many a table is for, and whose local APIC it has. */
export interface VcpuCpuidOptions {
  readonly vcpuId: number;
  readonly vcpuCount: number;
  /** The local APIC is ours (userspace chip), not KVM's: KVM's APIC-based paravirtual features are withdrawn. */
  readonly userspaceLocalApic?: boolean;
}

/** vCPUs a table can describe: initial APIC IDs are 8 bits (leaf 1 EBX[31:24]) and 0xFF is the xAPIC broadcast. */
export const MAX_CPUID_VCPUS = 255;

const Leaf = {
  Features: 0x1,
  CacheParameters: 0x4,
  ExtendedTopology: 0xb,
  ExtendedTopologyV2: 0x1f,
  KvmFeatures: 0x40000001,
  AmdAddressSizes: 0x80000008,
  AmdCacheTopology: 0x8000001d,
  AmdProcessorTopology: 0x8000001e,
} as const;

/** CPUID.1 bits (SDM vol. 2A, CPUID, Tables 3-10 and 3-11). */
const Leaf1 = {
  EDX_APIC: 1 << 9,
  EDX_HTT: 1 << 28,
  ECX_X2APIC: 1 << 21,
  ECX_TSC_DEADLINE: 1 << 24,
  ECX_HYPERVISOR: 1 << 31,
} as const;
/** CPUID.1:EBX: [31:24] initial APIC ID, [23:16] addressable logical processor IDs in the package. */
const LEAF1_EBX_KEPT = 0x0000ffff;
const LEAF1_APIC_ID_SHIFT = 24;
const LEAF1_LOGICAL_COUNT_SHIFT = 16;
const LEAF1_LOGICAL_COUNT_MAX = 0xff;

/** Leaf 0xB/0x1F level types (ECX[15:8]) and the levels described here: SMT, then core. */
const TOPOLOGY_LEVEL_SMT = 1;
const TOPOLOGY_LEVEL_CORE = 2;
const TOPOLOGY_LEVEL_TYPE_SHIFT = 8;

/** Cache leaves: EAX[4:0] cache type (0 = no more caches), EAX[7:5] level, EAX[25:14] sharing IDs − 1, leaf 4 EAX[31:26] core IDs − 1. */
const CACHE_TYPE_MASK = 0x1f;
const CACHE_LEVEL_SHIFT = 5;
const CACHE_LEVEL_MASK = 0x7;
const CACHE_SHARING_SHIFT = 14;
const CACHE_SHARING_MASK = 0xfff;
const CACHE_CORES_SHIFT = 26;
const CACHE_CORES_MASK = 0x3f;
/** Caches up to L2 are a core's own; L3 is the package's. */
const LAST_PRIVATE_CACHE_LEVEL = 2;

/** AMD 0x80000008 ECX: [7:0] cores − 1 (NC), [15:12] APIC ID bits for cores (ApicIdSize). */
const AMD_CORE_COUNT_MASK = 0xff;
const AMD_APIC_ID_SIZE_SHIFT = 12;
const AMD_APIC_ID_SIZE_MASK = 0xf;
const AMD_CORE_ID_MASK = 0xff;

/**
 * KVM_CPUID_FEATURES (0x40000001) EAX bits served by KVM's local APIC (Documentation/virt/kvm/
 * x86/cpuid.rst): PV EOI (6), PV unhalt (7), PV IPIs (11), PV sched-yield (13), async page
 * faults by interrupt (14).
 */
const KVM_FEATURES_NEEDING_KVM_APIC = (1 << 6) | (1 << 7) | (1 << 11) | (1 << 13) | (1 << 14);

/** Entries a struct kvm_cpuid2 read starts with (KVM supports about 80 here), and the most it grows to. */
const FIRST_CPUID2_CAPACITY = 128;
const MAX_CPUID2_CAPACITY = 4096;
const { E2BIG } = constants.errno;

/** KVM_GET_SUPPORTED_CPUID on /dev/kvm: every leaf KVM can show a guest, with every feature it can support. */
export function readSupportedCpuid(): CpuidEntry[] {
  const system = check(addon.open(KVM_DEVICE_PATH, O_RDWR | O_CLOEXEC), `open ${KVM_DEVICE_PATH}`);
  try {
    return readCpuid2((bytes) => addon.ioctl(system, KvmIoctl.GET_SUPPORTED_CPUID, bytes), 'KVM_GET_SUPPORTED_CPUID');
  } finally {
    addon.close(system);
  }
}

let supportedOnThisThread: readonly CpuidEntry[] | undefined;

/** `readSupportedCpuid()`, read once per thread (it does not change while the host runs). */
export function supportedCpuid(): readonly CpuidEntry[] {
  supportedOnThisThread ??= readSupportedCpuid();
  return supportedOnThisThread;
}

/** The entry for `leaf` (and `subleaf`, where the entry says its subleaf matters). */
export function findCpuid(table: readonly CpuidEntry[], leaf: number, subleaf = 0): CpuidEntry | undefined {
  return table.find((entry) => entry.leaf === leaf && ((entry.flags & KVM_CPUID_FLAG_SIGNIFCANT_INDEX) === 0 || entry.subleaf === subleaf));
}

/** The bits that number `vcpuCount` IDs: x2APIC IDs of one package's cores, and the shift to the package level. */
export function coreIdBits(vcpuCount: number): number {
  return vcpuCount <= 1 ? 0 : Math.ceil(Math.log2(vcpuCount));
}

/** One vCPU's table: `supported` (not changed) with the bits, IDs and topology the file's comment lists. */
export function vcpuCpuidTable(supported: readonly CpuidEntry[], options: VcpuCpuidOptions): CpuidEntry[] {
  checkRange(options.vcpuCount, 1, MAX_CPUID_VCPUS, 'vCPU count');
  checkRange(options.vcpuId, 0, options.vcpuCount - 1, 'vCPU id');
  const topology = { ...options, idBits: coreIdBits(options.vcpuCount) };
  const table: CpuidEntry[] = [];
  for (const entry of supported) {
    // Both topology leaves are rebuilt whole below: the host's subleaves describe the host.
    if (entry.leaf === Leaf.ExtendedTopology || entry.leaf === Leaf.ExtendedTopologyV2) continue;
    table.push(adjustEntry(entry, topology));
  }
  for (const leaf of [Leaf.ExtendedTopology, Leaf.ExtendedTopologyV2]) {
    if (supported.some((entry) => entry.leaf === leaf)) table.push(...topologyLeaf(leaf, topology));
  }
  return table;
}

/** KVM_SET_CPUID2: call it on the vCPU's thread before the vCPU first runs. */
export function setVcpuCpuid(vcpu: KvmVcpu, table: readonly CpuidEntry[]): void {
  vcpu.ioctl(KvmIoctl.SET_CPUID2, encodeCpuid2(table), 'KVM_SET_CPUID2');
}

/** KVM_GET_CPUID2: the table the vCPU has (as KVM keeps it: bits it maintains itself, like OSXSAVE, may differ). */
export function getVcpuCpuid(vcpu: KvmVcpu): CpuidEntry[] {
  return readCpuid2((bytes) => addon.ioctl(vcpu.fd, KvmIoctl.GET_CPUID2, bytes), 'KVM_GET_CPUID2');
}

/** struct kvm_cpuid2 holding `table`. */
export function encodeCpuid2(table: readonly CpuidEntry[]): Uint8Array {
  const bytes = cpuid2Buffer(table.length);
  const view = new DataView(bytes.buffer);
  table.forEach((entry, index) => {
    const at = KVM_CPUID2_HEADER_BYTES + index * KVM_CPUID_ENTRY2_BYTES;
    view.setUint32(at + KvmCpuidEntryLayout.FUNCTION, entry.leaf, true);
    view.setUint32(at + KvmCpuidEntryLayout.INDEX, entry.subleaf, true);
    view.setUint32(at + KvmCpuidEntryLayout.FLAGS, entry.flags, true);
    view.setUint32(at + KvmCpuidEntryLayout.EAX, entry.eax, true);
    view.setUint32(at + KvmCpuidEntryLayout.EBX, entry.ebx, true);
    view.setUint32(at + KvmCpuidEntryLayout.ECX, entry.ecx, true);
    view.setUint32(at + KvmCpuidEntryLayout.EDX, entry.edx, true);
  });
  return bytes;
}

/** The entries of a struct kvm_cpuid2 (its `nent` of them). */
export function decodeCpuid2(bytes: Uint8Array): CpuidEntry[] {
  const view = new DataView(bytes.buffer, bytes.byteOffset, bytes.byteLength);
  const count = view.getUint32(0, true);
  if (KVM_CPUID2_HEADER_BYTES + count * KVM_CPUID_ENTRY2_BYTES > bytes.byteLength) throw new IrqChipError(ErrorCode.EFAULT, `kvm_cpuid2 claims ${count} entries in ${bytes.byteLength} bytes`);
  const table: CpuidEntry[] = [];
  for (let index = 0; index < count; index++) {
    const at = KVM_CPUID2_HEADER_BYTES + index * KVM_CPUID_ENTRY2_BYTES;
    table.push({
      leaf: view.getUint32(at + KvmCpuidEntryLayout.FUNCTION, true),
      subleaf: view.getUint32(at + KvmCpuidEntryLayout.INDEX, true),
      flags: view.getUint32(at + KvmCpuidEntryLayout.FLAGS, true),
      eax: view.getUint32(at + KvmCpuidEntryLayout.EAX, true),
      ebx: view.getUint32(at + KvmCpuidEntryLayout.EBX, true),
      ecx: view.getUint32(at + KvmCpuidEntryLayout.ECX, true),
      edx: view.getUint32(at + KvmCpuidEntryLayout.EDX, true),
    });
  }
  return table;
}

// ---------------------------------------------------------------------------------------------

interface Topology extends VcpuCpuidOptions {
  /** `coreIdBits(vcpuCount)`. */
  readonly idBits: number;
}

/**
 * A table read with `ioctl` into a struct kvm_cpuid2, which KVM answers with E2BIG until the
 * buffer holds every entry: the buffer grows until it does.
 */
function readCpuid2(ioctl: (bytes: Uint8Array) => number, operation: string): CpuidEntry[] {
  for (let capacity = FIRST_CPUID2_CAPACITY; capacity <= MAX_CPUID2_CAPACITY; capacity *= 2) {
    const bytes = cpuid2Buffer(capacity);
    const result = ioctl(bytes);
    if (result === -E2BIG) continue;
    check(result, operation);
    return decodeCpuid2(bytes);
  }
  throw systemError(E2BIG, `${operation} with ${MAX_CPUID2_CAPACITY} entries`);
}

/** A struct kvm_cpuid2 with room for `capacity` entries, its nent set to it. */
function cpuid2Buffer(capacity: number): Uint8Array {
  const bytes = new Uint8Array(KVM_CPUID2_HEADER_BYTES + capacity * KVM_CPUID_ENTRY2_BYTES);
  new DataView(bytes.buffer).setUint32(0, capacity, true);
  return bytes;
}

function adjustEntry(entry: CpuidEntry, topology: Topology): CpuidEntry {
  const { vcpuId, vcpuCount, idBits } = topology;
  switch (entry.leaf) {
    case Leaf.Features: {
      const multiple = vcpuCount > 1;
      const logicalIds = multiple ? Math.min(1 << idBits, LEAF1_LOGICAL_COUNT_MAX) : 0;
      return {
        ...entry,
        ebx: ((entry.ebx & LEAF1_EBX_KEPT) | (logicalIds << LEAF1_LOGICAL_COUNT_SHIFT) | (vcpuId << LEAF1_APIC_ID_SHIFT)) >>> 0,
        ecx: (entry.ecx | Leaf1.ECX_X2APIC | Leaf1.ECX_TSC_DEADLINE | Leaf1.ECX_HYPERVISOR) >>> 0,
        edx: (((entry.edx | Leaf1.EDX_APIC) & ~Leaf1.EDX_HTT) | (multiple ? Leaf1.EDX_HTT : 0)) >>> 0,
      };
    }
    case Leaf.CacheParameters: {
      if ((entry.eax & CACHE_TYPE_MASK) === 0) return entry;
      const coreIds = Math.min(1 << idBits, CACHE_CORES_MASK + 1) - 1;
      return { ...entry, eax: ((withCacheSharing(entry.eax, idBits) & ~(CACHE_CORES_MASK << CACHE_CORES_SHIFT)) | (coreIds << CACHE_CORES_SHIFT)) >>> 0 };
    }
    case Leaf.AmdCacheTopology:
      return (entry.eax & CACHE_TYPE_MASK) === 0 ? entry : { ...entry, eax: withCacheSharing(entry.eax, idBits) };
    case Leaf.AmdAddressSizes: {
      const cores = ((idBits & AMD_APIC_ID_SIZE_MASK) << AMD_APIC_ID_SIZE_SHIFT) | ((vcpuCount - 1) & AMD_CORE_COUNT_MASK);
      return { ...entry, ecx: ((entry.ecx & ~((AMD_APIC_ID_SIZE_MASK << AMD_APIC_ID_SIZE_SHIFT) | AMD_CORE_COUNT_MASK)) | cores) >>> 0 };
    }
    case Leaf.AmdProcessorTopology:
      // EAX the extended APIC ID; EBX core ID, one thread per core (EBX[15:8] = 0); ECX node 0 of 1.
      return { ...entry, eax: vcpuId, ebx: vcpuId & AMD_CORE_ID_MASK, ecx: 0, edx: 0 };
    case Leaf.KvmFeatures:
      return topology.userspaceLocalApic === true ? { ...entry, eax: (entry.eax & ~KVM_FEATURES_NEEDING_KVM_APIC) >>> 0 } : entry;
    default:
      return entry;
  }
}

/** A cache leaf's EAX with its sharing field set: L1 and L2 one core's own, L3 every core's. */
function withCacheSharing(eax: number, idBits: number): number {
  const level = (eax >>> CACHE_LEVEL_SHIFT) & CACHE_LEVEL_MASK;
  const sharingIds = level <= LAST_PRIVATE_CACHE_LEVEL ? 0 : Math.min(1 << idBits, CACHE_SHARING_MASK + 1) - 1;
  return ((eax & ~(CACHE_SHARING_MASK << CACHE_SHARING_SHIFT)) | (sharingIds << CACHE_SHARING_SHIFT)) >>> 0;
}

/**
 * Leaf 0xB or 0x1F: subleaf 0 the SMT level (shift 0: one thread per core), subleaf 1 the core
 * level (shift `idBits`, `vcpuCount` cores), subleaf 2 the invalid level that ends the list
 * (EAX = EBX = 0, ECX = its index). EDX is the x2APIC ID in every subleaf.
 */
function topologyLeaf(leaf: number, { vcpuId, vcpuCount, idBits }: Topology): CpuidEntry[] {
  const subleaf = (index: number, shift: number, count: number, levelType: number): CpuidEntry => ({
    leaf,
    subleaf: index,
    flags: KVM_CPUID_FLAG_SIGNIFCANT_INDEX,
    eax: shift,
    ebx: count,
    ecx: (levelType << TOPOLOGY_LEVEL_TYPE_SHIFT) | index,
    edx: vcpuId,
  });
  return [subleaf(0, 0, 1, TOPOLOGY_LEVEL_SMT), subleaf(1, idBits, vcpuCount, TOPOLOGY_LEVEL_CORE), subleaf(2, 0, 0, 0)];
}
