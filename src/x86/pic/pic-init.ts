/**
 * Initialising the 8259A pair as PC firmware leaves it: the four initialisation command words
 * to each chip through its ports (8259A datasheet, "Initialization command words";
 * x86-controllers.md §1.6). Guests normally do this themselves; the helpers are for code that
 * drives a `PicPair` without guest firmware (benchmarks, tests) and for simulated guests (demos).
 */
import { CASCADE_PIN, ICW1_IC4, ICW1_MARKER, ICW4_MICROPROCESSOR_8086 } from './pic-chip.ts';
import { type PicPair, PicPort } from './pic.ts';

/** ICW1: ICW4 needed, cascade mode (SNGL = 0), edge-triggered inputs (LTIM = 0). */
const ICW1_EDGE_CASCADE_WITH_ICW4 = ICW1_MARKER | ICW1_IC4;
/** ICW4 unless told otherwise: 8086 mode, normal EOI, not special fully nested. */
const DEFAULT_ICW4 = ICW4_MICROPROCESSOR_8086;

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
 * The byte writes, in order, of ICW1–ICW4 to both chips in the PC's cascade: the slave's INT
 * output on master input `CASCADE_PIN` (master ICW3 is that input's bit, slave ICW3 its number).
 * Afterwards both chips are ready, with IMR 0 (every IRQ unmasked).
 */
export function picPairInitialisationWrites(initialisation: PicPairInitialisation): (readonly [port: number, value: number])[] {
  const chips = [
    [PicPort.MasterCommand, PicPort.MasterData, initialisation.masterVectorBase, 1 << CASCADE_PIN, initialisation.masterIcw4 ?? DEFAULT_ICW4],
    [PicPort.SlaveCommand, PicPort.SlaveData, initialisation.slaveVectorBase, CASCADE_PIN, initialisation.slaveIcw4 ?? DEFAULT_ICW4],
  ] as const;
  return chips.flatMap(([commandPort, dataPort, vectorBase, icw3, icw4]) => [
    [commandPort, ICW1_EDGE_CASCADE_WITH_ICW4] as const,
    [dataPort, vectorBase] as const,
    [dataPort, icw3] as const,
    [dataPort, icw4] as const,
  ]);
}

/** Sends `picPairInitialisationWrites(initialisation)` to `pic`'s ports. */
export function initialisePicPair(pic: PicPair, initialisation: PicPairInitialisation): void {
  for (const [port, value] of picPairInitialisationWrites(initialisation)) pic.writePort(port, 1, value);
}
