/**
 * A vCPU's CPUID table (kvm-cpuid.ts): built from a supported set, with the IDs, features and
 * topology the module promises, for any vCPU of any count; encoded as struct kvm_cpuid2; and on
 * real KVM, read from /dev/kvm, applied with KVM_SET_CPUID2 and read back with KVM_GET_CPUID2 —
 * where this PVM host adds its own instruction-set features, proved here. (What a guest's CPUID
 * instruction returns is chip-modes.test.ts's.)
 */
import assert from 'node:assert/strict';
import { describe, test } from 'node:test';
import fc from 'fast-check';
import { ErrorCode, IrqChipError } from '../base/errors.ts';
import { KVM_CPUID_FLAG_SIGNIFCANT_INDEX } from './kvm-abi.ts';
import {
  MAX_CPUID_VCPUS,
  coreIdBits,
  decodeCpuid2,
  encodeCpuid2,
  findCpuid,
  getVcpuCpuid,
  readSupportedCpuid,
  setVcpuCpuid,
  supportedCpuid,
  vcpuCpuidTable,
  type CpuidEntry,
} from './kvm-cpuid.ts';
import { kvmSkipReason } from './kvm-test-support.ts';
import { KvmVcpu } from './kvm-vcpu.ts';
import { KvmVm } from './kvm-vm.ts';
import { isPvmHost } from './probe-machine.ts';

const skip = kvmSkipReason('CPUID on real KVM');

const ECX_X2APIC = 1 << 21;
const ECX_TSC_DEADLINE = 1 << 24;
const ECX_HYPERVISOR = (1 << 31) >>> 0;
const EDX_APIC = 1 << 9;
const EDX_HTT = 1 << 28;
/** KVM_CPUID_FEATURES bits served by KVM's local APIC: PV EOI, PV unhalt, PV IPIs, PV sched-yield, async PF by interrupt. */
const KVM_APIC_PV_FEATURES = (1 << 6) | (1 << 7) | (1 << 11) | (1 << 13) | (1 << 14);
/** Other KVM_CPUID_FEATURES bits: clocksource (0), NOP IO delay (1), clocksource2 (3), steal time (5), stable bit (24). */
const OTHER_PV_FEATURES = (1 << 0) | (1 << 1) | (1 << 3) | (1 << 5) | (1 << 24);

function entry(leaf: number, registers: Partial<Omit<CpuidEntry, 'leaf'>> = {}): CpuidEntry {
  return { leaf, subleaf: 0, flags: 0, eax: 0, ebx: 0, ecx: 0, edx: 0, ...registers };
}

/** A cache subleaf: type (1 data, 2 instruction, 3 unified, 0 none) and level, with sharing bits the table must replace. */
function cache(leaf: number, subleaf: number, type: number, level: number): CpuidEntry {
  const hostSharing = 0x7 << 14;
  const hostCores = 0x3 << 26;
  return entry(leaf, { subleaf, flags: KVM_CPUID_FLAG_SIGNIFCANT_INDEX, eax: (type | (level << 5) | hostSharing | hostCores) >>> 0, ebx: 0x1c0003f });
}

/**
 * A supported set with every leaf the table changes, carrying the host's values there: APIC ID
 * 5 and 16 logical processors in leaf 1, the host's topology in 0xB and 0x1F, its caches in 4 and
 * 0x8000001D, its core count in 0x80000008, and every KVM paravirtual feature.
 */
const SUPPORTED: readonly CpuidEntry[] = [
  entry(0x0, { eax: 0x1f, ebx: 0x756e6547 }),
  entry(0x1, { eax: 0xa10f11, ebx: 0x05100800, ecx: 0x00000001, edx: 0x078bfbff }),
  cache(0x4, 0, 1, 1),
  cache(0x4, 1, 2, 1),
  cache(0x4, 2, 3, 2),
  cache(0x4, 3, 3, 3),
  entry(0x4, { subleaf: 4, flags: KVM_CPUID_FLAG_SIGNIFCANT_INDEX }),
  entry(0xb, { subleaf: 0, flags: KVM_CPUID_FLAG_SIGNIFCANT_INDEX, eax: 1, ebx: 2, ecx: 0x100, edx: 5 }),
  entry(0xb, { subleaf: 1, flags: KVM_CPUID_FLAG_SIGNIFCANT_INDEX, eax: 4, ebx: 16, ecx: 0x201, edx: 5 }),
  entry(0xb, { subleaf: 2, flags: KVM_CPUID_FLAG_SIGNIFCANT_INDEX, ecx: 2, edx: 5 }),
  entry(0x1f, { subleaf: 0, flags: KVM_CPUID_FLAG_SIGNIFCANT_INDEX, eax: 1, ebx: 2, ecx: 0x100, edx: 5 }),
  entry(0x40000000, { eax: 0x40000001, ebx: 0x4b4d564b }),
  entry(0x40000001, { eax: (KVM_APIC_PV_FEATURES | OTHER_PV_FEATURES) >>> 0 }),
  entry(0x80000008, { eax: 0x3030, ecx: 0x7001 }),
  cache(0x8000001d, 0, 1, 1),
  cache(0x8000001d, 1, 3, 3),
  entry(0x8000001d, { subleaf: 2, flags: KVM_CPUID_FLAG_SIGNIFCANT_INDEX }),
  entry(0x8000001e),
];

function leafOf(table: readonly CpuidEntry[], leaf: number, subleaf = 0): CpuidEntry {
  const found = findCpuid(table, leaf, subleaf);
  assert.ok(found !== undefined, `leaf 0x${leaf.toString(16)}.${subleaf} is in the table`);
  return found;
}

function isEinval(error: unknown): boolean {
  return error instanceof IrqChipError && error.code === ErrorCode.EINVAL;
}

describe('vcpuCpuidTable', () => {
  test('leaf 1: the initial APIC ID is the vCPU id; APIC, x2APIC, TSC-deadline and hypervisor are set; HTT and the addressable-ID count only with more than one vCPU', () => {
    const single = leafOf(vcpuCpuidTable(SUPPORTED, { vcpuId: 0, vcpuCount: 1 }), 0x1);
    assert.equal(single.ebx >>> 24, 0);
    assert.equal((single.ebx >>> 16) & 0xff, 0);
    assert.equal(single.ebx & 0xffff, 0x0800, 'the CLFLUSH size and brand index are KVM\'s');
    assert.equal(single.edx & EDX_HTT, 0);
    const third = leafOf(vcpuCpuidTable(SUPPORTED, { vcpuId: 2, vcpuCount: 3 }), 0x1);
    assert.equal(third.ebx >>> 24, 2);
    assert.equal((third.ebx >>> 16) & 0xff, 4, 'IDs for 3 cores: the next power of two');
    assert.equal(third.edx & EDX_HTT, EDX_HTT);
    for (const leaf1 of [single, third]) {
      assert.equal((leaf1.ecx & (ECX_X2APIC | ECX_TSC_DEADLINE | ECX_HYPERVISOR)) >>> 0, (ECX_X2APIC | ECX_TSC_DEADLINE | ECX_HYPERVISOR) >>> 0);
      assert.equal(leaf1.ecx & 1, 1, "KVM's other features stay");
      assert.equal(leaf1.edx & EDX_APIC, EDX_APIC);
      assert.equal(leaf1.eax, 0xa10f11);
    }
  });

  test("leaves 0xB and 0x1F are rebuilt: one thread per core, one core per vCPU, the x2APIC ID in every subleaf; the host's subleaves are gone", () => {
    const table = vcpuCpuidTable(SUPPORTED, { vcpuId: 5, vcpuCount: 6 });
    for (const leaf of [0xb, 0x1f]) {
      const subleaves = table.filter((candidate) => candidate.leaf === leaf);
      assert.deepEqual(
        subleaves.map(({ subleaf, flags, eax, ebx, ecx, edx }) => [subleaf, flags, eax, ebx, ecx, edx]),
        [
          [0, KVM_CPUID_FLAG_SIGNIFCANT_INDEX, 0, 1, 0x100, 5],
          [1, KVM_CPUID_FLAG_SIGNIFCANT_INDEX, 3, 6, 0x201, 5],
          [2, KVM_CPUID_FLAG_SIGNIFCANT_INDEX, 0, 0, 0x002, 5],
        ],
      );
    }
  });

  test('cache leaves: L1 and L2 are a core\'s own, L3 is shared by every core; leaf 4 counts the package\'s core IDs; the terminating subleaf is untouched', () => {
    const table = vcpuCpuidTable(SUPPORTED, { vcpuId: 1, vcpuCount: 5 });
    const sharing = (found: CpuidEntry): number => (found.eax >>> 14) & 0xfff;
    assert.deepEqual([0, 1, 2, 3].map((subleaf) => sharing(leafOf(table, 0x4, subleaf))), [0, 0, 0, 7]);
    assert.deepEqual([0, 1, 2, 3].map((subleaf) => leafOf(table, 0x4, subleaf).eax >>> 26), [7, 7, 7, 7]);
    assert.deepEqual([0, 1].map((subleaf) => sharing(leafOf(table, 0x8000001d, subleaf))), [0, 7]);
    assert.deepEqual(leafOf(table, 0x4, 4), leafOf(SUPPORTED, 0x4, 4));
    assert.deepEqual(leafOf(table, 0x8000001d, 2), leafOf(SUPPORTED, 0x8000001d, 2));
    for (const leaf of [0x4, 0x8000001d]) assert.equal(leafOf(table, leaf, 0).ebx, 0x1c0003f, 'the cache geometry is the host\'s');
  });

  test("AMD leaves: 0x80000008 has the core count and the core ID bits, 0x8000001E the vCPU's extended APIC ID and core ID", () => {
    const table = vcpuCpuidTable(SUPPORTED, { vcpuId: 3, vcpuCount: 4 });
    const sizes = leafOf(table, 0x80000008);
    assert.equal(sizes.ecx & 0xff, 3, 'NC: cores − 1');
    assert.equal((sizes.ecx >>> 12) & 0xf, 2, 'ApicIdSize: 2 bits number 4 cores');
    assert.equal(sizes.eax, 0x3030, 'address sizes are KVM\'s');
    assert.deepEqual(leafOf(table, 0x8000001e), entry(0x8000001e, { eax: 3, ebx: 3 }));
  });

  test("KVM's paravirtual features that need KVM's local APIC are withdrawn only when the local APIC is ours", () => {
    const kernel = leafOf(vcpuCpuidTable(SUPPORTED, { vcpuId: 0, vcpuCount: 1 }), 0x40000001);
    assert.equal(kernel.eax, (KVM_APIC_PV_FEATURES | OTHER_PV_FEATURES) >>> 0);
    const ours = leafOf(vcpuCpuidTable(SUPPORTED, { vcpuId: 0, vcpuCount: 1, userspaceLocalApic: true }), 0x40000001);
    assert.equal(ours.eax, OTHER_PV_FEATURES);
  });

  test('every other leaf is passed through, in order, and the supported set is not changed', () => {
    const before = structuredClone(SUPPORTED);
    const table = vcpuCpuidTable(SUPPORTED, { vcpuId: 1, vcpuCount: 2 });
    assert.deepEqual(SUPPORTED, before);
    assert.deepEqual(leafOf(table, 0x0), leafOf(SUPPORTED, 0x0));
    assert.deepEqual(leafOf(table, 0x40000000), leafOf(SUPPORTED, 0x40000000));
    assert.equal(table.length, SUPPORTED.length - 4 + 6, 'the host\'s 3 + 1 topology subleaves became 3 + 3');
  });

  test('property: for any vCPU count up to 255 and any of its vCPUs, the IDs and the topology agree', () => {
    fc.assert(
      fc.property(
        fc.integer({ min: 1, max: MAX_CPUID_VCPUS }).chain((vcpuCount) => fc.tuple(fc.constant(vcpuCount), fc.integer({ min: 0, max: vcpuCount - 1 }))),
        ([vcpuCount, vcpuId]) => {
          const table = vcpuCpuidTable(SUPPORTED, { vcpuId, vcpuCount });
          const bits = coreIdBits(vcpuCount);
          assert.ok(2 ** bits >= vcpuCount && (bits === 0 || 2 ** (bits - 1) < vcpuCount), 'the fewest bits that number every vCPU');
          assert.equal(leafOf(table, 0x1).ebx >>> 24, vcpuId);
          const core = leafOf(table, 0xb, 1);
          assert.deepEqual([core.eax, core.ebx, core.edx], [bits, vcpuCount, vcpuId]);
          assert.ok(vcpuId >>> core.eax === 0, 'the x2APIC ID shifted by the core level leaves the package ID 0');
          assert.equal(leafOf(table, 0x8000001e).eax, vcpuId);
          assert.equal(leafOf(table, 0x80000008).ecx & 0xff, vcpuCount - 1);
        },
      ),
      { numRuns: 500 },
    );
  });

  test('caller mistakes throw EINVAL: a vCPU count of 0 or above 255, a vCPU id outside the count', () => {
    for (const options of [
      { vcpuId: 0, vcpuCount: 0 },
      { vcpuId: 0, vcpuCount: MAX_CPUID_VCPUS + 1 },
      { vcpuId: 2, vcpuCount: 2 },
      { vcpuId: -1, vcpuCount: 2 },
      { vcpuId: 0.5, vcpuCount: 2 },
    ]) {
      assert.throws(() => vcpuCpuidTable(SUPPORTED, options), isEinval, JSON.stringify(options));
    }
  });
});

describe('struct kvm_cpuid2', () => {
  test('encodeCpuid2 and decodeCpuid2 are inverses', () => {
    assert.deepEqual(decodeCpuid2(encodeCpuid2(SUPPORTED)), SUPPORTED);
    assert.deepEqual(decodeCpuid2(encodeCpuid2([])), []);
  });

  test('a kvm_cpuid2 whose nent claims more entries than its bytes hold is refused (EFAULT)', () => {
    const bytes = encodeCpuid2(SUPPORTED.slice(0, 2));
    new DataView(bytes.buffer).setUint32(0, 3, true);
    assert.throws(
      () => decodeCpuid2(bytes),
      (error: unknown) => error instanceof IrqChipError && error.code === ErrorCode.EFAULT,
    );
  });
});

describe('CPUID on KVM', { skip }, () => {
  test('KVM_GET_SUPPORTED_CPUID on /dev/kvm has the basic, feature and KVM leaves; supportedCpuid() reads it once per thread', () => {
    const supported = readSupportedCpuid();
    assert.ok(findCpuid(supported, 0x0) !== undefined);
    assert.ok(findCpuid(supported, 0x1) !== undefined);
    assert.ok(findCpuid(supported, 0x40000000) !== undefined);
    assert.deepEqual(supportedCpuid(), supported);
    assert.equal(supportedCpuid(), supportedCpuid());
  });

  test(`KVM_SET_CPUID2 then KVM_GET_CPUID2: every leaf comes back, the IDs, topology, cache sharing and paravirtual features exactly, leaf 1's feature bits kept${isPvmHost() ? "; this PVM host puts its own instruction-set features in CPUID.1:ECX" : ''}`, () => {
    const vm = KvmVm.create({ memoryBytes: 0x10000 });
    const vcpu = KvmVcpu.create(vm, 2);
    try {
      const table = vcpuCpuidTable(supportedCpuid(), { vcpuId: 2, vcpuCount: 3 });
      setVcpuCpuid(vcpu, table);
      const applied = getVcpuCpuid(vcpu);
      assert.deepEqual(
        applied.map(({ leaf, subleaf }) => [leaf, subleaf]),
        table.map(({ leaf, subleaf }) => [leaf, subleaf]),
      );
      const exactly = (leaf: number, subleaf = 0): void => {
        if (findCpuid(table, leaf, subleaf) !== undefined) assert.deepEqual(leafOf(applied, leaf, subleaf), leafOf(table, leaf, subleaf), `leaf 0x${leaf.toString(16)}.${subleaf}`);
      };
      for (const subleaf of [0, 1, 2]) {
        exactly(0xb, subleaf);
        exactly(0x1f, subleaf);
      }
      for (const leaf of [0x40000000, 0x40000001, 0x8000001e]) exactly(leaf);
      for (const wanted of table.filter(({ leaf }) => leaf === 0x4 || leaf === 0x8000001d)) exactly(wanted.leaf, wanted.subleaf);
      const [set, got] = [leafOf(table, 0x1), leafOf(applied, 0x1)];
      assert.equal(got.ebx, set.ebx, 'CPUID.1:EBX: the APIC ID and the ID count');
      assert.equal((got.ecx & set.ecx) >>> 0, set.ecx, 'CPUID.1:ECX keeps every bit set (x2APIC, TSC-deadline, hypervisor among them)');
      assert.equal(got.edx & (EDX_APIC | EDX_HTT), set.edx & (EDX_APIC | EDX_HTT));
      const added = (got.ecx & ~set.ecx) >>> 0;
      if (isPvmHost()) assert.notEqual(added, 0, 'PVM put features KVM_GET_SUPPORTED_CPUID does not list in CPUID.1:ECX');
      else assert.equal(added, 0);
    } finally {
      vcpu.close();
      vm.close();
    }
  });
});
