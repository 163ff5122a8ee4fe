import assert from 'node:assert/strict';
import { test } from 'node:test';
import { rejectsWith } from '../testing/irq-chip-error.ts';
import { IrqSourceChip, defaultIrqRoutes, ioapicIrqRoute, msiIrqRoute } from './irq-route.ts';
import { SharedRoutingTable } from './shared-routing-table.ts';

test('a second view sees every change made through the first, and the reverse', () => {
  const owner = SharedRoutingTable.create(24, defaultIrqRoutes());
  const view = SharedRoutingTable.fromDescriptor(structuredClone(owner.descriptor()));
  assert.deepEqual(view.current().routes(), owner.current().routes());
  owner.addRoute(msiIrqRoute(30, 0xfee01000n, 0xf1));
  assert.deepEqual(view.current().sources(30), [{ kind: 'msi', address: 0xfee01000n, data: 0xf1 }]);
  view.addRoute({ gsi: 30, source: { kind: 'msi', address: 0x1_fee02000n, data: 0xffffffff } });
  assert.deepEqual(owner.current().sources(30), [{ kind: 'msi', address: 0x1_fee02000n, data: 0xffffffff }]);
  view.setRoutes([ioapicIrqRoute(5)]);
  assert.deepEqual(owner.current().routes(), [{ gsi: 5, source: { kind: 'irqchip', chip: IrqSourceChip.Ioapic, pin: 5 } }]);
});

test('a refused change is EINVAL and changes nothing in any view; the generation moves only on success', () => {
  const owner = SharedRoutingTable.create(24, defaultIrqRoutes());
  const view = SharedRoutingTable.fromDescriptor(owner.descriptor());
  const generation = owner.generation();
  assert.throws(
    () => {
      view.addRoute(msiIrqRoute(4, 0xfee00000n, 0x30));
    },
    rejectsWith('EINVAL'),
  );
  assert.equal(owner.generation(), generation);
  assert.deepEqual(view.current().routes(), defaultIrqRoutes());
  assert.deepEqual(owner.current().routes(), defaultIrqRoutes());
});

test('the largest table (three routes on every GSI) round-trips', () => {
  const routes = Array.from({ length: 4096 }, (_, gsi) => [
    { gsi, source: { kind: 'irqchip' as const, chip: IrqSourceChip.PicPrimary, pin: gsi % 8 } },
    { gsi, source: { kind: 'irqchip' as const, chip: IrqSourceChip.PicSecondary, pin: gsi % 8 } },
    { gsi, source: { kind: 'irqchip' as const, chip: IrqSourceChip.Ioapic, pin: gsi % 24 } },
  ]).flat();
  const owner = SharedRoutingTable.create(24, routes);
  const view = SharedRoutingTable.fromDescriptor(owner.descriptor());
  assert.equal(view.current().routes().length, 4096 * 3);
});
