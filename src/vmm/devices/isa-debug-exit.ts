/**
 * isa-debug-exit, as QEMU's `-device isa-debug-exit,iobase=0xf4,iosize=0x04` (hw/misc/debugexit.c):
 * a guest ends the machine by writing a value to one of its four ports. QEMU calls
 * `exit((value << 1) | 1)`, so a guest's status is always odd and 0 is out of its reach (a test
 * guest writes 0 for "passed" and the harness expects status 1). The OS keeps only the low 8 bits
 * of an exit status (POSIX `_exit`: `status & 0377` reaches the parent), so writing 0x80 exits 1 as
 * well; `onExit` gets the whole value written, and the machine derives the status.
 *
 * Any write size ends the machine (QEMU `valid.min/max_access_size` 1-4), with the value of the
 * piece QEMU would dispatch first (port-device.ts): an aligned access is written whole, a
 * misaligned one only up to its offset's alignment (a dword OUT at port 0xf6 writes its low word).
 * Reads return 0 (QEMU `debug_exit_read`).
 *
 * QEMU's process is gone after the first write; here the machine stops its vCPUs when told, and a
 * write that other vCPUs make meanwhile must not change the status: the first write decides, and
 * later ones are only counted (`writesAfterExit`).
 */

import { ErrorCode, IrqChipError } from '../../base/errors.ts';
import { PortDevice } from './port-device.ts';

/** iosize=0x04: ports 0xf4-0xf7 (machine-layout.ts `Port.DebugExitBytes`). */
const DEBUG_EXIT_PORTS = 4;
/** QEMU dispatches a dword whole (`valid.max_access_size = 4`). */
const WIDEST_PIECE_BYTES = 4;

export const ISA_DEBUG_EXIT_COUNTER_NAMES = [
  /** Writes after the first (the machine is already ending; the status stays the first one's). */
  'writesAfterExit',
  /** Accesses reaching past the device's four ports. */
  'accessesPastEnd',
] as const;
export type IsaDebugExitCounterName = (typeof ISA_DEBUG_EXIT_COUNTER_NAMES)[number];

export interface IsaDebugExitOptions {
  /** Called once, with the value of the guest's first write; QEMU's exit status is (value << 1) | 1. */
  readonly onExit: (value: number) => void;
}

export class IsaDebugExit extends PortDevice {
  readonly busName = 'isa-debug-exit';
  private readonly onExit: (value: number) => void;
  private exited = false;
  private writesAfterExit = 0;

  constructor(options: IsaDebugExitOptions) {
    super(DEBUG_EXIT_PORTS, WIDEST_PIECE_BYTES);
    if (typeof options.onExit !== 'function') throw new IrqChipError(ErrorCode.EINVAL, 'isa-debug-exit needs an onExit function');
    this.onExit = options.onExit;
  }

  counters(): Readonly<Record<IsaDebugExitCounterName, number>> {
    return { writesAfterExit: this.writesAfterExit, accessesPastEnd: this.accessesPastEnd };
  }

  protected readPiece(): number {
    return 0;
  }

  override write(offset: number, size: number, value: number): void {
    const alreadyExited = this.exited;
    super.write(offset, size, value);
    if (alreadyExited) this.writesAfterExit++;
  }

  /** The first piece of the first write ends the machine (QEMU exits there); any later piece changes nothing. */
  protected writePiece(_offset: number, _size: number, value: number): void {
    if (this.exited) return;
    this.exited = true;
    this.onExit(value);
  }
}
