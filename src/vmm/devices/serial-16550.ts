/**
 * COM1: a 16550A UART as QEMU presents it (hw/char/serial.c), so that guests written for QEMU's
 * `-serial stdio` run unchanged. Registers follow the PC16550D datasheet (National Semiconductor,
 * §8 "Registers"; Table II, register summary), at offsets 0-7 from the base:
 *
 *   0  RBR (read) / THR (write); DLL, the divisor latch's low byte, while LCR.DLAB = 1
 *   1  IER (bits 3:0); DLM, the divisor latch's high byte, while LCR.DLAB = 1
 *   2  IIR (read) / FCR (write)
 *   3  LCR    4  MCR (bits 4:0)    5  LSR    6  MSR    7  SCR
 *
 * Transmission takes no time: a byte written to THR goes to `output` (or, in loopback, into the
 * receiver) before the write completes, so LSR always reads THRE | TEMT (a guest polling for THRE
 * before each byte never waits) and the divisor and LCR's framing have no effect on timing.
 *
 * Interrupts (datasheet Table IV; QEMU `serial_update_irq`), highest priority first; IIR bits 3:0
 * name the highest one pending, and the IRQ line is high while any enabled one is pending. QEMU
 * does NOT gate the line with MCR.OUT2 (on a PC board OUT2 enables the IRQ driver; QEMU wires the
 * UART's interrupt straight to the ISA IRQ), and neither does this model:
 *
 *   0x6  receiver line status (IER bit 2): LSR.OE; cleared by reading LSR.
 *   0xC  character timeout (IER bit 0, FIFO mode): bytes below the trigger level sit in the FIFO.
 *   0x4  received data available (IER bit 0): the FIFO holds at least the trigger level (1, 4, 8
 *        or 14 bytes, FCR bits 7:6), or, FIFOs off, RBR holds a byte; cleared by reading RBR.
 *   0x2  THR empty (IER bit 1): raised when THR empties and when IER.ETBEI goes 0 → 1 with THR
 *        empty (QEMU resamples THRE then: Windows relies on it); cleared by reading IIR while it
 *        is the one IIR shows, or by writing THR. Output being instantaneous, a THR write lowers
 *        it and raises it again at once: each byte written gives the line a new edge, as each
 *        byte leaving the transmitter does on hardware.
 *   0x0  modem status (IER bit 3): never pending. The modem inputs are constant (DCD, DSR and CTS
 *        asserted: QEMU's stdio backend has no modem lines) and QEMU's loopback sets no delta bits.
 *
 * The character timeout fires four character times after the last byte arrived or was read
 * (datasheet, "FIFO Interrupt Mode Operation"); with character time zero it has always expired when the guest looks, so it
 * is pending whenever the FIFO holds bytes below the trigger level. A read of RBR restarts it, as
 * QEMU's RBR read clears `timeout_ipending` and re-arms its timer: the line drops, and rises
 * again when bytes below the trigger level remain (a new edge, as QEMU's timer gives).
 *
 * FIFOs (FCR): bit 0 enables both (toggling it clears both, QEMU); bit 1 clears the receiver, bit 2
 * the transmitter; IIR bits 7:6 read 11 while they are enabled. The receiver FIFO holds 16 bytes;
 * a byte arriving when it is full is lost (the FIFO keeps its contents) and sets LSR.OE. FIFOs
 * off, RBR holds one byte and a byte arriving while it is unread replaces it and sets LSR.OE.
 * Either way the lost byte is counted (`receiveOverruns`).
 *
 * Loopback (MCR bit 4; datasheet, "Modem Control Register"; Linux's 8250 probe uses it): a byte
 * written to THR is received instead of sent, and MSR reads the modem outputs: DTR → DSR, RTS → CTS,
 * OUT1 → RI, OUT2 → DCD. Host input still arrives while it is on, as under QEMU.
 *
 * Reset state is QEMU's: divisor 12 (9600 baud), MCR = OUT2, everything else 0.
 *
 * Guest mistakes are counted, never thrown: writes to the reserved bits of IER (7:4), FCR (5:4)
 * and MCR (7:5), which are not stored (`reservedBitWrites`); writes to LSR and MSR, which are
 * ignored (`readOnlyWrites`; the datasheet keeps LSR writes for factory testing); and accesses past
 * the UART's eight ports (`accessesPastEnd`). A word or dword access reaches consecutive registers,
 * lowest first (QEMU `impl.max_access_size = 1`; port-device.ts).
 */

import { ErrorCode, IrqChipError } from '../../base/errors.ts';
import type { IrqLine } from './irq-line.ts';
import { PortDevice } from './port-device.ts';

/** Register offsets (datasheet Table II). */
const Register = {
  /** RBR (read), THR (write); DLL while DLAB. */
  Data: 0,
  /** IER; DLM while DLAB. */
  InterruptEnable: 1,
  /** IIR (read), FCR (write). */
  InterruptIdentFifoControl: 2,
  LineControl: 3,
  ModemControl: 4,
  LineStatus: 5,
  ModemStatus: 6,
  Scratch: 7,
} as const;
const UART_PORTS = 8;

/** IER bits. */
const IER_RECEIVED_DATA = 0x01;
const IER_THR_EMPTY = 0x02;
const IER_RECEIVER_LINE_STATUS = 0x04;
const IER_RESERVED = 0xf0;

/** IIR: the interrupt identification (bits 3:0) and the FIFOs-enabled bits (7:6). */
const Iir = {
  None: 0x01,
  ThrEmpty: 0x02,
  ReceivedData: 0x04,
  ReceiverLineStatus: 0x06,
  CharacterTimeout: 0x0c,
} as const;
const IIR_FIFOS_ENABLED = 0xc0;

/** FCR bits; QEMU keeps bits 7:6, 3 and 0 (`fcr = val & 0xC9`). */
const FCR_FIFO_ENABLE = 0x01;
const FCR_CLEAR_RECEIVER = 0x02;
const FCR_CLEAR_TRANSMITTER = 0x04;
const FCR_RESERVED = 0x30;
const FCR_STORED = 0xc9;
const FCR_TRIGGER_SHIFT = 6;
/** Receiver trigger levels of FCR bits 7:6 (datasheet, "FIFO Control Register"). */
const TRIGGER_LEVELS = [1, 4, 8, 14] as const;

const LCR_DIVISOR_LATCH_ACCESS = 0x80;

/** MCR bits. */
const MCR_DTR = 0x01;
const MCR_RTS = 0x02;
const MCR_OUT1 = 0x04;
const MCR_OUT2 = 0x08;
const MCR_LOOPBACK = 0x10;
const MCR_RESERVED = 0xe0;

/** LSR bits. */
const LSR_DATA_READY = 0x01;
const LSR_OVERRUN = 0x02;
const LSR_THR_EMPTY = 0x20;
const LSR_TRANSMITTER_EMPTY = 0x40;

/** MSR bits: the modem inputs. */
const MSR_CTS = 0x10;
const MSR_DSR = 0x20;
const MSR_RI = 0x40;
const MSR_DCD = 0x80;
/** What QEMU's stdio backend shows: DCD, DSR and CTS asserted (QEMU `serial_reset`). */
const MSR_WITHOUT_MODEM = MSR_DCD | MSR_DSR | MSR_CTS;

const RECEIVER_FIFO_BYTES = 16;
const BYTE_MASK = 0xff;
const BITS_PER_BYTE = 8;
/** QEMU's reset divisor: 115200 / 12 = 9600 baud. */
const RESET_DIVISOR = 12;

export const SERIAL_16550_COUNTER_NAMES = [
  /** Bytes lost because the receiver was full (FIFO) or RBR unread (FIFOs off); each sets LSR.OE. */
  'receiveOverruns',
  /** Writes setting reserved bits of IER, FCR or MCR (the bits are not stored). */
  'reservedBitWrites',
  /** Writes to LSR or MSR (ignored). */
  'readOnlyWrites',
  /** Accesses reaching past the UART's eight ports (those lanes read 0xff, writes to them are dropped). */
  'accessesPastEnd',
] as const;
export type Serial16550CounterName = (typeof SERIAL_16550_COUNTER_NAMES)[number];

export interface Serial16550Options {
  /** The UART's interrupt output (COM1: `Gsi.Com1`). */
  readonly irq: IrqLine;
  /** Each byte the guest transmits (not called in loopback). */
  readonly output: (byte: number) => void;
}

export class Serial16550 extends PortDevice {
  readonly busName = 'serial-16550';
  private readonly irq: IrqLine;
  private readonly output: (byte: number) => void;
  private divisor = RESET_DIVISOR;
  private interruptEnable = 0;
  private fifoControl = 0;
  private lineControl = 0;
  private modemControl = MCR_OUT2;
  private scratch = 0;
  /** The receiver FIFO: a ring of `receivedCount` bytes from `receivedHead`. */
  private readonly receiverFifo = new Uint8Array(RECEIVER_FIFO_BYTES);
  private receivedHead = 0;
  private receivedCount = 0;
  /** RBR with the FIFOs off: the last byte received, and whether it is unread. */
  private receiverBuffer = 0;
  private receiverBufferFull = false;
  /** LSR.OE, until LSR is read. */
  private overrun = false;
  /** QEMU's `thr_ipending`: THR emptied and the guest has not yet seen it in IIR nor written THR. */
  private thrEmptyPending = false;
  /** Set only while an RBR read restarts the character timeout (see the header). */
  private timeoutRestarting = false;
  private lineLevel = false;
  private overruns = 0;
  private reservedBitWrites = 0;
  private readOnlyWrites = 0;

  constructor(options: Serial16550Options) {
    super(UART_PORTS, 1);
    if (typeof options.irq.setLevel !== 'function' || typeof options.output !== 'function') {
      throw new IrqChipError(ErrorCode.EINVAL, 'serial-16550 needs an IrqLine and an output function');
    }
    this.irq = options.irq;
    this.output = options.output;
  }

  /**
   * Bytes arriving on the serial line, at once (character time zero). Bytes the receiver has no
   * room for are lost and counted, as on the wire; the line rises if they raise an enabled interrupt.
   */
  receive(bytes: Uint8Array): void {
    if (!(bytes instanceof Uint8Array)) throw new IrqChipError(ErrorCode.EINVAL, 'serial-16550 receives a Uint8Array');
    for (const byte of bytes) this.receiveByte(byte);
    this.updateInterrupt();
  }

  counters(): Readonly<Record<Serial16550CounterName, number>> {
    return {
      receiveOverruns: this.overruns,
      reservedBitWrites: this.reservedBitWrites,
      readOnlyWrites: this.readOnlyWrites,
      accessesPastEnd: this.accessesPastEnd,
    };
  }

  protected readPiece(offset: number): number {
    switch (offset) {
      case Register.Data:
        return this.divisorLatched() ? this.divisor & BYTE_MASK : this.readReceiver();
      case Register.InterruptEnable:
        return this.divisorLatched() ? this.divisor >>> BITS_PER_BYTE : this.interruptEnable;
      case Register.InterruptIdentFifoControl:
        return this.readInterruptIdentification();
      case Register.LineControl:
        return this.lineControl;
      case Register.ModemControl:
        return this.modemControl;
      case Register.LineStatus:
        return this.readLineStatus();
      case Register.ModemStatus:
        return this.modemStatus();
      default:
        return this.scratch;
    }
  }

  protected writePiece(offset: number, _size: number, value: number): void {
    switch (offset) {
      case Register.Data:
        if (this.divisorLatched()) this.divisor = (this.divisor & ~BYTE_MASK) | value;
        else this.transmit(value);
        return;
      case Register.InterruptEnable:
        if (this.divisorLatched()) this.divisor = (this.divisor & BYTE_MASK) | (value << BITS_PER_BYTE);
        else this.writeInterruptEnable(value);
        return;
      case Register.InterruptIdentFifoControl:
        this.writeFifoControl(value);
        return;
      case Register.LineControl:
        this.lineControl = value;
        return;
      case Register.ModemControl:
        this.countReserved(value, MCR_RESERVED);
        this.modemControl = value & ~MCR_RESERVED;
        return;
      case Register.LineStatus:
      case Register.ModemStatus:
        this.readOnlyWrites++;
        return;
      default:
        this.scratch = value;
    }
  }

  private divisorLatched(): boolean {
    return (this.lineControl & LCR_DIVISOR_LATCH_ACCESS) !== 0;
  }

  private fifosEnabled(): boolean {
    return (this.fifoControl & FCR_FIFO_ENABLE) !== 0;
  }

  private triggerLevel(): number {
    return TRIGGER_LEVELS[this.fifoControl >>> FCR_TRIGGER_SHIFT] ?? 1;
  }

  private countReserved(value: number, reserved: number): void {
    if ((value & reserved) !== 0) this.reservedBitWrites++;
  }

  /** The highest-priority enabled interrupt pending (an `Iir` value). */
  private pendingInterrupt(): number {
    const enabled = this.interruptEnable;
    if ((enabled & IER_RECEIVER_LINE_STATUS) !== 0 && this.overrun) return Iir.ReceiverLineStatus;
    if ((enabled & IER_RECEIVED_DATA) !== 0) {
      if (!this.fifosEnabled()) {
        if (this.receiverBufferFull) return Iir.ReceivedData;
      } else if (this.receivedCount >= this.triggerLevel()) {
        return Iir.ReceivedData;
      } else if (this.receivedCount > 0 && !this.timeoutRestarting) {
        return Iir.CharacterTimeout;
      }
    }
    if ((enabled & IER_THR_EMPTY) !== 0 && this.thrEmptyPending) return Iir.ThrEmpty;
    return Iir.None;
  }

  /** Drives the line to "an enabled interrupt is pending", calling the line only on a change. */
  private updateInterrupt(): void {
    const level = this.pendingInterrupt() !== Iir.None;
    if (level === this.lineLevel) return;
    this.lineLevel = level;
    this.irq.setLevel(level);
  }

  private receiveByte(byte: number): void {
    if (this.fifosEnabled()) {
      if (this.receivedCount < RECEIVER_FIFO_BYTES) {
        this.receiverFifo[(this.receivedHead + this.receivedCount) % RECEIVER_FIFO_BYTES] = byte;
        this.receivedCount++;
        return;
      }
    } else {
      const lost = this.receiverBufferFull;
      this.receiverBuffer = byte;
      this.receiverBufferFull = true;
      if (!lost) return;
    }
    this.overrun = true;
    this.overruns++;
  }

  private readReceiver(): number {
    if (!this.fifosEnabled()) {
      this.receiverBufferFull = false;
      this.updateInterrupt();
      return this.receiverBuffer;
    }
    let byte = 0;
    if (this.receivedCount > 0) {
      byte = this.receiverFifo[this.receivedHead] ?? 0;
      this.receivedHead = (this.receivedHead + 1) % RECEIVER_FIFO_BYTES;
      this.receivedCount--;
    }
    // The read restarts the character timeout, which (character time zero) expires at once.
    this.timeoutRestarting = true;
    this.updateInterrupt();
    this.timeoutRestarting = false;
    this.updateInterrupt();
    return byte;
  }

  private transmit(byte: number): void {
    this.thrEmptyPending = false;
    this.updateInterrupt();
    // The byte leaves THR at once: THR is empty again.
    this.thrEmptyPending = true;
    this.updateInterrupt();
    if ((this.modemControl & MCR_LOOPBACK) === 0) {
      this.output(byte);
      return;
    }
    this.receiveByte(byte);
    this.updateInterrupt();
  }

  private readInterruptIdentification(): number {
    const pending = this.pendingInterrupt();
    if (pending === Iir.ThrEmpty) {
      this.thrEmptyPending = false;
      this.updateInterrupt();
    }
    return pending | (this.fifosEnabled() ? IIR_FIFOS_ENABLED : 0);
  }

  private readLineStatus(): number {
    const dataReady = this.fifosEnabled() ? this.receivedCount > 0 : this.receiverBufferFull;
    const status = (dataReady ? LSR_DATA_READY : 0) | (this.overrun ? LSR_OVERRUN : 0) | LSR_THR_EMPTY | LSR_TRANSMITTER_EMPTY;
    if (this.overrun) {
      this.overrun = false;
      this.updateInterrupt();
    }
    return status;
  }

  private modemStatus(): number {
    const control = this.modemControl;
    if ((control & MCR_LOOPBACK) === 0) return MSR_WITHOUT_MODEM;
    return (
      ((control & MCR_DTR) !== 0 ? MSR_DSR : 0) |
      ((control & MCR_RTS) !== 0 ? MSR_CTS : 0) |
      ((control & MCR_OUT1) !== 0 ? MSR_RI : 0) |
      ((control & MCR_OUT2) !== 0 ? MSR_DCD : 0)
    );
  }

  private writeInterruptEnable(value: number): void {
    this.countReserved(value, IER_RESERVED);
    const enabled = value & ~IER_RESERVED;
    const changed = enabled ^ this.interruptEnable;
    this.interruptEnable = enabled;
    // ETBEI 0 → 1 resamples THRE (always set here): QEMU's behaviour, which Windows relies on.
    if ((changed & IER_THR_EMPTY) !== 0) this.thrEmptyPending = (enabled & IER_THR_EMPTY) !== 0;
    if (changed !== 0) this.updateInterrupt();
  }

  private writeFifoControl(value: number): void {
    this.countReserved(value, FCR_RESERVED);
    let control = value;
    // Enabling or disabling the FIFOs clears both (QEMU).
    if (((control ^ this.fifoControl) & FCR_FIFO_ENABLE) !== 0) control |= FCR_CLEAR_RECEIVER | FCR_CLEAR_TRANSMITTER;
    if ((control & FCR_CLEAR_RECEIVER) !== 0) {
      this.receivedHead = 0;
      this.receivedCount = 0;
      this.receiverBufferFull = false;
    }
    // Clearing the (always empty) transmitter FIFO: THR is empty, THRE raised again (QEMU).
    if ((control & FCR_CLEAR_TRANSMITTER) !== 0) this.thrEmptyPending = true;
    this.fifoControl = control & FCR_STORED;
    this.updateInterrupt();
  }
}
