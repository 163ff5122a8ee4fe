/**
 * Initialising the 8259A pair as PC firmware leaves it: the four initialisation command words
 * to each chip through its ports (8259A datasheet, "Initialization command words";
 * x86-controllers.md §1.6). Guests normally do this themselves; the helper is for code that
 * drives a `PicPair` without guest firmware (benchmarks, tests, demos).
 */
import { CASCADE_PIN } from './pic-chip.ts';
import { type PicPair, PicPort } from './pic.ts';

/** ICW1: ICW4 needed, cascade mode, edge-triggered inputs. */
const ICW1_EDGE_CASCADE_WITH_ICW4 = 0x11;
/** ICW4 unless told otherwise: 8086 mode, normal EOI, not special fully nested. */
const DEFAULT_ICW4 = 0x01;

export interface PicPairInitialisation {
  /** ICW2: the master's vector base (IRQ 0), a multiple of 8. */
  readonly masterVectorBase: number;
  /** ICW2: the slave's vector base (IRQ 8), a multiple of 8. */
  readonly slaveVectorBase: number;
  /** ICW4 of each chip; default 0x01 (8086 mode, normal EOI). */
  readonly masterIcw4?: number;
  readonly slaveIcw4?: number;
}

/**
 * Sends ICW1–ICW4 to both chips in the PC's cascade: the slave's INT output on master input
 * `CASCADE_PIN` (master ICW3 is that input's bit, slave ICW3 its number). Afterwards both chips
 * are ready, with IMR 0 (every IRQ unmasked).
 */
export function initialisePicPair(pic: PicPair, initialisation: PicPairInitialisation): void {
  const chips = [
    [PicPort.MasterCommand, PicPort.MasterData, initialisation.masterVectorBase, 1 << CASCADE_PIN, initialisation.masterIcw4 ?? DEFAULT_ICW4],
    [PicPort.SlaveCommand, PicPort.SlaveData, initialisation.slaveVectorBase, CASCADE_PIN, initialisation.slaveIcw4 ?? DEFAULT_ICW4],
  ] as const;
  for (const [commandPort, dataPort, vectorBase, icw3, icw4] of chips) {
    pic.writePort(commandPort, 1, ICW1_EDGE_CASCADE_WITH_ICW4);
    pic.writePort(dataPort, 1, vectorBase);
    pic.writePort(dataPort, 1, icw3);
    pic.writePort(dataPort, 1, icw4);
  }
}
