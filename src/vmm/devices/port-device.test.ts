import assert from 'node:assert/strict';
import { describe, test } from 'node:test';
import fc from 'fast-check';
import { IrqChipError } from '../../base/errors.ts';
import { PortDevice } from './port-device.ts';

interface Piece {
  readonly offset: number;
  readonly size: number;
  readonly value: number;
}

/** Records the pieces it is handed; a read piece returns its offset + 0x10 in every byte lane. */
class RecordingPorts extends PortDevice {
  readonly busName = 'recording';
  readonly pieces: Piece[] = [];
  constructor(shape: { readonly portBytes: number; readonly maxPieceBytes: number }) {
    super(shape.portBytes, shape.maxPieceBytes);
  }
  get pastEnd(): number {
    return this.accessesPastEnd;
  }
  protected readPiece(offset: number, size: number): number {
    const value = laneFill(offset + 0x10, size);
    this.pieces.push({ offset, size, value });
    return value;
  }
  protected writePiece(offset: number, size: number, value: number): void {
    this.pieces.push({ offset, size, value });
  }
}

function laneFill(byte: number, size: number): number {
  let value = 0;
  for (let lane = 0; lane < size; lane++) value |= byte << (lane * 8);
  return value >>> 0;
}

/** A device of 1-12 ports taking pieces up to 1, 2 or 4 bytes, and an access that starts inside it. */
const accessArbitrary = fc.integer({ min: 1, max: 12 }).chain((portBytes) =>
  fc.record({
    portBytes: fc.constant(portBytes),
    maxPieceBytes: fc.constantFrom(1, 2, 4),
    offset: fc.nat({ max: portBytes - 1 }),
    size: fc.constantFrom(1, 2, 4),
    value: fc.nat({ max: 0xffffffff }),
  }),
);

describe('PortDevice: accesses in the pieces QEMU’s memory core makes', () => {
  test('pieces tile the in-range part of the access in order, each a power of two no wider than the device takes or its offset’s alignment', () => {
    fc.assert(
      fc.property(accessArbitrary, ({ portBytes, maxPieceBytes, size, value, offset }) => {
        const ports = new RecordingPorts({ portBytes, maxPieceBytes });
        ports.write(offset, size, value);
        const inRange = Math.min(size, portBytes - offset);
        let next = offset;
        for (const piece of ports.pieces) {
          assert.equal(piece.offset, next, 'contiguous, lowest first');
          assert.ok([1, 2, 4].includes(piece.size) && piece.size <= maxPieceBytes, 'a power of two the device takes');
          if (piece.offset !== 0) assert.equal(piece.offset % piece.size, 0, 'aligned to its size');
          const shift = (piece.offset - offset) * 8;
          assert.equal(piece.value, Number((BigInt(value) >> BigInt(shift)) & ((1n << BigInt(piece.size * 8)) - 1n)), 'the value’s lanes');
          next += piece.size;
        }
        assert.equal(next, offset + inRange, 'exactly the lanes inside the device');
        assert.equal(ports.pastEnd, offset + size > portBytes ? 1 : 0);
      }),
    );
  });

  test('a read assembles its pieces little-endian; lanes past the device read 0xff', () => {
    fc.assert(
      fc.property(accessArbitrary, ({ portBytes, maxPieceBytes, size, offset }) => {
        const ports = new RecordingPorts({ portBytes, maxPieceBytes });
        const value = ports.read(offset, size);
        for (let lane = 0; lane < size; lane++) {
          const port = offset + lane;
          const piece = ports.pieces.find((read) => read.offset <= port && port < read.offset + read.size);
          const expected = port < portBytes ? (piece?.offset ?? -1) + 0x10 : 0xff;
          assert.equal((value >>> (lane * 8)) & 0xff, expected, `lane ${lane}`);
        }
      }),
    );
  });

  test('as QEMU: a dword at offset 2 of four ports is one word piece; at offset 1, a byte then a word', () => {
    const aligned = new RecordingPorts({ portBytes: 4, maxPieceBytes: 4 });
    aligned.write(2, 4, 0x11223344);
    assert.deepEqual(aligned.pieces, [{ offset: 2, size: 2, value: 0x3344 }]);
    assert.equal(aligned.pastEnd, 1);
    const misaligned = new RecordingPorts({ portBytes: 4, maxPieceBytes: 4 });
    misaligned.write(1, 4, 0x11223344);
    assert.deepEqual(misaligned.pieces, [
      { offset: 1, size: 1, value: 0x44 },
      { offset: 2, size: 2, value: 0x2233 },
    ]);
    const byteWide = new RecordingPorts({ portBytes: 8, maxPieceBytes: 1 });
    assert.equal(byteWide.read(0, 4), 0x13121110, 'four registers, lowest first');
  });

  test('an offset outside the device or a size other than 1, 2 or 4 is the caller’s mistake: EINVAL, nothing dispatched', () => {
    const ports = new RecordingPorts({ portBytes: 4, maxPieceBytes: 4 });
    for (const [offset, size] of [
      [4, 1],
      [-1, 1],
      [0.5, 1],
      [0, 3],
      [0, 8],
      [0, 0],
    ] as const) {
      assert.throws(() => ports.read(offset, size), (error: unknown) => error instanceof IrqChipError && error.code === 'EINVAL');
      assert.throws(() => {
        ports.write(offset, size, 0);
      }, IrqChipError);
    }
    assert.deepEqual(ports.pieces, []);
    assert.equal(ports.pastEnd, 0);
  });
});
