/**
 * GSI routes: where a global system interrupt goes (seed-apis.md §2.3; x86-controllers.md §5.1).
 *
 * A GSI is the VMM's interrupt number. Each GSI maps to one or more sources: pins of the 8259A
 * pair or of the IOAPIC (both may be driven for a legacy ISA IRQ, so the guest can use either), or
 * one MSI message.
 */

import { ErrorCode, IrqChipError, checkRange } from '../base/errors.ts';
import { U32_MAX, isU64 } from '../base/integers.ts';
import { IOAPIC_PIN_COUNT } from '../x86/ioapic/ioapic.ts';

/** The interrupt controllers a GSI can be routed to (crosvm `IrqSourceChip`, x86 subset). */
export const IrqSourceChip = {
  PicPrimary: 'pic-primary',
  PicSecondary: 'pic-secondary',
  Ioapic: 'ioapic',
} as const;
export type IrqSourceChip = (typeof IrqSourceChip)[keyof typeof IrqSourceChip];

export type IrqSource =
  | { readonly kind: 'irqchip'; readonly chip: IrqSourceChip; readonly pin: number }
  | { readonly kind: 'msi'; readonly address: bigint; readonly data: number };

export interface IrqRoute {
  readonly gsi: number;
  readonly source: IrqSource;
}

/** KVM_MAX_IRQ_ROUTES: GSIs are 0..4095 (x86-controllers.md §5.1). */
export const MAX_GSI_COUNT = 4096;
/** Pins per 8259A. */
export const PIC_PINS_PER_CHIP = 8;
/** GSIs below this are the ISA IRQs that the default table routes to both the PIC and the IOAPIC. */
const ISA_IRQ_COUNT = 16;

/** KVM's irqchip numbering in `kvm_irq_routing_irqchip` (0 = PIC master, 1 = PIC slave, 2 = IOAPIC). */
export function kvmIrqchipId(chip: IrqSourceChip): number {
  switch (chip) {
    case IrqSourceChip.PicPrimary:
      return 0;
    case IrqSourceChip.PicSecondary:
      return 1;
    case IrqSourceChip.Ioapic:
      return 2;
  }
}

/** GSI n → IOAPIC pin n. */
export function ioapicIrqRoute(pin: number): IrqRoute {
  return { gsi: pin, source: { kind: 'irqchip', chip: IrqSourceChip.Ioapic, pin } };
}

/** GSI n → pin n % 8 of the given 8259A (crosvm `pic_irq_route`). */
export function picIrqRoute(chip: typeof IrqSourceChip.PicPrimary | typeof IrqSourceChip.PicSecondary, gsi: number): IrqRoute {
  return { gsi, source: { kind: 'irqchip', chip, pin: gsi % PIC_PINS_PER_CHIP } };
}

/** GSI → MSI message. */
export function msiIrqRoute(gsi: number, address: bigint, data: number): IrqRoute {
  return { gsi, source: { kind: 'msi', address, data } };
}

/**
 * The default x86 table, as KVM_CREATE_IRQCHIP installs it and crosvm's
 * `default_pic_ioapic_routes` builds it (x86-controllers.md §5.2): GSI 0–7 → PIC master pin n and
 * IOAPIC pin n; 8–15 → PIC slave pin n−8 and IOAPIC pin n; 16..pins−1 → IOAPIC only. ISA IRQ 0 is
 * not moved to IOAPIC pin 2: the MADT we describe must not carry that override.
 */
export function defaultIrqRoutes(ioapicPins: number = IOAPIC_PIN_COUNT): IrqRoute[] {
  checkRange(ioapicPins, ISA_IRQ_COUNT, IOAPIC_PIN_COUNT, 'IOAPIC pin count');
  const routes: IrqRoute[] = [];
  for (let gsi = 0; gsi < ioapicPins; gsi++) {
    if (gsi < PIC_PINS_PER_CHIP) routes.push(picIrqRoute(IrqSourceChip.PicPrimary, gsi));
    else if (gsi < ISA_IRQ_COUNT) routes.push(picIrqRoute(IrqSourceChip.PicSecondary, gsi));
    routes.push(ioapicIrqRoute(gsi));
  }
  return routes;
}

/** The ISA IRQ (0–15) a PIC route reaches: pin on the primary, 8 + pin on the secondary (seed-apis.md §6.20). */
export function isaIrqOfPicPin(chip: typeof IrqSourceChip.PicPrimary | typeof IrqSourceChip.PicSecondary, pin: number): number {
  return chip === IrqSourceChip.PicPrimary ? pin : PIC_PINS_PER_CHIP + pin;
}

/**
 * Checks one route's fields: GSI in range, a known chip and a pin it has, MSI address a u64 and
 * data a u32. Throws EINVAL naming the problem.
 */
export function validateRoute(route: IrqRoute, ioapicPins: number): void {
  checkRange(route.gsi, 0, MAX_GSI_COUNT - 1, 'GSI');
  const { source } = route;
  if (source.kind === 'msi') {
    if (!isU64(source.address)) {
      throw new IrqChipError(ErrorCode.EINVAL, `GSI ${route.gsi}: MSI address must be a u64 bigint`);
    }
    checkRange(source.data, 0, U32_MAX, `GSI ${route.gsi}: MSI data`);
    return;
  }
  if ((source.kind as string) !== 'irqchip') throw new IrqChipError(ErrorCode.EINVAL, `GSI ${route.gsi}: unknown source kind`);
  switch (source.chip) {
    case IrqSourceChip.PicPrimary:
    case IrqSourceChip.PicSecondary:
      checkRange(source.pin, 0, PIC_PINS_PER_CHIP - 1, `GSI ${route.gsi}: PIC pin`);
      return;
    case IrqSourceChip.Ioapic:
      checkRange(source.pin, 0, ioapicPins - 1, `GSI ${route.gsi}: IOAPIC pin`);
      return;
    default:
      throw new IrqChipError(ErrorCode.EINVAL, `GSI ${route.gsi}: unknown irqchip '${String(source.chip)}'`);
  }
}

/** Whether `added` displaces `existing` on the same GSI: both MSI, or both pins of the same chip. */
export function sourcesConflict(existing: IrqSource, added: IrqSource): boolean {
  if (existing.kind === 'msi' || added.kind === 'msi') return existing.kind === added.kind;
  return existing.chip === added.chip;
}
