/**
 * The names of the chip modes, without the chips: what the command line parses, so that
 * `irqchip demo` runs where the native addon cannot load (chip-mode.ts loads it).
 */
export type ChipMode = 'kernel' | 'split' | 'userspace';
export const CHIP_MODES: readonly ChipMode[] = ['kernel', 'split', 'userspace'];
