import assert from 'node:assert/strict';
import { describe, test } from 'node:test';
import fc from 'fast-check';
import { rejectsWith } from '../../testing/irq-chip-error.ts';
import { DeliveryMode, DestinationMode, DestinationShorthand, TriggerMode } from '../interrupt-message.ts';
import {
  decodeMsi,
  encodeMsi,
  hasReservedBits,
  isInterruptAddress,
  isMsiDeliveryMode,
  type MsiDestinationFormat,
  type MsiFields,
} from './msi-codec.ts';

const THIRTY_TWO_BIT_IDS: MsiDestinationFormat = { x2apicDestinationIds: true };
const EXTENDED_DESTINATION_ID: MsiDestinationFormat = { extendedDestinationId: true };

describe('MSI decode (SDM §11.11, x86-controllers.md §4)', () => {
  test('M1 address 0xFEE01000 data 0xF1: physical fixed edge vector 0xF1 to destination 1', () => {
    assert.deepEqual(decodeMsi(0xfee01000, 0, 0x000000f1), {
      destination: 1,
      destinationMode: DestinationMode.Physical,
      deliveryMode: DeliveryMode.Fixed,
      vector: 0xf1,
      triggerMode: TriggerMode.Edge,
      level: true,
      shorthand: DestinationShorthand.None,
      redirectionHint: false,
      sourceApic: undefined,
    });
  });

  test('M2 address 0xFEE0300C data 0x1F2: destination 3, logical, redirection hint, lowest priority', () => {
    const message = decodeMsi(0xfee0300c, 0, 0x000001f2);
    assert.equal(message.destination, 3);
    assert.equal(message.destinationMode, DestinationMode.Logical);
    assert.equal(message.redirectionHint, true);
    assert.equal(message.deliveryMode, DeliveryMode.LowestPriority);
    assert.equal(message.vector, 0xf2);
  });

  test('M3 data 0xC0F3: level-triggered assert', () => {
    const message = decodeMsi(0xfee00000, 0, 0x0000c0f3);
    assert.equal(message.triggerMode, TriggerMode.Level);
    assert.equal(message.level, true);
    assert.equal(message.vector, 0xf3);
  });

  test('M4 data 0x400: NMI delivery mode', () => {
    assert.equal(decodeMsi(0xfee00000, 0, 0x00000400).deliveryMode, DeliveryMode.Nmi);
  });

  test('level bit: an edge MSI is an assert even with bit 14 clear; a level MSI with bit 14 clear is a de-assert', () => {
    assert.equal(decodeMsi(0xfee00000, 0, 0x00000031).level, true);
    assert.equal(decodeMsi(0xfee00000, 0, 0x00008031).level, false);
    assert.equal(decodeMsi(0xfee00000, 0, 0x0000c031).level, true);
  });

  test('M5 32-bit destination IDs: address_hi 0x100 with address_lo 0xFEE02000 gives destination 0x102', () => {
    assert.equal(decodeMsi(0xfee02000, 0x00000100, 0x31, THIRTY_TWO_BIT_IDS).destination, 0x102);
    assert.equal(decodeMsi(0xfee02000, 0xabcdef00, 0x31, THIRTY_TWO_BIT_IDS).destination, 0xabcdef02);
  });

  test('M5 32-bit destination IDs: address_hi with bits 7:0 set is EINVAL', () => {
    assert.throws(() => decodeMsi(0xfee02000, 0x00000101, 0x31, THIRTY_TWO_BIT_IDS), rejectsWith('EINVAL'));
  });

  test('without 32-bit destination IDs address_hi is ignored (KVM)', () => {
    assert.equal(decodeMsi(0xfee02000, 0x00000101, 0x31).destination, 2);
  });

  test('M6 extended destination ID: address 0xFEE00020 (bits 11:5 = 1) gives destination 0x100', () => {
    assert.equal(decodeMsi(0xfee00020, 0, 0x31, EXTENDED_DESTINATION_ID).destination, 0x100);
    assert.equal(decodeMsi((0xfeeab000 | (0x55 << 5)) >>> 0, 0, 0x31, EXTENDED_DESTINATION_ID).destination, 0x55ab);
  });

  test('extended destination ID bits are ignored when the scheme is off or bit 4 (remappable) is set', () => {
    assert.equal(decodeMsi(0xfee00020, 0, 0x31).destination, 0);
    assert.equal(decodeMsi(0xfee01030, 0, 0x31, EXTENDED_DESTINATION_ID).destination, 1);
  });

  test('enabling both wide-destination schemes is EINVAL', () => {
    assert.throws(
      () => decodeMsi(0xfee00000, 0, 0x31, { x2apicDestinationIds: true, extendedDestinationId: true }),
      rejectsWith('EINVAL'),
    );
  });

  test('decode does not examine address bits 31:20; isInterruptAddress does', () => {
    assert.equal(decodeMsi(0x12345000, 0, 0x31).destination, 0x45);
    assert.equal(isInterruptAddress(0x12345000), false);
    assert.equal(isInterruptAddress(0xfee45000), true);
    assert.equal(isInterruptAddress(0xfef00000), false);
    assert.equal(isInterruptAddress(0xfed00000), false);
  });

  test('arguments that are not unsigned 32-bit integers are EINVAL', () => {
    for (const bad of [-1, 2 ** 32, 1.5, Number.NaN]) {
      assert.throws(() => decodeMsi(bad, 0, 0), rejectsWith('EINVAL'));
      assert.throws(() => decodeMsi(0xfee00000, bad, 0), rejectsWith('EINVAL'));
      assert.throws(() => decodeMsi(0xfee00000, 0, bad), rejectsWith('EINVAL'));
    }
  });

  test('delivery modes 011 (remote read) and 110 (start-up) are reserved for MSIs', () => {
    const allowed = [0, 1, 2, 3, 4, 5, 6, 7].filter((mode) => isMsiDeliveryMode(mode));
    assert.deepEqual(allowed, [0, 1, 2, 4, 5, 7]);
  });

  test('reserved bits: address 11:4 and data 13:11, 31:16; only address bit 4 with the extended destination ID', () => {
    assert.equal(hasReservedBits(0xfee0100c, 0x0000c0f1, false), false);
    assert.equal(hasReservedBits(0xfee00010, 0x31, false), true);
    assert.equal(hasReservedBits(0xfee00020, 0x31, false), true);
    assert.equal(hasReservedBits(0xfee00fe0, 0x31, true), false);
    assert.equal(hasReservedBits(0xfee00010, 0x31, true), true);
    assert.equal(hasReservedBits(0xfee00000, 0x00000831, false), true);
    assert.equal(hasReservedBits(0xfee00000, 0x00010031, false), true);
  });
});

describe('MSI encode', () => {
  const m1: MsiFields = {
    destination: 1,
    destinationMode: DestinationMode.Physical,
    redirectionHint: false,
    deliveryMode: DeliveryMode.Fixed,
    triggerMode: TriggerMode.Edge,
    level: true,
    vector: 0xf1,
  };

  test('encodes M1 as address 0xFEE01000, data 0xF1 (edge leaves the level bit clear, as Linux does)', () => {
    assert.deepEqual(encodeMsi(m1), { addressLow: 0xfee01000, addressHigh: 0, data: 0xf1 });
  });

  test('encodes M2 and M3 field for field', () => {
    const m2 = { ...m1, destination: 3, destinationMode: DestinationMode.Logical, redirectionHint: true, deliveryMode: DeliveryMode.LowestPriority, vector: 0xf2 };
    assert.deepEqual(encodeMsi(m2), { addressLow: 0xfee0300c, addressHigh: 0, data: 0x1f2 });
    const m3 = { ...m1, destination: 0, triggerMode: TriggerMode.Level, vector: 0xf3 };
    assert.deepEqual(encodeMsi(m3), { addressLow: 0xfee00000, addressHigh: 0, data: 0xc0f3 });
  });

  test('wide destinations go to address_hi (32-bit IDs) or address bits 11:5 (extended destination ID)', () => {
    assert.deepEqual(encodeMsi({ ...m1, destination: 0x102 }, THIRTY_TWO_BIT_IDS), { addressLow: 0xfee02000, addressHigh: 0x100, data: 0xf1 });
    assert.deepEqual(encodeMsi({ ...m1, destination: 0x100 }, EXTENDED_DESTINATION_ID), { addressLow: 0xfee00020, addressHigh: 0, data: 0xf1 });
  });

  test('a destination wider than the format carries is EINVAL', () => {
    assert.throws(() => encodeMsi({ ...m1, destination: 0x100 }), rejectsWith('EINVAL'));
    assert.throws(() => encodeMsi({ ...m1, destination: 0x8000 }, EXTENDED_DESTINATION_ID), rejectsWith('EINVAL'));
    assert.throws(() => encodeMsi({ ...m1, destination: 2 ** 32 }, THIRTY_TWO_BIT_IDS), rejectsWith('EINVAL'));
    assert.throws(() => encodeMsi({ ...m1, destination: -1 }), rejectsWith('EINVAL'));
  });

  test('out-of-range fields and an edge de-assert are EINVAL', () => {
    assert.throws(() => encodeMsi({ ...m1, vector: 256 }), rejectsWith('EINVAL'));
    assert.throws(() => encodeMsi({ ...m1, deliveryMode: 8 as DeliveryMode }), rejectsWith('EINVAL'));
    assert.throws(() => encodeMsi({ ...m1, destinationMode: 2 as DestinationMode }), rejectsWith('EINVAL'));
    assert.throws(() => encodeMsi({ ...m1, triggerMode: 2 as TriggerMode }), rejectsWith('EINVAL'));
    assert.throws(() => encodeMsi({ ...m1, level: false }), rejectsWith('EINVAL'));
  });
});

describe('MSI codec properties', () => {
  const formats: readonly MsiDestinationFormat[] = [{}, THIRTY_TWO_BIT_IDS, EXTENDED_DESTINATION_ID];
  const widestDestination = (format: MsiDestinationFormat): number =>
    format.x2apicDestinationIds === true ? 0xffffffff : format.extendedDestinationId === true ? 0x7fff : 0xff;

  const validFields = (format: MsiDestinationFormat): fc.Arbitrary<MsiFields> =>
    fc
      .record({
        destination: fc.integer({ min: 0, max: widestDestination(format) }),
        destinationMode: fc.constantFrom(DestinationMode.Physical, DestinationMode.Logical),
        redirectionHint: fc.boolean(),
        deliveryMode: fc.integer({ min: 0, max: 7 }).map((mode) => mode as DeliveryMode),
        triggerMode: fc.constantFrom(TriggerMode.Edge, TriggerMode.Level),
        level: fc.boolean(),
        vector: fc.integer({ min: 0, max: 255 }),
      })
      // Edge messages are always asserts (SDM §11.11.2), so only level ones may carry `false`.
      .map((fields) => ({ ...fields, level: fields.triggerMode === TriggerMode.Edge || fields.level }));

  test('decode ∘ encode is the identity over valid fields, in every destination format', () => {
    for (const format of formats) {
      fc.assert(
        fc.property(validFields(format), (fields) => {
          const { addressLow, addressHigh, data } = encodeMsi(fields, format);
          assert.equal(isInterruptAddress(addressLow), true);
          assert.equal(hasReservedBits(addressLow, data, format.extendedDestinationId === true), false);
          assert.deepEqual(decodeMsi(addressLow, addressHigh, data, format), {
            ...fields,
            shorthand: DestinationShorthand.None,
            sourceApic: undefined,
          });
        }),
        { numRuns: 500 },
      );
    }
  });

  test('decode never throws on any 32-bit address_lo and data, and re-encoding what it decoded decodes the same', () => {
    const u32 = fc.nat({ max: 0xffffffff });
    for (const format of formats) {
      // With 32-bit IDs only address_hi values with bits 7:0 clear are valid; otherwise address_hi is ignored.
      const addressHigh = format.x2apicDestinationIds === true ? u32.map((value) => (value & 0xffffff00) >>> 0) : u32;
      fc.assert(
        fc.property(u32, addressHigh, u32, (addressLow, high, data) => {
          const message = decodeMsi(addressLow, high, data, format);
          const encoded = encodeMsi(message, format);
          assert.deepEqual(decodeMsi(encoded.addressLow, encoded.addressHigh, encoded.data, format), message);
        }),
        { numRuns: 500 },
      );
    }
  });

  test('with 32-bit IDs decode throws EINVAL exactly when address_hi bits 7:0 are set', () => {
    fc.assert(
      fc.property(fc.nat({ max: 0xffffffff }), (addressHigh) => {
        const decode = (): unknown => decodeMsi(0xfee00000, addressHigh, 0x31, THIRTY_TWO_BIT_IDS);
        if ((addressHigh & 0xff) === 0) decode();
        else assert.throws(decode, rejectsWith('EINVAL'));
      }),
      { numRuns: 300 },
    );
  });
});
