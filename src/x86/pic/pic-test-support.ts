/**
 * Helpers shared by the PIC tests: the spec's notation (§7: `out`, `in`, standard init) over a
 * `PicPair`.
 */
import { initialisePicPair } from './pic-init.ts';
import { PicChip, type PicChipRegisters, type PicPair } from './pic.ts';

/** ICW4 for 8086 mode with normal EOI, as in the spec's standard init. */
export const ICW4_8086 = 0x01;
/** ICW4 for 8086 mode with automatic EOI. */
export const ICW4_8086_AEOI = 0x03;
/** ICW4 for 8086 mode with special fully nested mode. */
export const ICW4_8086_SFNM = 0x11;

/** OCW2 non-specific EOI. */
export const NON_SPECIFIC_EOI = 0x20;

export function out(pic: PicPair, port: number, value: number): void {
  pic.writePort(port, 1, value);
}

export function inb(pic: PicPair, port: number): number {
  return pic.readPort(port, 1);
}

/**
 * The spec's standard init (§7): master ICW 0x11, 0x08, 0x04, icw4; slave ICW 0x11, 0x70, 0x02,
 * icw4 — edge, vectors 0x08/0x70, cascade on IR2.
 */
export function standardInit(pic: PicPair, masterIcw4 = ICW4_8086, slaveIcw4 = ICW4_8086): void {
  initialisePicPair(pic, { masterVectorBase: 0x08, slaveVectorBase: 0x70, masterIcw4, slaveIcw4 });
}

export function master(pic: PicPair): PicChipRegisters {
  return pic.registers(PicChip.Master);
}

export function slave(pic: PicPair): PicChipRegisters {
  return pic.registers(PicChip.Slave);
}

/** An edge on `irq`: raise then lower the line. */
export function pulse(pic: PicPair, irq: number): void {
  pic.setIrq(irq, true);
  pic.setIrq(irq, false);
}

/** Raises `irq` and runs the INTA cycle, leaving the IRQ in service; returns the vector. */
export function serve(pic: PicPair, irq: number): number {
  pulse(pic, irq);
  return pic.acknowledge();
}
