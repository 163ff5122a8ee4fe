/**
 * `IrqLine`: one interrupt input of the chip as a device sees it. The machine gives each device
 * the lines it drives (machine-layout.ts says which GSI): a level that the chip samples
 * (`IrqChip.serviceIrq`). An edge-triggered device raises and lowers it (QEMU's `qemu_irq_pulse`);
 * a level-triggered one holds it while it wants service.
 */
export interface IrqLine {
  setLevel(level: boolean): void;
}
