/**
 * The IRQ-line ports of QEMU's pc-testdev (hw/misc/pc-testdev.c, "pc-testdev-irq-line"): 24 ports
 * from 0x2000, one per interrupt line. A byte written to port 0x2000 + n sets line n's level: high
 * when the byte is nonzero, low when it is 0 (QEMU `qemu_set_irq(isa_get_irq(dev, n), !!data)`).
 * The machine drives GSI n with it (`chip.serviceIrq(n, level)`), so a guest can raise and lower
 * every IOAPIC pin, and ISA IRQs 0-15 also reach the 8259A pair, as kvm-unit-tests' ioapic test
 * does under QEMU. Every write is passed on, even one that repeats the level: the line, not this
 * device, decides what an edge is.
 *
 * QEMU's region takes single bytes only (`valid.max_access_size = 1`), so its memory core breaks a
 * word or dword OUT into byte writes to consecutive lines, lowest first (port-device.ts): `outw`
 * of 0x0101 to 0x2000 raises lines 0 and 1. Reads return 0 (QEMU `test_irq_line_read`).
 *
 * Only the IRQ lines are modelled. pc-testdev's other regions are not, and read as unclaimed ports
 * (all ones; writes dropped): the 32-bit scratch port at 0xe0 and its byte-wide twin at 0xe8
 * (kvm-unit-tests' emulator and I/O tests), the flush-page port at 0xe4 (it mprotects a guest
 * page to force a fault), and the 64 KiB scratch MMIO window at 0xff000000.
 */

import { ErrorCode, IrqChipError } from '../../base/errors.ts';
import { TESTDEV_IRQ_LINES } from '../machine-layout.ts';
import { PortDevice } from './port-device.ts';

export const PC_TESTDEV_COUNTER_NAMES = [
  /** Accesses reaching past the last line's port (0x2017). */
  'accessesPastEnd',
] as const;
export type PcTestdevCounterName = (typeof PC_TESTDEV_COUNTER_NAMES)[number];

export interface PcTestdevOptions {
  /** Sets interrupt line `line` (0-23) to `level`; the machine calls `chip.serviceIrq(line, level)`. */
  readonly setLine: (line: number, level: boolean) => void;
}

export class PcTestdev extends PortDevice {
  readonly busName = 'pc-testdev';
  private readonly setLine: (line: number, level: boolean) => void;

  constructor(options: PcTestdevOptions) {
    super(TESTDEV_IRQ_LINES, 1);
    if (typeof options.setLine !== 'function') throw new IrqChipError(ErrorCode.EINVAL, 'pc-testdev needs a setLine function');
    this.setLine = options.setLine;
  }

  counters(): Readonly<Record<PcTestdevCounterName, number>> {
    return { accessesPastEnd: this.accessesPastEnd };
  }

  protected readPiece(): number {
    return 0;
  }

  protected writePiece(line: number, _size: number, value: number): void {
    this.setLine(line, value !== 0);
  }
}
