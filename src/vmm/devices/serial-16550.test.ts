import assert from 'node:assert/strict';
import { describe, test } from 'node:test';
import fc from 'fast-check';
import { IrqChipError } from '../../base/errors.ts';
import type { IrqLine } from './irq-line.ts';
import { SERIAL_16550_COUNTER_NAMES, Serial16550 } from './serial-16550.ts';

/** Register offsets and bits, spelled out as a guest's driver would (PC16550D datasheet). */
const RBR = 0;
const THR = 0;
const IER = 1;
const IIR = 2;
const FCR = 2;
const LCR = 3;
const MCR = 4;
const LSR = 5;
const MSR = 6;
const SCR = 7;
const DLAB = 0x80;
const LSR_IDLE = 0x60; // THRE | TEMT
const LSR_DR = 0x01;
const LSR_OE = 0x02;
const IIR_NONE = 0x01;
const IIR_THRE = 0x02;
const IIR_RDA = 0x04;
const IIR_RLS = 0x06;
const IIR_CTI = 0x0c;
const IIR_FIFO = 0xc0;
const MCR_LOOP = 0x10;

/** An interrupt line that remembers its level and counts rising edges. */
class RecordingLine implements IrqLine {
  level = false;
  rises = 0;
  calls = 0;
  setLevel(level: boolean): void {
    this.calls++;
    if (level && !this.level) this.rises++;
    this.level = level;
  }
}

function uart(): { readonly uart: Serial16550; readonly line: RecordingLine; readonly output: number[] } {
  const line = new RecordingLine();
  const output: number[] = [];
  const device = new Serial16550({
    irq: line,
    output: (byte) => {
      output.push(byte);
    },
  });
  return { uart: device, line, output };
}

function inb(device: Serial16550, offset: number): number {
  return device.read(offset, 1);
}

function outb(device: Serial16550, offset: number, value: number): void {
  device.write(offset, 1, value);
}

/** What guests/lib/machine.c does: 115200 baud (divisor 1), 8N1, FIFOs on and cleared, DTR, RTS, OUT2. */
function initLikeOurGuests(device: Serial16550): void {
  outb(device, IER, 0);
  outb(device, LCR, DLAB);
  outb(device, 0, 1);
  outb(device, 1, 0);
  outb(device, LCR, 0x03);
  outb(device, FCR, 0xc7);
  outb(device, MCR, 0x0b);
}

describe('Serial16550: registers', () => {
  test('reset state is QEMU’s: IIR none, LSR THRE|TEMT, MCR OUT2, MSR DCD|DSR|CTS, divisor 12', () => {
    const { uart: device, line } = uart();
    assert.deepEqual(
      [IER, IIR, LCR, MCR, LSR, MSR, SCR].map((offset) => inb(device, offset)),
      [0, IIR_NONE, 0, 0x08, LSR_IDLE, 0xb0, 0],
    );
    outb(device, LCR, DLAB);
    assert.deepEqual([inb(device, 0), inb(device, 1)], [12, 0]);
    assert.equal(line.calls, 0, 'the line starts low and is never touched');
  });

  test('the divisor latch: DLAB switches offsets 0 and 1 to DLL/DLM; nothing is transmitted meanwhile', () => {
    const { uart: device, output } = uart();
    outb(device, LCR, DLAB | 0x03);
    outb(device, 0, 0x34);
    outb(device, 1, 0x12);
    assert.deepEqual([inb(device, 0), inb(device, 1), inb(device, LCR)], [0x34, 0x12, DLAB | 0x03]);
    assert.deepEqual(output, []);
    outb(device, LCR, 0x03);
    assert.equal(inb(device, IER), 0, 'IER untouched by the DLM write');
    device.write(0, 2, 0x0201);
    assert.deepEqual(output, [0x01]);
    assert.equal(inb(device, IER), 0x02, 'a word write with DLAB off wrote THR, then IER');
    outb(device, LCR, DLAB);
    assert.equal(device.read(0, 2), 0x1234, 'the latch kept its value');
  });

  test('a word access reaches two registers, lowest first: a word write with DLAB sets DLL then DLM', () => {
    const { uart: device } = uart();
    outb(device, LCR, DLAB);
    device.write(0, 2, 0xbeef);
    assert.deepEqual([inb(device, 0), inb(device, 1)], [0xef, 0xbe]);
    assert.equal(device.read(0, 2), 0xbeef);
  });

  test('polled output as our guests do it: every byte reaches the output in order, LSR always says THRE|TEMT', () => {
    const { uart: device, line, output } = uart();
    initLikeOurGuests(device);
    for (const byte of new TextEncoder().encode('hello\n')) {
      assert.equal(inb(device, LSR) & LSR_IDLE, LSR_IDLE);
      outb(device, THR, byte);
    }
    assert.equal(new TextDecoder().decode(Uint8Array.from(output)), 'hello\n');
    assert.equal(inb(device, LSR), LSR_IDLE);
    assert.equal(inb(device, IIR), IIR_FIFO | IIR_NONE, 'FIFOs on: IIR bits 7:6 set');
    assert.equal(line.calls, 0, 'no interrupt enabled, none raised');
  });

  test('the scratch register and LCR keep whatever is written', () => {
    const { uart: device } = uart();
    outb(device, SCR, 0xa5);
    outb(device, LCR, 0x1f);
    assert.deepEqual([inb(device, SCR), inb(device, LCR)], [0xa5, 0x1f]);
  });
});

describe('Serial16550: interrupts', () => {
  test('THRE: enabling ETBEI raises it; reading IIR clears it; each THR write lowers and raises it (a new edge per byte)', () => {
    const { uart: device, line, output } = uart();
    outb(device, IER, 0x02);
    assert.equal(line.level, true);
    assert.equal(line.rises, 1);
    assert.equal(inb(device, IIR), IIR_THRE);
    assert.equal(line.level, false, 'reading IIR while it shows THRE clears it');
    assert.equal(inb(device, IIR), IIR_NONE);
    outb(device, THR, 0x41);
    outb(device, THR, 0x42);
    assert.equal(line.level, true);
    assert.equal(line.rises, 3, 'one edge per byte transmitted');
    assert.deepEqual(output, [0x41, 0x42]);
    outb(device, IER, 0x02);
    assert.equal(line.rises, 3, 'rewriting IER with ETBEI unchanged does not resample THRE');
    assert.equal(inb(device, IIR), IIR_THRE);
    outb(device, IER, 0);
    outb(device, IER, 0x02);
    assert.equal(line.rises, 4, 'ETBEI 0 → 1 resamples THRE (QEMU; Windows relies on it)');
  });

  test('clearing the transmit FIFO raises THRE again', () => {
    const { uart: device, line } = uart();
    outb(device, FCR, 0x01);
    outb(device, IER, 0x02);
    inb(device, IIR);
    assert.equal(line.level, false);
    outb(device, FCR, 0x05);
    assert.equal(line.level, true);
    assert.equal(inb(device, IIR), IIR_FIFO | IIR_THRE);
  });

  test('MCR.OUT2 does not gate the line (QEMU wires the UART straight to its IRQ)', () => {
    const { uart: device, line } = uart();
    outb(device, MCR, 0);
    outb(device, IER, 0x02);
    assert.equal(line.level, true);
  });

  test('FIFOs off: a byte raises received-data; reading RBR clears it; a second unread byte overruns (counted), RLS outranks RDA', () => {
    const { uart: device, line } = uart();
    outb(device, IER, 0x05);
    device.receive(Uint8Array.of(0x61));
    assert.equal(line.level, true);
    assert.equal(inb(device, IIR), IIR_RDA);
    assert.equal(inb(device, LSR), LSR_IDLE | LSR_DR);
    assert.equal(inb(device, RBR), 0x61);
    assert.equal(line.level, false);
    assert.equal(inb(device, LSR), LSR_IDLE);
    device.receive(Uint8Array.of(0x62, 0x63));
    assert.equal(inb(device, IIR), IIR_RLS, 'overrun: receiver line status, the highest priority');
    assert.equal(inb(device, LSR), LSR_IDLE | LSR_DR | LSR_OE);
    assert.equal(inb(device, IIR), IIR_RDA, 'reading LSR cleared OE');
    assert.equal(inb(device, RBR), 0x63, 'FIFOs off: the later byte replaced the unread one');
    assert.equal(device.counters().receiveOverruns, 1);
    assert.equal(line.level, false);
  });

  test('FIFO mode: bytes below the trigger level give a character timeout, at the level received-data; a read restarting the timeout gives a new edge', () => {
    const { uart: device, line } = uart();
    outb(device, FCR, 0x41); // FIFOs on, trigger level 4
    outb(device, IER, 0x01);
    device.receive(Uint8Array.of(1, 2));
    assert.equal(inb(device, IIR), IIR_FIFO | IIR_CTI);
    assert.equal(line.rises, 1);
    device.receive(Uint8Array.of(3, 4));
    assert.equal(inb(device, IIR), IIR_FIFO | IIR_RDA);
    assert.equal(line.rises, 1, 'still high: no new edge');
    assert.equal(inb(device, RBR), 1);
    assert.equal(line.rises, 2, 'three bytes left, below the level: the timeout restarted and expired: a new edge');
    assert.equal(inb(device, IIR), IIR_FIFO | IIR_CTI);
    assert.deepEqual([inb(device, RBR), inb(device, RBR), inb(device, RBR)], [2, 3, 4]);
    assert.equal(line.level, false);
    assert.equal(inb(device, LSR), LSR_IDLE);
    assert.equal(inb(device, RBR), 0, 'an empty FIFO reads 0 (QEMU)');
  });

  test('FIFO mode: the 17th byte is lost, the FIFO keeps its 16 (counted, LSR.OE)', () => {
    const { uart: device } = uart();
    outb(device, FCR, 0x01);
    device.receive(Uint8Array.from({ length: 17 }, (_, index) => index + 1));
    assert.equal(inb(device, LSR), LSR_IDLE | LSR_DR | LSR_OE);
    const read = Array.from({ length: 16 }, () => inb(device, RBR));
    assert.deepEqual(read, Array.from({ length: 16 }, (_, index) => index + 1));
    assert.equal(inb(device, LSR), LSR_IDLE);
    assert.equal(device.counters().receiveOverruns, 1);
  });

  test('FCR: clearing the receiver empties it; toggling the FIFO enable clears both', () => {
    const { uart: device, line } = uart();
    outb(device, FCR, 0x01);
    outb(device, IER, 0x01);
    device.receive(Uint8Array.of(9, 9));
    outb(device, FCR, 0x03);
    assert.equal(inb(device, LSR), LSR_IDLE);
    assert.equal(line.level, false);
    device.receive(Uint8Array.of(7));
    outb(device, FCR, 0x00);
    assert.equal(inb(device, LSR), LSR_IDLE, 'disabling the FIFOs cleared the receiver');
    assert.equal(inb(device, IIR), IIR_NONE, 'IIR bits 7:6 clear with the FIFOs off');
  });

  test('priority: RLS over received data over THRE', () => {
    const { uart: device } = uart();
    outb(device, IER, 0x07);
    assert.equal(inb(device, IIR), IIR_THRE);
    outb(device, IER, 0x05);
    outb(device, IER, 0x07);
    device.receive(Uint8Array.of(1));
    assert.equal(inb(device, IIR), IIR_RDA, 'received data outranks THRE');
    device.receive(Uint8Array.of(2));
    assert.equal(inb(device, IIR), IIR_RLS);
    inb(device, LSR);
    inb(device, RBR);
    assert.equal(inb(device, IIR), IIR_THRE, 'THRE was still pending underneath');
    assert.equal(inb(device, IIR), IIR_NONE);
  });
});

describe('Serial16550: loopback', () => {
  test('THR bytes come back through the receiver, not the output; MSR reads the modem outputs', () => {
    const { uart: device, output } = uart();
    outb(device, MCR, MCR_LOOP | 0x0a); // Linux's probe: loopback with RTS and OUT2
    assert.equal(inb(device, MSR) & 0xf0, 0x90, 'CTS and DCD: what Linux’s autoconfig expects');
    outb(device, MCR, MCR_LOOP | 0x05);
    assert.equal(inb(device, MSR), 0x60, 'DTR → DSR, OUT1 → RI');
    outb(device, THR, 0x5a);
    assert.equal(inb(device, LSR), LSR_IDLE | LSR_DR);
    assert.equal(inb(device, RBR), 0x5a);
    assert.deepEqual(output, []);
    outb(device, MCR, 0x0b);
    assert.equal(inb(device, MSR), 0xb0, 'out of loopback: the constant modem inputs again');
  });
});

describe('Serial16550: guest mistakes are counted, never thrown', () => {
  test('reserved bits of IER, FCR and MCR read back 0; LSR and MSR writes are ignored; accesses past port 7 too', () => {
    const { uart: device } = uart();
    outb(device, IER, 0xf0);
    outb(device, FCR, 0x31);
    outb(device, MCR, 0xe0);
    outb(device, LSR, 0);
    outb(device, MSR, 0xff);
    assert.deepEqual([inb(device, IER), inb(device, MCR), inb(device, LSR), inb(device, MSR)], [0, 0, LSR_IDLE, 0xb0]);
    assert.equal(inb(device, IIR), IIR_FIFO | IIR_NONE, 'FCR bit 0 was still applied');
    device.write(7, 2, 0xffff);
    assert.equal(device.read(7, 4), 0xffffffff, 'SCR (0xff), then three undriven lanes');
    assert.deepEqual(device.counters(), { receiveOverruns: 0, reservedBitWrites: 3, readOnlyWrites: 2, accessesPastEnd: 2 });
    assert.deepEqual(Object.keys(device.counters()), [...SERIAL_16550_COUNTER_NAMES]);
  });

  test('caller mistakes throw EINVAL: a missing line or output, receive of something not bytes', () => {
    assert.throws(() => new Serial16550({ irq: {} as IrqLine, output: () => undefined }), IrqChipError);
    assert.throws(() => new Serial16550({ irq: new RecordingLine(), output: 5 as unknown as () => void }), IrqChipError);
    const { uart: device } = uart();
    assert.throws(() => {
      device.receive([1, 2] as unknown as Uint8Array);
    }, IrqChipError);
  });
});

type Step =
  | { readonly kind: 'receive'; readonly bytes: number[] }
  | { readonly kind: 'read'; readonly offset: number }
  | { readonly kind: 'write'; readonly offset: number; readonly value: number };

const stepArbitrary: fc.Arbitrary<Step> = fc.oneof(
  fc.record({ kind: fc.constant('receive' as const), bytes: fc.array(fc.nat({ max: 0xff }), { maxLength: 20 }) }),
  fc.record({ kind: fc.constant('read' as const), offset: fc.constantFrom(RBR, IER, IIR, LCR, MCR, LSR, MSR, SCR) }),
  fc.record({ kind: fc.constant('write' as const), offset: fc.constantFrom(THR, IER, MCR, SCR), value: fc.nat({ max: 0xff }) }),
);

describe('Serial16550: properties', () => {
  test('over any accesses: the line is high exactly when IIR names an interrupt; LSR always says THRE|TEMT; received bytes are read in order, lost only as counted overruns', () => {
    fc.assert(
      fc.property(fc.constantFrom(0x00, 0x01, 0x41, 0x81, 0xc1), fc.array(stepArbitrary, { maxLength: 80 }), (fifoControl, steps) => {
        const { uart: device, line } = uart();
        outb(device, FCR, fifoControl);
        const arrived: number[] = [];
        const taken: number[] = [];
        for (const step of steps) {
          const levelBefore = line.level;
          const identification = inb(device, IIR);
          assert.equal(levelBefore, (identification & 0x0f) !== IIR_NONE, 'line level = IIR pending');
          const status = inb(device, LSR);
          assert.equal(status & LSR_IDLE, LSR_IDLE);
          if (step.kind === 'receive') {
            device.receive(Uint8Array.from(step.bytes));
            arrived.push(...step.bytes);
          } else if (step.kind === 'read') {
            const value = inb(device, step.offset);
            if (step.offset === RBR && (status & LSR_DR) !== 0) taken.push(value);
          } else {
            if (step.offset === THR && (inb(device, MCR) & MCR_LOOP) !== 0) arrived.push(step.value);
            outb(device, step.offset, step.value);
          }
        }
        while ((inb(device, LSR) & LSR_DR) !== 0) taken.push(inb(device, RBR));
        assert.equal(taken.length + device.counters().receiveOverruns, arrived.length, 'every byte read or counted lost');
        let next = 0;
        for (const byte of taken) {
          while (next < arrived.length && arrived[next] !== byte) next++;
          assert.ok(next < arrived.length, 'the bytes read are the bytes received, in order');
          next++;
        }
      }),
    );
  });
});
