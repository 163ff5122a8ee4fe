/**
 * `PortDevice`: the base of the VMM's I/O-port devices (UART, isa-debug-exit, pc-testdev, fw_cfg),
 * which hands each guest access to the device in the pieces QEMU's memory core would, so that a
 * word or dword IN/OUT reaches the device exactly as under QEMU.
 *
 * QEMU splits a port access into pieces (softmmu/physmem.c `flatview_read_continue` and
 * `memory_access_size`): a piece never crosses the end of the device's region, is at most the
 * region's `valid.max_access_size` bytes, at most the alignment of its offset (the lowest set bit
 * of the offset, unless `impl.unaligned`), and a power of two. Whatever lies past the region goes
 * to the next region, here none: QEMU's PC answers an unassigned port with all ones
 * (`unassigned_io_read`) and drops the write, as our `Bus` does for unclaimed ports. So:
 *
 * - `maxPieceBytes` is the widest access the device's registers take: 1 for byte-wide register
 *   files (the UART: `impl.max_access_size = 1`, a word OUT writes two registers, low byte first;
 *   pc-testdev's IRQ lines: `valid.max_access_size = 1`), 4 where QEMU takes the access whole;
 * - lanes of an access beyond the device's ports read 0xff and are dropped on write, and such an
 *   access is counted (`accessesPastEnd`): the guest meant ports that are not this device's.
 *
 * Port I/O is 1, 2 or 4 bytes (SDM vol. 1, "Input/Output": I/O Port Addressing); an offset outside the
 * device or another size is the caller's mistake (EINVAL), never the guest's: the bus resolves
 * offsets and KVM reports only those sizes.
 */

import { ErrorCode, IrqChipError } from '../../base/errors.ts';
import { allOnes } from '../../base/integers.ts';
import type { BusDevice } from '../../chip/bus.ts';

const BITS_PER_BYTE = 8;
const DWORD_BYTES = 4;
const WORD_BYTES = 2;

export abstract class PortDevice implements BusDevice {
  abstract readonly busName: string;
  /** Accesses with lanes past the device's last port (those lanes read 0xff and are not written). */
  protected accessesPastEnd = 0;

  /**
   * @param portBytes how many ports the device decodes (its range on the bus)
   * @param maxPieceBytes the widest piece its registers take (1, 2 or 4)
   */
  protected constructor(
    readonly portBytes: number,
    private readonly maxPieceBytes: number,
  ) {}

  /** One piece of a read: `size` bytes at `offset`, both as `pieceSize` made them. */
  protected abstract readPiece(offset: number, size: number): number;
  /** One piece of a write; `value` holds `size` bytes. */
  protected abstract writePiece(offset: number, size: number, value: number): void;

  read(offset: number, size: number): number {
    this.checkAccess(offset, size);
    let value = 0;
    let done = 0;
    while (done < size) {
      const at = offset + done;
      if (at >= this.portBytes) {
        // The lanes past the device read as an undriven bus: all ones.
        this.accessesPastEnd++;
        return (value | (allOnes(size) & ~allOnes(done))) >>> 0;
      }
      const piece = this.pieceSize(at, size - done);
      value |= (this.readPiece(at, piece) & allOnes(piece)) << (done * BITS_PER_BYTE);
      done += piece;
    }
    return value >>> 0;
  }

  write(offset: number, size: number, value: number): void {
    this.checkAccess(offset, size);
    let done = 0;
    while (done < size) {
      const at = offset + done;
      if (at >= this.portBytes) {
        this.accessesPastEnd++;
        return;
      }
      const piece = this.pieceSize(at, size - done);
      this.writePiece(at, piece, ((value >>> (done * BITS_PER_BYTE)) & allOnes(piece)) >>> 0);
      done += piece;
    }
  }

  /** QEMU's `memory_access_size` for the piece at `offset` with `remaining` bytes of the access left. */
  private pieceSize(offset: number, remaining: number): number {
    let size = Math.min(remaining, this.portBytes - offset, this.maxPieceBytes);
    const alignment = offset & -offset;
    if (alignment !== 0 && alignment < size) size = alignment;
    return size >= DWORD_BYTES ? DWORD_BYTES : size >= WORD_BYTES ? WORD_BYTES : 1;
  }

  private checkAccess(offset: number, size: number): void {
    if (!Number.isInteger(offset) || offset < 0 || offset >= this.portBytes) {
      throw new IrqChipError(ErrorCode.EINVAL, `${this.busName}: port offset ${String(offset)} is outside its ${this.portBytes} ports`);
    }
    if (size !== 1 && size !== WORD_BYTES && size !== DWORD_BYTES) {
      throw new IrqChipError(ErrorCode.EINVAL, `${this.busName}: a port access is 1, 2 or 4 bytes, got ${String(size)}`);
    }
  }
}
