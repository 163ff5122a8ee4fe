/**
 * IOAPIC register interface: the MMIO window, the indirect registers, and what a caller may not do.
 * Scenarios I1–I6 and I26 of x86-controllers.md §7.2.
 */
import assert from 'node:assert/strict';
import { test } from 'node:test';
import { VirtualClock } from '../../base/clock.ts';
import {
  Ioapic,
  IOAPIC_DEFAULT_BASE_ADDRESS,
  IOAPIC_PIN_COUNT,
  IoapicMmioOffset,
  IoapicRegisterIndex,
  type IoapicOptions,
} from './ioapic.ts';
import { assertRejectedUnchanged, RecordingSink } from '../controller-test-support.ts';
import {
  entryLow,
  entryLowIndex,
  makeIoapic,
  readEntryLow,
  readRegister,
  writeEntry,
  writeRegister,
} from './test-support.ts';

test('I1 IOREGSEL reads back 0x0F, 0xF0, 0x01 and 0xFF', () => {
  const { ioapic } = makeIoapic();
  for (const index of [0x0f, 0xf0, 0x01, 0xff]) {
    ioapic.mmioWrite(IoapicMmioOffset.RegisterSelect, 4, index);
    assert.equal(ioapic.mmioRead(IoapicMmioOffset.RegisterSelect, 4), index);
  }
});

test('IOREGSEL accepts byte accesses and keeps only 8 bits of a dword, counting the reserved bits', () => {
  const { ioapic } = makeIoapic();
  ioapic.mmioWrite(IoapicMmioOffset.RegisterSelect, 1, 0x12);
  assert.equal(ioapic.mmioRead(IoapicMmioOffset.RegisterSelect, 1), 0x12);
  ioapic.mmioWrite(IoapicMmioOffset.RegisterSelect, 4, 0xabcd_0134);
  assert.equal(ioapic.mmioRead(IoapicMmioOffset.RegisterSelect, 4), 0x34);
  assert.equal(ioapic.counters().reservedBitWrites, 1);
});

test('I2 v0x20 version register reads 0x00170020 and ignores writes', () => {
  const { ioapic } = makeIoapic();
  assert.equal(readRegister(ioapic, IoapicRegisterIndex.Version), 0x00170020);
  writeRegister(ioapic, IoapicRegisterIndex.Version, ~0x00170020);
  assert.equal(readRegister(ioapic, IoapicRegisterIndex.Version), 0x00170020);
  assert.equal(ioapic.counters().readOnlyWrites, 1);
});

test('I2 v0x11 version register reads 0x00170011', () => {
  const { ioapic } = makeIoapic({ version: 0x11 });
  assert.equal(readRegister(ioapic, IoapicRegisterIndex.Version), 0x00170011);
  assert.equal(ioapic.version, 0x11);
});

test('I3 IOAPICID keeps bits 27:24; arbitration reads the ID and ignores writes', () => {
  const { ioapic } = makeIoapic();
  writeRegister(ioapic, IoapicRegisterIndex.Id, 0x1f3e5d7c);
  assert.equal(readRegister(ioapic, IoapicRegisterIndex.Id), 0x0f000000);
  assert.equal(readRegister(ioapic, IoapicRegisterIndex.Arbitration), 0x0f000000);
  writeRegister(ioapic, IoapicRegisterIndex.Arbitration, 0x03000000);
  assert.equal(readRegister(ioapic, IoapicRegisterIndex.Arbitration), 0x0f000000);
  assert.equal(readRegister(ioapic, IoapicRegisterIndex.Id), 0x0f000000);
  assert.deepEqual([ioapic.counters().reservedBitWrites, ioapic.counters().readOnlyWrites], [1, 1]);
});

test('I4 after reset every RTE reads low 0x00010000, high 0', () => {
  const { ioapic } = makeIoapic();
  writeEntry(ioapic, 3, 0x0000a031, 0x5a000000);
  writeRegister(ioapic, IoapicRegisterIndex.Id, 0x05000000);
  ioapic.reset();
  for (let pin = 0; pin < IOAPIC_PIN_COUNT; pin++) {
    assert.equal(readRegister(ioapic, entryLowIndex(pin)), 0x00010000, `pin ${pin} low`);
    assert.equal(readRegister(ioapic, entryLowIndex(pin) + 1), 0, `pin ${pin} high`);
  }
  assert.equal(readRegister(ioapic, IoapicRegisterIndex.Id), 0);
  ioapic.mmioWrite(IoapicMmioOffset.RegisterSelect, 4, 0x77);
  ioapic.reset();
  assert.equal(ioapic.mmioRead(IoapicMmioOffset.RegisterSelect, 4), 0);
});

test('reset loads the IOAPICID given in the options', () => {
  const { ioapic } = makeIoapic({ id: 9 });
  assert.equal(readRegister(ioapic, IoapicRegisterIndex.Id), 0x09000000);
  writeRegister(ioapic, IoapicRegisterIndex.Id, 0x02000000);
  ioapic.reset();
  assert.equal(readRegister(ioapic, IoapicRegisterIndex.Id), 0x09000000);
});

test('I5 RTE write keeps delivery status 0: lo 0x965F reads 0x865F, hi 0x3A000000, level', () => {
  const { ioapic, sink } = makeIoapic();
  writeEntry(ioapic, 5, 0x0000965f, 0x3a000000);
  assert.equal(readRegister(ioapic, entryLowIndex(5)), 0x0000865f);
  assert.equal(readRegister(ioapic, entryLowIndex(5) + 1), 0x3a000000);
  assert.deepEqual(ioapic.redirectionEntry(5), { low: 0x0000865f, high: 0x3a000000 });
  // Delivery mode 110 is a reserved encoding: stored for the guest, counted.
  assert.equal(ioapic.counters().reservedBitWrites, 1);
  assert.equal(sink.messages.length, 0);
});

test('remote IRR is read-only through IOWIN: a write cannot set it or clear it', () => {
  const { ioapic, sink } = makeIoapic();
  const levelEntry = entryLow({ vector: 0x31, level: true });
  writeEntry(ioapic, 2, levelEntry | (1 << 14));
  assert.equal(ioapic.remoteIrr(2), false);
  ioapic.setIrq(2, true);
  assert.equal(ioapic.remoteIrr(2), true);
  writeEntry(ioapic, 2, levelEntry);
  assert.equal(readEntryLow(ioapic, 2), levelEntry | (1 << 14));
  assert.equal(sink.messages.length, 1, 'still awaiting its EOI: no second delivery');
});

test('RTE reserved bits are stored and counted', () => {
  const { ioapic } = makeIoapic();
  writeEntry(ioapic, 1, entryLow({ vector: 0x40, masked: true }) | 0x00020000, 0x00000100);
  assert.deepEqual(ioapic.redirectionEntry(1), { low: 0x00030040, high: 0x00000100 });
  assert.equal(ioapic.counters().reservedBitWrites, 2);
});

test('I6 IOWIN reads 0xFFFFFFFF past the table (0x40) and 0 for 0x05, counting both', () => {
  const { ioapic } = makeIoapic();
  assert.equal(readRegister(ioapic, 0x40), 0xffffffff);
  assert.equal(readRegister(ioapic, 0xff), 0xffffffff);
  assert.equal(readRegister(ioapic, 0x05), 0);
  assert.equal(ioapic.counters().reservedRegisterAccesses, 3);
});

test('IOWIN writes to unimplemented registers change nothing and are counted', () => {
  const { ioapic } = makeIoapic();
  const before = Array.from({ length: IOAPIC_PIN_COUNT }, (_, pin) => ioapic.redirectionEntry(pin));
  writeRegister(ioapic, 0x03, 0xffffffff);
  writeRegister(ioapic, 0x40, 0xffffffff);
  writeRegister(ioapic, 0x41, 0xffffffff);
  assert.deepEqual(
    Array.from({ length: IOAPIC_PIN_COUNT }, (_, pin) => ioapic.redirectionEntry(pin)),
    before,
  );
  assert.equal(readRegister(ioapic, IoapicRegisterIndex.Id), 0);
  assert.equal(ioapic.counters().reservedRegisterAccesses, 3);
});

test('I26 8-byte and 2-byte IOWIN accesses are ignored and read 0', () => {
  const { ioapic } = makeIoapic();
  writeEntry(ioapic, 0, entryLow({ vector: 0x55, masked: true }));
  ioapic.mmioWrite(IoapicMmioOffset.RegisterSelect, 4, entryLowIndex(0));
  ioapic.mmioWrite(IoapicMmioOffset.Window, 8, 0x0001_0066);
  ioapic.mmioWrite(IoapicMmioOffset.Window, 2, 0x0077);
  assert.equal(ioapic.mmioRead(IoapicMmioOffset.Window, 8), 0);
  assert.equal(ioapic.mmioRead(IoapicMmioOffset.Window, 2), 0);
  assert.equal(ioapic.mmioRead(IoapicMmioOffset.Window, 4), 0x00010055);
  assert.equal(ioapic.counters().ignoredAccesses, 4);
});

test('other offsets, unaligned accesses and 2-byte IOREGSEL accesses read 0 and write nothing', () => {
  const { ioapic } = makeIoapic();
  ioapic.mmioWrite(IoapicMmioOffset.RegisterSelect, 4, 0x01);
  ioapic.mmioWrite(0x04, 4, 0x10);
  ioapic.mmioWrite(0x01, 1, 0x10);
  ioapic.mmioWrite(IoapicMmioOffset.RegisterSelect, 2, 0x10);
  ioapic.mmioWrite(0x20, 4, 0x10);
  assert.equal(ioapic.mmioRead(IoapicMmioOffset.RegisterSelect, 4), 0x01);
  assert.equal(ioapic.mmioRead(0x04, 4), 0);
  assert.equal(ioapic.mmioRead(0x11, 1), 0);
  assert.equal(ioapic.mmioRead(0xfc, 4), 0);
  assert.equal(ioapic.counters().ignoredAccesses, 7);
});

test('the EOI register is write-only on v0x20 and absent on v0x11', () => {
  const v20 = makeIoapic().ioapic;
  assert.equal(v20.mmioRead(IoapicMmioOffset.EndOfInterrupt, 4), 0);
  assert.equal(v20.counters().ignoredAccesses, 1);
  const v11 = makeIoapic({ version: 0x11 }).ioapic;
  v11.mmioWrite(IoapicMmioOffset.EndOfInterrupt, 4, 0x31);
  assert.equal(v11.counters().ignoredAccesses, 1);
});

test('baseAddress defaults to 0xFEC00000 and follows the option', () => {
  assert.equal(makeIoapic().ioapic.baseAddress, IOAPIC_DEFAULT_BASE_ADDRESS);
  assert.equal(makeIoapic({ baseAddress: 0xfec01000 }).ioapic.baseAddress, 0xfec01000);
});

// ---------------------------------------------------------------------------------------------
// Caller misuse: EINVAL and nothing changes
// ---------------------------------------------------------------------------------------------

test('create rejects a bad version, pin count, ID, base address, sink or clock with EINVAL', () => {
  const sink = new RecordingSink();
  const clock = new VirtualClock();
  const bad: unknown[] = [
    { version: 0x12 },
    { version: 32.5 },
    { pins: 16 },
    { id: 16 },
    { id: -1 },
    { baseAddress: 0xfec00010 },
    { baseAddress: 0x1_0000_0000 },
    { baseAddress: -0x100 },
    { rtcEoiTracking: 1 },
    { extendedDestinationId: 'yes' },
    { sink: {} },
    { clock: undefined },
  ];
  for (const override of bad) {
    const options = { sink, clock, ...(override as object) } as IoapicOptions;
    assert.throws(() => Ioapic.create(options), { name: 'IrqChipError', code: 'EINVAL' }, JSON.stringify(override));
  }
});

test('setIrq with pin 24, -1 or 1.5 throws EINVAL and changes nothing', () => {
  const { ioapic } = makeIoapic();
  writeEntry(ioapic, 0, entryLow({ vector: 0x30 }));
  for (const pin of [24, -1, 1.5, Number.NaN]) assertRejectedUnchanged(ioapic, () => ioapic.setIrq(pin, true));
});

test('endOfInterrupt with vector 256 or a bad trigger mode throws EINVAL and changes nothing', () => {
  const { ioapic } = makeIoapic();
  writeEntry(ioapic, 0, entryLow({ vector: 0x30, level: true }));
  ioapic.setIrq(0, true);
  assertRejectedUnchanged(ioapic, () => {
    ioapic.endOfInterrupt(256);
  });
  assertRejectedUnchanged(ioapic, () => {
    ioapic.endOfInterrupt(0x30, 2 as 0);
  });
  assert.equal(ioapic.remoteIrr(0), true);
});

test('MMIO offset outside the window, size 0 or 9, or a value wider than the access throws EINVAL', () => {
  const { ioapic } = makeIoapic();
  assertRejectedUnchanged(ioapic, () => ioapic.mmioRead(0x100, 4));
  assertRejectedUnchanged(ioapic, () => ioapic.mmioRead(0, 0));
  assertRejectedUnchanged(ioapic, () => {
    ioapic.mmioWrite(-4, 4, 0);
  });
  assertRejectedUnchanged(ioapic, () => {
    ioapic.mmioWrite(IoapicMmioOffset.RegisterSelect, 9, 0);
  });
  assertRejectedUnchanged(ioapic, () => {
    ioapic.mmioWrite(IoapicMmioOffset.RegisterSelect, 1, 0x100);
  });
  assertRejectedUnchanged(ioapic, () => {
    ioapic.mmioWrite(IoapicMmioOffset.Window, 4, -1);
  });
});

test('accessors, setPinResampled and setResampleListener reject bad arguments with EINVAL', () => {
  const { ioapic } = makeIoapic();
  assertRejectedUnchanged(ioapic, () => ioapic.redirectionEntry(24));
  assertRejectedUnchanged(ioapic, () => ioapic.remoteIrr(24));
  assertRejectedUnchanged(ioapic, () => ioapic.lineLevel(-1));
  assertRejectedUnchanged(ioapic, () => ioapic.isPinResampled(24));
  assertRejectedUnchanged(ioapic, () => {
    ioapic.setPinResampled(24, true);
  });
  assertRejectedUnchanged(ioapic, () => {
    ioapic.setPinResampled(0, 1 as unknown as boolean);
  });
  assertRejectedUnchanged(ioapic, () => ioapic.trySetIrq(24, true));
  assertRejectedUnchanged(ioapic, () => {
    ioapic.setResampleListener('not a function' as unknown as () => void);
  });
});
