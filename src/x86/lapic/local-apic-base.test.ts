/**
 * Where a local APIC decodes its xAPIC page: at the base IA32_APIC_BASE names, only while EN = 1
 * and in xAPIC mode (SDM vol. 3 §11.4.4, §11.4.5, §11.12.1.2); the base's bits are bounded by
 * MAXPHYADDR (Figure 11-5). `decodesMmio` is the rule; `mmioReadAt`/`mmioWriteAt` answer by it.
 */
import assert from 'node:assert/strict';
import { test } from 'node:test';
import fc from 'fast-check';
import { VirtualClock } from '../../base/clock.ts';
import { assertIrqChipError } from '../../testing/irq-chip-error.ts';
import { DeliveryMode } from '../interrupt-message.ts';
import { LocalApic } from './local-apic.ts';
import {
  APIC_BASE_DISABLED,
  APIC_BASE_X2APIC,
  APIC_BASE_XAPIC,
  MSR_APIC_BASE,
  Mmio,
  SVR_ENABLED,
  enterX2apic,
  makeApic,
  makeEnabledApic,
  message,
  msrOf,
  rdmsr,
} from './local-apic-test-support.ts';

const DEFAULT_BASE = 0xfee00000;
const MOVED_BASE = 0xfed00000;
const PAGE_BYTES = 0x1000;
const ALL_ONES_32 = 0xffffffff;
/** IA32_APIC_BASE in xAPIC mode (EN set) with the base at `address`, and the BSP bit as the APIC has it. */
function xapicBase(address: number, bsp = true): bigint {
  return BigInt(address) | 0x800n | (bsp ? 0x100n : 0n);
}

test('RESET: the page is decoded at 0xFEE00000, its 4 KiB and nothing else', () => {
  const { apic } = makeApic();
  assert.equal(apic.mmioBase(), DEFAULT_BASE);
  assert.equal(apic.decodesMmio(DEFAULT_BASE), true);
  assert.equal(apic.decodesMmio(DEFAULT_BASE + PAGE_BYTES - 1), true);
  assert.equal(apic.decodesMmio(DEFAULT_BASE + PAGE_BYTES), false);
  assert.equal(apic.decodesMmio(DEFAULT_BASE - 1), false);
  assert.equal(apic.mmioReadAt(DEFAULT_BASE + Mmio.Version, 4), apic.mmioRead(Mmio.Version, 4));
});

test('a moved base: the registers answer at the new page, the old page reads all ones and drops writes, counted', () => {
  const { apic } = makeEnabledApic();
  const version = apic.mmioRead(Mmio.Version, 4);
  assert.equal(apic.writeMsr(MSR_APIC_BASE, xapicBase(MOVED_BASE)), true);
  assert.equal(rdmsr(apic, MSR_APIC_BASE), xapicBase(MOVED_BASE));
  assert.equal(apic.mmioBase(), MOVED_BASE);
  assert.equal(apic.decodesMmio(MOVED_BASE + Mmio.Version), true);
  assert.equal(apic.decodesMmio(DEFAULT_BASE + Mmio.Version), false);
  assert.equal(apic.mmioReadAt(MOVED_BASE + Mmio.Version, 4), version, 'the registers moved with the page');
  assert.equal(apic.mmioReadAt(MOVED_BASE + Mmio.SpuriousVector, 4), SVR_ENABLED, 'and kept their values');
  assert.equal(apic.mmioReadAt(DEFAULT_BASE + Mmio.Version, 4), ALL_ONES_32);
  apic.mmioWriteAt(DEFAULT_BASE + Mmio.TaskPriority, 4, 0x20);
  assert.equal(apic.mmioReadAt(MOVED_BASE + Mmio.TaskPriority, 4), 0, 'the write at the old page went nowhere');
  assert.equal(apic.counters().ignoredAccesses, 2);
  apic.mmioWriteAt(MOVED_BASE + Mmio.TaskPriority, 4, 0x20);
  assert.equal(apic.mmioRead(Mmio.TaskPriority, 4), 0x20, 'mmioRead is relative to the current base');
});

test('INIT keeps the moved base (SDM §11.4.7.3); RESET brings back 0xFEE00000', () => {
  const { apic } = makeEnabledApic({ busIndex: 1, bsp: false });
  apic.writeMsr(MSR_APIC_BASE, xapicBase(MOVED_BASE, false));
  assert.equal(apic.accept(message(DeliveryMode.Init, 0, { destination: 1 })), 1);
  assert.deepEqual(apic.processInitSipi(), { initReset: true, startup: undefined });
  assert.equal(apic.mmioBase(), MOVED_BASE);
  assert.equal(apic.decodesMmio(MOVED_BASE), true);
  apic.reset();
  assert.equal(apic.mmioBase(), DEFAULT_BASE);
  assert.equal(apic.decodesMmio(DEFAULT_BASE), true);
});

test('a base above 4 GiB is exact (bits 51:12), and decoded there only', () => {
  const high = 0x000f_ffff_ffff_f000;
  const { apic } = makeEnabledApic();
  assert.equal(apic.writeMsr(MSR_APIC_BASE, xapicBase(high)), true);
  assert.equal(apic.mmioBase(), high);
  assert.equal(apic.decodesMmio(high + Mmio.Version), true);
  assert.equal(apic.decodesMmio((high % 2 ** 32) + Mmio.Version), false, 'not at its low 32 bits');
  assert.equal(apic.mmioReadAt(high + Mmio.SpuriousVector, 4), SVR_ENABLED);
});

test('EN = 0: the page is decoded nowhere, the base stays in the MSR; reads see all ones at every size', () => {
  const { apic } = makeEnabledApic();
  apic.writeMsr(MSR_APIC_BASE, xapicBase(MOVED_BASE) & ~0x800n);
  assert.equal(apic.isHardwareEnabled(), false);
  assert.equal(apic.mmioBase(), MOVED_BASE);
  for (const address of [MOVED_BASE, DEFAULT_BASE]) assert.equal(apic.decodesMmio(address + Mmio.Version), false);
  assert.deepEqual(
    [1, 2, 4, 8].map((size) => apic.mmioReadAt(MOVED_BASE + Mmio.Version, size)),
    [0xff, 0xffff, ALL_ONES_32, ALL_ONES_32],
  );
  apic.mmioWriteAt(MOVED_BASE + Mmio.SpuriousVector, 4, SVR_ENABLED);
  assert.equal(apic.counters().ignoredAccesses, 5);
  assert.equal(apic.writeMsr(MSR_APIC_BASE, xapicBase(MOVED_BASE)), true, 'disabled → xAPIC is allowed');
  assert.equal(apic.decodesMmio(MOVED_BASE), true);
  assert.equal(apic.mmioReadAt(MOVED_BASE + Mmio.SpuriousVector, 4), 0xff, 'the write while disabled went nowhere (and disabling reset SVR)');
});

test('x2APIC mode: the MMIO interface is gone at the base (SDM §11.12.1.2) while the MSRs answer', () => {
  const { apic } = makeEnabledApic();
  const version = apic.mmioRead(Mmio.Version, 4);
  enterX2apic(apic);
  assert.equal(apic.mmioBase(), DEFAULT_BASE);
  assert.equal(apic.decodesMmio(DEFAULT_BASE + Mmio.Version), false);
  assert.equal(apic.mmioReadAt(DEFAULT_BASE + Mmio.Version, 4), ALL_ONES_32);
  assert.equal(rdmsr(apic, msrOf(Mmio.Version)), BigInt(version));
  assert.equal(apic.counters().ignoredAccesses, 1);
});

test('each APIC has its own base: moving one leaves the other at 0xFEE00000', () => {
  const clock = new VirtualClock();
  const apics = [0, 1].map((busIndex) => LocalApic.create({ busIndex, bsp: busIndex === 0, clock }));
  const [first, second] = apics;
  assert.ok(first !== undefined && second !== undefined);
  first.writeMsr(MSR_APIC_BASE, xapicBase(MOVED_BASE));
  assert.deepEqual(
    apics.map((apic) => [apic.decodesMmio(DEFAULT_BASE), apic.decodesMmio(MOVED_BASE)]),
    [
      [false, true],
      [true, false],
    ],
  );
});

test('MAXPHYADDR bounds the base: a bit at or above it #GPs (counted) and changes nothing; the host gets EINVAL', () => {
  const { apic } = makeApic({ physicalAddressBits: 36 });
  const top = 2 ** 35;
  assert.equal(apic.writeMsr(MSR_APIC_BASE, xapicBase(top)), true, 'bit 35 is below MAXPHYADDR 36');
  assert.equal(apic.mmioBase(), top);
  assert.equal(apic.writeMsr(MSR_APIC_BASE, xapicBase(2 ** 36)), false, 'bit 36 is reserved');
  assert.equal(apic.counters().generalProtectionFaults, 1);
  assert.equal(apic.mmioBase(), top);
  assertIrqChipError(() => {
    apic.setApicBase(xapicBase(2 ** 36));
  }, 'EINVAL');
  assert.equal(apic.mmioBase(), top);
  const widest = makeApic().apic;
  assert.equal(widest.writeMsr(MSR_APIC_BASE, xapicBase(2 ** 51)), true, 'the default is the architectural 52 bits');
  assert.equal(widest.writeMsr(MSR_APIC_BASE, BigInt(2 ** 52) | 0x900n), false);
});

test('physicalAddressBits outside 32–52 or not an integer is the caller’s error: EINVAL', () => {
  for (const physicalAddressBits of [31, 53, 36.5, Number.NaN]) {
    assertIrqChipError(() => makeApic({ physicalAddressBits }), 'EINVAL');
  }
});

test('a snapshot keeps the moved base; one of an APIC with another MAXPHYADDR is refused', () => {
  const { apic } = makeEnabledApic({ physicalAddressBits: 40 });
  apic.writeMsr(MSR_APIC_BASE, xapicBase(2 ** 39));
  const bytes = apic.snapshot();
  const copy = makeApic({ physicalAddressBits: 40 }).apic;
  copy.restore(bytes);
  assert.equal(copy.mmioBase(), 2 ** 39);
  assert.equal(copy.decodesMmio(2 ** 39 + Mmio.Version), true);
  assertIrqChipError(() => {
    makeApic({ physicalAddressBits: 36 }).apic.restore(bytes);
  }, 'EINVAL');
});

test('mmioReadAt/mmioWriteAt with a size the CPU cannot issue throw EINVAL and count nothing, decoded or not', () => {
  const { apic } = makeEnabledApic();
  for (const address of [DEFAULT_BASE + Mmio.Version, MOVED_BASE]) {
    assertIrqChipError(() => apic.mmioReadAt(address, 3), 'EINVAL');
    assertIrqChipError(() => {
      apic.mmioWriteAt(address, 4, 2 ** 32);
    }, 'EINVAL');
  }
  assert.equal(apic.counters().ignoredAccesses, 0);
});

test('property: decodesMmio(address) ⇔ xAPIC mode and base ≤ address < base + 4 KiB; an undecoded read is all ones', () => {
  const pageNumber = fc.integer({ min: 0, max: 2 ** 40 - 1 });
  const mode = fc.constantFrom(APIC_BASE_XAPIC, APIC_BASE_X2APIC, APIC_BASE_DISABLED);
  const nearby = fc.integer({ min: -2 * PAGE_BYTES, max: 2 * PAGE_BYTES });
  fc.assert(
    fc.property(pageNumber, mode, nearby, fc.integer({ min: 0, max: 2 ** 52 - 8 }), (page, modeBits, delta, anywhere) => {
      const { apic } = makeApic();
      const base = page * PAGE_BYTES;
      apic.setApicBase(BigInt(base) | (modeBits & 0xc00n) | 0x100n);
      const xapic = modeBits === APIC_BASE_XAPIC;
      for (const address of [base + delta, anywhere]) {
        if (address < 0) continue;
        const inPage = address >= base && address < base + PAGE_BYTES;
        assert.equal(apic.decodesMmio(address), xapic && inPage);
        if (!apic.decodesMmio(address)) assert.equal(apic.mmioReadAt(address, 4), ALL_ONES_32);
      }
    }),
    { numRuns: 300 },
  );
});
