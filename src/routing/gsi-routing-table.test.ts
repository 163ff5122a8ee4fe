import assert from 'node:assert/strict';
import { test } from 'node:test';
import fc from 'fast-check';
import { rejectsWith } from '../testing/irq-chip-error.ts';
import { GsiRoutingTable } from './gsi-routing-table.ts';
import { IrqSourceChip, defaultIrqRoutes, ioapicIrqRoute, isaIrqOfPicPin, msiIrqRoute, picIrqRoute, type IrqRoute } from './irq-route.ts';

const isEinval = rejectsWith('EINVAL');

test('default table: GSI 0–7 → PIC primary + IOAPIC, 8–15 → PIC secondary + IOAPIC, 16–23 → IOAPIC only', () => {
  const table = new GsiRoutingTable();
  assert.deepEqual(table.sources(0), [
    { kind: 'irqchip', chip: IrqSourceChip.PicPrimary, pin: 0 },
    { kind: 'irqchip', chip: IrqSourceChip.Ioapic, pin: 0 },
  ]);
  assert.deepEqual(table.sources(12), [
    { kind: 'irqchip', chip: IrqSourceChip.PicSecondary, pin: 4 },
    { kind: 'irqchip', chip: IrqSourceChip.Ioapic, pin: 12 },
  ]);
  assert.deepEqual(table.sources(16), [{ kind: 'irqchip', chip: IrqSourceChip.Ioapic, pin: 16 }]);
  assert.equal(table.sources(24).length, 0);
  assert.equal(table.routes().length, 16 * 2 + 8);
});

test('crosvm add_routes: same-chip replacement, chip mixing, MSI/irqchip exclusion, empty far GSIs', () => {
  const table = new GsiRoutingTable();
  assert.equal(table.sources(0).length, 2);
  assert.equal(table.sources(23).length, 1);
  table.add({ gsi: 23, source: { kind: 'irqchip', chip: IrqSourceChip.Ioapic, pin: 3 } });
  assert.equal(table.sources(23).length, 1, 'the IOAPIC route on GSI 23 was replaced');
  table.add(picIrqRoute(IrqSourceChip.PicPrimary, 23));
  assert.equal(table.sources(23).length, 2);
  assert.throws(() => {
    table.add(msiIrqRoute(23, 0xfee00000n, 0x30));
  }, isEinval);
  assert.equal(table.sources(23).length, 2, 'the refused MSI changed nothing');
  table.add(msiIrqRoute(24, 0xfee00000n, 0x30));
  assert.throws(() => {
    table.add({ gsi: 24, source: { kind: 'irqchip', chip: IrqSourceChip.Ioapic, pin: 3 } });
  }, isEinval);
  assert.deepEqual(table.sources(24), [{ kind: 'msi', address: 0xfee00000n, data: 0x30 }]);
  assert.equal(table.sources(500).length, 0);
});

test('a second MSI route on a GSI replaces the first', () => {
  const table = new GsiRoutingTable();
  table.add(msiIrqRoute(30, 0xfee00000n, 0x40));
  table.add(msiIrqRoute(30, 0xfee01000n, 0x41));
  assert.deepEqual(table.sources(30), [{ kind: 'msi', address: 0xfee01000n, data: 0x41 }]);
});

test('invalid routes are EINVAL and change nothing: GSI 4096, PIC pin 8, IOAPIC pin 24, unknown chip, bad MSI', () => {
  const table = new GsiRoutingTable();
  const before = table.routes();
  const bad: IrqRoute[] = [
    ioapicIrqRoute(4096),
    { gsi: 5, source: { kind: 'irqchip', chip: IrqSourceChip.PicPrimary, pin: 8 } },
    { gsi: 5, source: { kind: 'irqchip', chip: IrqSourceChip.Ioapic, pin: 24 } },
    { gsi: 5, source: { kind: 'irqchip', chip: 'gic' as IrqSourceChip, pin: 0 } },
    { gsi: -1, source: { kind: 'irqchip', chip: IrqSourceChip.Ioapic, pin: 0 } },
    msiIrqRoute(40, -1n, 0),
    msiIrqRoute(40, 1n << 64n, 0),
    msiIrqRoute(40, 0xfee00000n, 2 ** 32),
  ];
  for (const route of bad) {
    assert.throws(() => {
      table.add(route);
    }, isEinval);
  }
  assert.deepEqual(table.routes(), before);
});

test('replaceAll applies whole or not at all (crosvm leaves a half table)', () => {
  const table = new GsiRoutingTable();
  const before = table.routes();
  assert.throws(() => {
    table.replaceAll([ioapicIrqRoute(5), msiIrqRoute(30, 0xfee00000n, 0x30), msiIrqRoute(5, 0xfee00000n, 0x31)]);
  }, isEinval);
  assert.deepEqual(table.routes(), before);
  table.replaceAll([ioapicIrqRoute(5)]);
  assert.equal(table.sources(4).length, 0, 'old routes, defaults included, are gone');
  assert.deepEqual(table.sources(5), [{ kind: 'irqchip', chip: IrqSourceChip.Ioapic, pin: 5 }]);
  table.replaceAll([]);
  assert.equal(table.routes().length, 0);
});

test('replaceAll: within the input, a later conflicting entry wins', () => {
  const table = new GsiRoutingTable(24, []);
  table.replaceAll([msiIrqRoute(40, 0xfee00000n, 1), msiIrqRoute(40, 0xfee00000n, 2), ioapicIrqRoute(7), { gsi: 7, source: { kind: 'irqchip', chip: IrqSourceChip.Ioapic, pin: 9 } }]);
  assert.deepEqual(table.sources(40), [{ kind: 'msi', address: 0xfee00000n, data: 2 }]);
  assert.deepEqual(table.sources(7), [{ kind: 'irqchip', chip: IrqSourceChip.Ioapic, pin: 9 }]);
});

test('reverse map: pin → GSIs follows every change', () => {
  const table = new GsiRoutingTable();
  assert.deepEqual(table.gsisOfPin(IrqSourceChip.Ioapic, 4), [4]);
  assert.deepEqual(table.gsisOfPin(IrqSourceChip.PicSecondary, 4), [12]);
  table.add({ gsi: 20, source: { kind: 'irqchip', chip: IrqSourceChip.Ioapic, pin: 4 } });
  assert.deepEqual(table.gsisOfPin(IrqSourceChip.Ioapic, 4), [4, 20]);
  assert.deepEqual(table.gsisOfPin(IrqSourceChip.Ioapic, 20), [], 'pin 20 lost its only GSI');
});

test('a secondary-PIC route reaches ISA IRQ 8 + pin (crosvm passes the bare pin to the primary)', () => {
  assert.equal(isaIrqOfPicPin(IrqSourceChip.PicSecondary, 4), 12);
  assert.equal(isaIrqOfPicPin(IrqSourceChip.PicPrimary, 4), 4);
});

test('defaultIrqRoutes rejects a pin count outside 16–24', () => {
  assert.throws(() => defaultIrqRoutes(25), isEinval);
  assert.throws(() => defaultIrqRoutes(8), isEinval);
});

test('property: after any sequence of adds, no GSI mixes kinds, no GSI has two routes to one chip or two MSIs, and failures change nothing', () => {
  const route = fc.oneof(
    fc.record({ gsi: fc.integer({ min: 0, max: 40 }), pin: fc.integer({ min: 0, max: 26 }), chip: fc.constantFrom(...Object.values(IrqSourceChip)) }).map(
      ({ gsi, pin, chip }): IrqRoute => ({ gsi, source: { kind: 'irqchip', chip, pin } }),
    ),
    fc.record({ gsi: fc.integer({ min: 0, max: 40 }), data: fc.integer({ min: 0, max: 0xff }) }).map(({ gsi, data }) => msiIrqRoute(gsi, 0xfee00000n, data)),
  );
  fc.assert(
    fc.property(fc.array(route, { maxLength: 60 }), (routes) => {
      const table = new GsiRoutingTable();
      for (const candidate of routes) {
        const before = table.routes();
        try {
          table.add(candidate);
        } catch (error) {
          assert.ok(isEinval(error));
          assert.deepEqual(table.routes(), before);
        }
      }
      for (let gsi = 0; gsi <= 40; gsi++) {
        const sources = table.sources(gsi);
        const msis = sources.filter((source) => source.kind === 'msi').length;
        assert.ok(msis === 0 || sources.length === 1);
        const chips = sources.flatMap((source) => (source.kind === 'irqchip' ? [source.chip] : []));
        assert.equal(new Set(chips).size, chips.length);
      }
    }),
  );
});
