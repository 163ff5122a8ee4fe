/**
 * The apic-base guest (guests/apic-base.c) on KVM in every chip mode: the local APIC's page
 * follows IA32_APIC_BASE and a disabled APIC stops decoding it. The guest checks what it sees; the
 * VMM side shows where each access that reached no APIC ended, which tells the mechanisms apart:
 *
 * - userspace chip (our LocalApic): every access to an APIC page exits (no APIC in the kernel).
 *   The vCPU loop asks the vCPU's APIC first (`LocalApic.decodesMmio`), then the bus. The 5
 *   accesses at 0xFEE00000 while the page is not there (moved away, disabled, x2APIC mode) reach
 *   the default window, which counts them on the APIC (`ignoredAccesses`); the read and write at
 *   the disabled APIC's own base reach the bus, which finds nothing (unclaimed).
 * - kernel and split chips (KVM's local APIC): KVM decodes the moved page in the kernel
 *   (lapic.c `apic_mmio_in_range` on `apic->base_address`, which `kvm_apic_set_base` updates), and
 *   an access outside it exits to us. Exactly 4 MMIO exits reach userspace: the 2 reads and 1 write
 *   at the old page while moved, and the read at 0xFEE00000 while disabled. The disabled APIC's own
 *   page answers in the kernel without an exit: reads all ones, writes dropped (lapic.c
 *   `apic_mmio_read`/`apic_mmio_write` under KVM_X86_QUIRK_LAPIC_MMIO_HOLE, on by default); so does
 *   the page in x2APIC mode. So the guest sees the same values as with our APIC, but KVM absorbs the
 *   undecoded accesses at the base itself. Measured on this PVM host: no difference from upstream KVM.
 *
 * The base's width: KVM refuses IA32_APIC_BASE bits at or above the guest's MAXPHYADDR, even for a
 * host-initiated KVM_SET_MSRS: CPUID.80000008H:EAX[7:0] (48 on this host), or 36 when the vCPU's
 * CPUID has no such leaf (KVM's cpuid_query_maxphyaddr default, the SDM §4.1.4 value for a CPU with
 * PAE). Our LocalApic takes MAXPHYADDR as `physicalAddressBits` and accepts exactly the same bases.
 */
import assert from 'node:assert/strict';
import { before, describe, test } from 'node:test';
import { VirtualClock } from '../base/clock.ts';
import { ErrorCode, IrqChipError } from '../base/errors.ts';
import { MSR_IA32_APIC_BASE } from '../x86/lapic/apic-registers.ts';
import { LocalApic } from '../x86/lapic/local-apic.ts';
import { APIC_BASE_MOVED_ADDRESS, runApicBaseGuest, type ApicBaseRun } from './apic-base-guest.ts';
import { CHIP_MODES, createModeChip, type ChipMode } from './chip-mode.ts';
import { findCpuid, setVcpuCpuid, supportedCpuid, vcpuCpuidTable } from './kvm-cpuid.ts';
import { kvmSkipReason } from './kvm-test-support.ts';
import { KvmVcpu } from './kvm-vcpu.ts';
import { KvmVm } from './kvm-vm.ts';

const skip = kvmSkipReason('IA32_APIC_BASE on KVM');

const DEFAULT_BASE = 0xfee00000;
const ALL_ONES = 0xffffffff;
/** IA32_APIC_BASE bits (SDM Figure 11-5): BSP, EXTD, EN. */
const BSP = 0x100;
const EXTD = 0x400;
const ENABLE = 0x800;
/** The guest's accesses that reach no APIC (guests/apic-base.c header): 2 reads and 1 write at the old page while moved. */
const OLD_PAGE_READS = 2;
const OLD_PAGE_WRITES = 1;
/** With EN = 0: 1 read and 1 write at the moved base, 1 read at the default base. */
const DISABLED_BASE_READS = 1;
const DISABLED_BASE_WRITES = 1;
const DISABLED_DEFAULT_READS = 1;
/** In x2APIC mode (the fixture's CPUID offers it): 1 read at the default base. */
const X2APIC_DEFAULT_READS = 1;

/** What every chip mode must show the guest: its own checks passed, with these values. */
function assertGuestSawThePageMove(run: ApicBaseRun): void {
  const { results } = run;
  assert.equal(run.debugExit, 0, `the guest's check ${run.debugExit} failed; it saw ${JSON.stringify(results)}`);
  assert.equal(results.initialBaseLow, (DEFAULT_BASE | ENABLE | BSP) >>> 0);
  assert.equal(results.movedBaseLow, (APIC_BASE_MOVED_ADDRESS | ENABLE | BSP) >>> 0);
  assert.equal(results.movedBaseHigh, 0);
  assert.deepEqual([results.movedId, results.movedVersion], [results.defaultId, results.defaultVersion], 'the same registers at the new page');
  assert.deepEqual([results.oldPageId, results.oldPageVersion], [ALL_ONES, ALL_ONES], 'nothing at the old page');
  assert.equal(results.movedSvrAfterOldWrite, 0x1ff, 'a write at the old page reached no APIC');
  assert.equal(results.selfIpisTaken, 1);
  assert.equal(run.interruptReports, 1, 'the self-IPI sent through the moved ICR ran its handler once');
  assert.deepEqual([results.isrAfterEoi, results.irrAfterEoi], [0, 0]);
  assert.equal(results.disabledBaseLow, (APIC_BASE_MOVED_ADDRESS | BSP) >>> 0, 'EN = 0 keeps the base');
  assert.deepEqual([results.disabledMovedPage, results.disabledDefaultPage], [ALL_ONES, ALL_ONES]);
  assert.equal(results.reenabledVersion, results.defaultVersion);
  assert.equal(results.x2apicTested, 1, "the vCPU's CPUID offers x2APIC");
  assert.deepEqual([results.x2apicPage, results.x2apicMsrVersion], [ALL_ONES, results.defaultVersion], 'in x2APIC mode the page is gone, the MSRs answer');
}

for (const mode of CHIP_MODES) {
  describe(`${mode} chip on KVM: the local APIC page follows IA32_APIC_BASE`, { skip }, () => {
    let run: ApicBaseRun;
    before(async () => {
      run = await runApicBaseGuest(mode);
    });

    test('the guest moves its page, finds its registers there and nothing at the old page, takes a self-IPI through it, disables and re-enables it', () => {
      assertGuestSawThePageMove(run);
    });

    test(whereAccessesEndedTitle(mode), () => {
      if (mode === 'userspace') {
        assert.deepEqual(
          { ignoredAccesses: run.localApic?.ignoredAccesses, unclaimedReads: run.unclaimedReads, unclaimedWrites: run.unclaimedWrites },
          {
            ignoredAccesses: OLD_PAGE_READS + OLD_PAGE_WRITES + DISABLED_DEFAULT_READS + X2APIC_DEFAULT_READS,
            unclaimedReads: DISABLED_BASE_READS,
            unclaimedWrites: DISABLED_BASE_WRITES,
          },
        );
        assert.equal(run.localApic?.apicBase, BigInt((DEFAULT_BASE | ENABLE | EXTD | BSP) >>> 0), 'x2APIC mode at the default base');
      } else {
        assert.deepEqual(
          { mmioExits: run.mmioExits, unclaimedReads: run.unclaimedReads, unclaimedWrites: run.unclaimedWrites },
          {
            mmioExits: OLD_PAGE_READS + OLD_PAGE_WRITES + DISABLED_DEFAULT_READS,
            unclaimedReads: OLD_PAGE_READS + DISABLED_DEFAULT_READS,
            unclaimedWrites: OLD_PAGE_WRITES,
          },
          'KVM answered its undecoded page at its own base in the kernel (LAPIC_MMIO_HOLE): disabled, and in x2APIC mode; only accesses outside its page exited',
        );
      }
    });
  });
}

function whereAccessesEndedTitle(mode: ChipMode): string {
  return mode === 'userspace'
    ? 'our APIC: the accesses at the default page while it is elsewhere, off or in x2APIC mode are counted by the APIC; at the disabled base, by the bus as unclaimed'
    : "KVM's APIC: only the accesses outside its current page exit to us (4); at its own base, disabled or in x2APIC mode, the kernel answers all ones";
}

/** MAXPHYADDR of a KVM guest whose CPUID has no leaf 0x80000008 (KVM's cpuid_query_maxphyaddr). */
const KVM_DEFAULT_PHYSICAL_ADDRESS_BITS = 36;
/** CPUID.80000008H:EAX[7:0]: MAXPHYADDR (SDM vol. 2A, CPUID). */
const ADDRESS_SIZES_LEAF = 0x80000008;
const PHYSICAL_ADDRESS_BITS_MASK = 0xff;
/** The address bits a base can have: 12 (4 KiB pages) up to 51 (MAXPHYADDR ≤ 52), and bit 52 beyond. */
const BASE_BITS = Array.from({ length: 41 }, (_, index) => 12 + index);

/** Whether `write` takes the value (EINVAL: refused). */
function accepts(write: () => void): boolean {
  try {
    write();
    return true;
  } catch (error) {
    if (error instanceof IrqChipError && error.code === ErrorCode.EINVAL) return false;
    throw error;
  }
}

/**
 * Offers IA32_APIC_BASE values with each of BASE_BITS set to KVM's local APIC (host-initiated
 * KVM_SET_MSRS) and to our LocalApic with `physicalAddressBits`; returns the bits they disagree on
 * and the first bit KVM refuses.
 */
function compareBaseWidths(vcpu: KvmVcpu, physicalAddressBits: number): { readonly disagreements: number[]; readonly firstRefused: number | undefined } {
  const ours = LocalApic.create({ busIndex: 0, bsp: true, clock: new VirtualClock(), physicalAddressBits });
  const reset = vcpu.getMsr(MSR_IA32_APIC_BASE);
  assert.equal(reset, ours.apicBase(), 'both at RESET');
  const verdicts = BASE_BITS.map((bit) => {
    const value = reset | (1n << BigInt(bit));
    return {
      bit,
      kvm: accepts(() => {
        vcpu.setMsr(MSR_IA32_APIC_BASE, value);
      }),
      ours: accepts(() => {
        ours.setApicBase(value);
      }),
    };
  });
  return { disagreements: verdicts.filter((verdict) => verdict.kvm !== verdict.ours).map(({ bit }) => bit), firstRefused: verdicts.find(({ kvm }) => !kvm)?.bit };
}

/** Runs `body` on vCPU 0 of a new VM with the chip of `mode` (the vCPU never runs). */
function withVcpu(mode: ChipMode, body: (vcpu: KvmVcpu) => void): void {
  const vm = KvmVm.create({ memoryBytes: 1 << 20 });
  try {
    createModeChip(vm, mode, { vcpuCount: 1 });
    const vcpu = KvmVcpu.create(vm, 0);
    try {
      body(vcpu);
    } finally {
      vcpu.close();
    }
  } finally {
    vm.close();
  }
}

for (const mode of ['kernel', 'split'] as const) {
  describe(`${mode} chip: KVM's local APIC bounds IA32_APIC_BASE by the guest's MAXPHYADDR, as our LocalApic does with physicalAddressBits`, { skip }, () => {
    test('no CPUID set: MAXPHYADDR 36, KVM refuses from bit 36 up, exactly as ours with 36', () => {
      withVcpu(mode, (vcpu) => {
        assert.deepEqual(compareBaseWidths(vcpu, KVM_DEFAULT_PHYSICAL_ADDRESS_BITS), { disagreements: [], firstRefused: KVM_DEFAULT_PHYSICAL_ADDRESS_BITS });
      });
    });

    test("the VMM's CPUID (KVM's supported set): MAXPHYADDR from leaf 0x80000008, and again exactly as ours with it", () => {
      withVcpu(mode, (vcpu) => {
        const supported = supportedCpuid();
        setVcpuCpuid(vcpu, vcpuCpuidTable(supported, { vcpuId: 0, vcpuCount: 1 }));
        const physicalAddressBits = (findCpuid(supported, ADDRESS_SIZES_LEAF)?.eax ?? 0) & PHYSICAL_ADDRESS_BITS_MASK;
        assert.ok(physicalAddressBits > KVM_DEFAULT_PHYSICAL_ADDRESS_BITS, `this host reports MAXPHYADDR ${physicalAddressBits}`);
        assert.deepEqual(compareBaseWidths(vcpu, physicalAddressBits), { disagreements: [], firstRefused: physicalAddressBits });
      });
    });
  });
}
