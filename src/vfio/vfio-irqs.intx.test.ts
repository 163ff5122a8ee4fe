/**
 * INTx through VfioIrqs (seed-apis.md §5.3, §5.7): automasking, unmasking by ACTION_UNMASK and by
 * the unmask eventfd, re-delivery of a line still asserted at unmask, loopback, disable.
 */
import assert from 'node:assert/strict';
import { describe, test } from 'node:test';
import fc from 'fast-check';
import { IrqLevelEvent } from '../event/irq-event.ts';
import { rig, TYPICAL_FUNCTION, type Rig } from './vfio-test-support.ts';
import { VfioIrqs } from './vfio-irqs.ts';
import {
  irqSetBools,
  irqSetEventfds,
  irqSetNone,
  VFIO_IRQ_SET_ACTION_MASK as MASK,
  VFIO_IRQ_SET_ACTION_TRIGGER as TRIGGER,
  VFIO_IRQ_SET_ACTION_UNMASK as UNMASK,
  VFIO_PCI_INTX_IRQ_INDEX as INTX,
} from './vfio-uapi.ts';

interface LevelRig {
  readonly irqs: VfioIrqs;
  readonly level: IrqLevelEvent;
}

/** crosvm's `enable_intx`: TRIGGER = the level event's trigger, MASK, UNMASK eventfd = its resample, UNMASK. */
function levelWiredIntx(): LevelRig {
  const irqs = new VfioIrqs(TYPICAL_FUNCTION);
  const level = new IrqLevelEvent();
  const triggerFd = irqs.fds.install(level.getTrigger());
  const resampleFd = irqs.fds.install(level.getResample());
  irqs.setIrqs(irqSetEventfds(TRIGGER, INTX, 0, [triggerFd]));
  irqs.setIrqs(irqSetNone(MASK, INTX, 0, 1));
  irqs.setIrqs(irqSetEventfds(UNMASK, INTX, 0, [resampleFd]));
  irqs.setIrqs(irqSetNone(UNMASK, INTX, 0, 1));
  return { irqs, level };
}

function enableIntx(subject: Rig): void {
  subject.irqs.setIrqs(irqSetEventfds(TRIGGER, INTX, 0, [subject.fds[0] ?? -1]));
}

function triggerCount(subject: Rig): bigint {
  return subject.events[0]?.tryRead() ?? -1n;
}

describe('INTx automask and the level-event handshake', () => {
  test('crosvm enable sequence leaves INTx enabled, unmasked, with trigger and unmask eventfd bound', () => {
    const { irqs, level } = levelWiredIntx();
    const state = irqs.state();
    assert.equal(state.activeIndex, INTX);
    assert.equal(state.intxMasked, false);
    assert.equal(state.intxTrigger, level.getTrigger());
    assert.equal(state.intxUnmaskEvent, level.getResample());
    assert.equal(irqs.counters().setIrqsApplied, 4);
  });

  test('an assert signals the trigger once and automasks; asserting again while masked signals nothing', () => {
    const { irqs, level } = levelWiredIntx();
    irqs.raiseIntx();
    assert.equal(level.clearTrigger(), true);
    assert.equal(irqs.state().intxMasked, true);
    irqs.raiseIntx();
    assert.equal(level.clearTrigger(), false, 'held on the line, not signalled twice');
  });

  test('resample while the device still asserts: stays masked and the trigger is signalled again', () => {
    const { irqs, level } = levelWiredIntx();
    irqs.raiseIntx();
    level.clearTrigger();
    level.triggerResample(); // the guest's EOI, through the chip
    irqs.serviceIrqfds();
    assert.equal(level.clearTrigger(), true, 're-delivered');
    assert.equal(irqs.state().intxMasked, true);
    assert.equal(level.getResample().readCount(), 0n, 'the unmask eventfd is consumed, as the virqfd reads it');
  });

  test('resample after the device de-asserted unmasks; the next assert is delivered', () => {
    const { irqs, level } = levelWiredIntx();
    irqs.raiseIntx();
    level.clearTrigger();
    irqs.lowerIntx();
    level.triggerResample();
    irqs.serviceIrqfds();
    assert.equal(irqs.state().intxMasked, false);
    assert.equal(level.clearTrigger(), false, 'nothing to re-deliver');
    irqs.raiseIntx();
    assert.equal(level.clearTrigger(), true);
  });

  test('a resample not yet serviced is honoured before the next assert (the virqfd would already have run)', () => {
    const { irqs, level } = levelWiredIntx();
    irqs.raiseIntx();
    level.clearTrigger();
    irqs.lowerIntx();
    level.triggerResample();
    irqs.raiseIntx(); // no serviceIrqfds() in between
    assert.equal(level.clearTrigger(), true);
  });

  test('property: over many cycles every unit of device work is delivered, none twice after service', () => {
    fc.assert(
      fc.property(fc.array(fc.integer({ min: 0, max: 3 }), { minLength: 1, maxLength: 200 }), (workArrivals) => {
        const { irqs, level } = levelWiredIntx();
        let pendingWork = 0;
        let serviced = 0;
        let deliveries = 0;
        const arrive = (units: number): void => {
          pendingWork += units;
          if (units > 0) irqs.raiseIntx();
        };
        for (const units of workArrivals) {
          arrive(units);
          // The chip takes the trigger; the guest's handler services one unit per delivery, the
          // device drops its line when it has no work left, and the guest EOIs (resample).
          while (level.clearTrigger()) {
            deliveries++;
            assert.ok(pendingWork > 0, 'a delivery with no work pending (spurious after the device de-asserted)');
            pendingWork--;
            serviced++;
            if (pendingWork === 0) irqs.lowerIntx();
            level.triggerResample();
            irqs.serviceIrqfds();
          }
          assert.equal(pendingWork, 0, 'work left undelivered');
        }
        assert.equal(serviced, workArrivals.reduce((sum, units) => sum + units, 0));
        assert.equal(deliveries, serviced);
        assert.equal(irqs.state().intxMasked, false);
      }),
      { numRuns: 200 },
    );
  });
});

describe('INTx mask and unmask by SET_IRQS', () => {
  test('ACTION_MASK holds an assert; UNMASK with DATA_NONE then delivers it (line still asserted)', () => {
    const subject = rig();
    enableIntx(subject);
    subject.irqs.setIrqs(irqSetNone(MASK, INTX, 0, 1));
    subject.irqs.raiseIntx();
    assert.equal(triggerCount(subject), 0n);
    subject.irqs.setIrqs(irqSetNone(UNMASK, INTX, 0, 1));
    assert.equal(triggerCount(subject), 1n);
    assert.equal(subject.irqs.state().intxMasked, true, 're-delivered, so masked again until the next unmask');
  });

  test('DATA_BOOL mask and unmask act only when the byte is non-zero', () => {
    const subject = rig();
    enableIntx(subject);
    subject.irqs.setIrqs(irqSetBools(MASK, INTX, 0, [false]));
    assert.equal(subject.irqs.state().intxMasked, false);
    subject.irqs.setIrqs(irqSetBools(MASK, INTX, 0, [true]));
    assert.equal(subject.irqs.state().intxMasked, true);
    subject.irqs.setIrqs(irqSetBools(UNMASK, INTX, 0, [false]));
    assert.equal(subject.irqs.state().intxMasked, true);
    subject.irqs.setIrqs(irqSetBools(UNMASK, INTX, 0, [true]));
    assert.equal(subject.irqs.state().intxMasked, false);
  });

  test('an unmask eventfd installed with a count already pending unmasks at once and consumes it', () => {
    const subject = rig();
    enableIntx(subject);
    subject.irqs.setIrqs(irqSetNone(MASK, INTX, 0, 1));
    subject.events[1]?.signal();
    subject.irqs.setIrqs(irqSetEventfds(UNMASK, INTX, 0, [subject.fds[1] ?? -1]));
    assert.equal(subject.irqs.state().intxMasked, false);
    assert.equal(subject.events[1]?.readCount(), 0n);
  });

  test('fd -1 removes the unmask eventfd: a later signal on it no longer unmasks', () => {
    const subject = rig();
    enableIntx(subject);
    subject.irqs.setIrqs(irqSetEventfds(UNMASK, INTX, 0, [subject.fds[1] ?? -1]));
    subject.irqs.setIrqs(irqSetEventfds(UNMASK, INTX, 0, [-1]));
    subject.irqs.raiseIntx();
    subject.irqs.lowerIntx();
    subject.events[1]?.signal();
    subject.irqs.serviceIrqfds();
    assert.equal(subject.irqs.state().intxUnmaskEvent, null);
    assert.equal(subject.irqs.state().intxMasked, true);
  });
});

describe('INTx trigger: enable, replace, -1, loopback, disable', () => {
  test('loopback DATA_NONE signals the trigger without masking; DATA_BOOL only for a non-zero byte', () => {
    const subject = rig();
    enableIntx(subject);
    subject.irqs.setIrqs(irqSetNone(TRIGGER, INTX, 0, 1));
    assert.equal(triggerCount(subject), 1n);
    assert.equal(subject.irqs.state().intxMasked, false);
    subject.irqs.setIrqs(irqSetBools(TRIGGER, INTX, 0, [false]));
    assert.equal(triggerCount(subject), 0n);
    subject.irqs.setIrqs(irqSetBools(TRIGGER, INTX, 0, [true]));
    assert.equal(triggerCount(subject), 1n);
  });

  test('a new trigger fd replaces the old one; the old one is no longer signalled', () => {
    const subject = rig();
    enableIntx(subject);
    subject.irqs.setIrqs(irqSetEventfds(TRIGGER, INTX, 0, [subject.fds[2] ?? -1]));
    subject.irqs.raiseIntx();
    assert.deepEqual([subject.events[0]?.tryRead(), subject.events[2]?.tryRead()], [0n, 1n]);
  });

  test('fd -1 keeps INTx enabled with no trigger; the assert masks and waits, delivered at unmask once rebound', () => {
    const subject = rig();
    enableIntx(subject);
    subject.irqs.setIrqs(irqSetEventfds(TRIGGER, INTX, 0, [-1]));
    assert.equal(subject.irqs.state().activeIndex, INTX);
    subject.irqs.raiseIntx();
    assert.equal(subject.irqs.state().intxMasked, true);
    subject.irqs.setIrqs(irqSetEventfds(TRIGGER, INTX, 0, [subject.fds[0] ?? -1]));
    assert.equal(triggerCount(subject), 0n);
    subject.irqs.setIrqs(irqSetNone(UNMASK, INTX, 0, 1));
    assert.equal(triggerCount(subject), 1n);
  });

  test('INTx can be enabled with fd -1 (no trigger yet), as current kernels allow', () => {
    const subject = rig();
    subject.irqs.setIrqs(irqSetEventfds(TRIGGER, INTX, 0, [-1]));
    assert.equal(subject.irqs.state().activeIndex, INTX);
    assert.equal(subject.irqs.state().intxTrigger, null);
  });

  test('count-0 DATA_NONE disables INTx and drops the unmask eventfd; the asserted line is delivered at re-enable', () => {
    const subject = rig();
    enableIntx(subject);
    subject.irqs.setIrqs(irqSetEventfds(UNMASK, INTX, 0, [subject.fds[1] ?? -1]));
    subject.irqs.setIrqs(irqSetNone(TRIGGER, INTX, 0, 0));
    const state = subject.irqs.state();
    assert.deepEqual([state.activeIndex, state.intxTrigger, state.intxUnmaskEvent, state.intxMasked], [null, null, null, false]);
    subject.irqs.raiseIntx();
    assert.equal(triggerCount(subject), 0n);
    enableIntx(subject);
    assert.equal(triggerCount(subject), 1n, 'request_irq on an asserted line runs the handler');
    assert.equal(subject.irqs.state().intxMasked, true);
  });

  test('raise(INTx) is raiseIntx; a raise on a function without an INTx pin is EINVAL', () => {
    const subject = rig();
    enableIntx(subject);
    subject.irqs.raise(INTX);
    assert.equal(triggerCount(subject), 1n);
    const pinless = new VfioIrqs({ ...TYPICAL_FUNCTION, intx: false });
    assert.throws(() => {
      pinless.raiseIntx();
    }, /EINVAL/);
    assert.throws(() => {
      subject.irqs.raise(INTX, 1);
    }, /EINVAL/);
  });
});
