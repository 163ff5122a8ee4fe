/**
 * One 8259A programmable interrupt controller: the logic shared by the master and the slave of
 * the PC's pair (`PicPair` in pic.ts owns the buffer and wires the two together).
 *
 * Behaviour follows the Intel 8259A datasheet and x86-controllers.md §1; section numbers in the
 * comments below are that spec's unless they name the datasheet.
 *
 * State: `CHIP_WORDS` consecutive words of the pair's Int32Array, starting at the chip's base
 * (master and slave are two instances over two ranges). Word `base + n` holds:
 *
 *   n   field                    meaning
 *   0   irr                      interrupt request register, bits 7:0
 *   1   imr                      interrupt mask register (OCW1), bits 7:0
 *   2   isr                      in-service register, bits 7:0
 *   3   lastIrr                  input line levels as last sampled (the edge detector), bits 7:0
 *   4   priorityAdd              0–7: the IR level that currently has the highest priority
 *   5   irqBase                  vector of IR0 (ICW2 & 0xF8)
 *   6   readRegisterSelect       0 = a command-port read returns IRR, 1 = ISR (OCW3 RR/RIS)
 *   7   pollArmed                0/1: the next read of either port is a poll cycle (OCW3 P)
 *   8   specialMask              0/1: special mask mode (OCW3 ESMM/SMM)
 *   9   initState                InitState: which initialisation word the data port expects
 *  10   icw4Expected             0/1: ICW1 IC4
 *  11   singleMode               0/1: ICW1 SNGL (no ICW3)
 *  12   autoEoi                  0/1: ICW4 AEOI
 *  13   rotateOnAutoEoi          0/1: OCW2 rotate-in-automatic-EOI mode
 *  14   specialFullyNested       0/1: ICW4 SFNM
 *  15   elcr                     edge/level control register (chipset port 0x4D0/0x4D1), bits 7:0
 *  16   levelTriggeredMode       0/1: ICW1 LTIM (every input level-sensitive)
 *
 * All access happens with the pair's lock held, so plain typed-array reads and writes suffice:
 * the lock's atomic acquire and release order them for other threads.
 */

/** Word offsets of a chip's fields from its base (layout above). */
export const ChipWord = {
  Irr: 0,
  Imr: 1,
  Isr: 2,
  LastIrr: 3,
  PriorityAdd: 4,
  IrqBase: 5,
  ReadRegisterSelect: 6,
  PollArmed: 7,
  SpecialMask: 8,
  InitState: 9,
  Icw4Expected: 10,
  SingleMode: 11,
  AutoEoi: 12,
  RotateOnAutoEoi: 13,
  SpecialFullyNested: 14,
  Elcr: 15,
  LevelTriggeredMode: 16,
} as const;
export type ChipWord = (typeof ChipWord)[keyof typeof ChipWord];

/** Words per chip. */
export const CHIP_WORDS = 17;

/** What the data port (A0 = 1) expects next (§1.7). */
export const InitState = { Ready: 0, ExpectIcw2: 1, ExpectIcw3: 2, ExpectIcw4: 3 } as const;
export type InitState = (typeof InitState)[keyof typeof InitState];

/** "No request": returned by `pendingIrq` and `interruptAcknowledge`. */
export const NO_IRQ = -1;
/** The 8259A answers an INTA with no request by returning the IR7 vector (datasheet "Interrupt sequence"). */
export const SPURIOUS_PIN = 7;
/** The master input wired to the slave's INT output on the PC. */
export const CASCADE_PIN = 2;

const PINS_PER_CHIP = 8;
const PIN_MASK = 0x07;
const BYTE_MASK = 0xff;
/** `bestRank` of an empty mask: worse than any real rank 0–7. */
const NO_RANK = 8;

// ICW1 (command port, bit 4 = 1), datasheet "Initialization command words".
export const ICW1_MARKER = 0x10;
export const ICW1_IC4 = 0x01;
const ICW1_SNGL = 0x02;
const ICW1_LTIM = 0x08;
// ICW2: the low three bits are replaced by the IR number in 8086 mode.
const ICW2_VECTOR_BASE_MASK = 0xf8;
// ICW4.
export const ICW4_MICROPROCESSOR_8086 = 0x01;
const ICW4_AEOI = 0x02;
const ICW4_SFNM = 0x10;
/** ICW4 bits 7:5 must be 0. */
const ICW4_RESERVED = 0xe0;
// OCW3 (bit 4 = 0, bit 3 = 1).
const OCW3_MARKER = 0x08;
const OCW3_READ_ISR = 0x01;
const OCW3_READ_REGISTER = 0x02;
const OCW3_POLL = 0x04;
const OCW3_SPECIAL_MASK = 0x20;
const OCW3_ENABLE_SPECIAL_MASK = 0x40;
/** OCW3 bit 7 must be 0. */
const OCW3_RESERVED = 0x80;
// OCW2 (bit 4 = 0, bit 3 = 0): R (bit 7), SL (bit 6), EOI (bit 5), level L (bits 2:0).
const OCW2_ROTATE = 0x80;
const OCW2_SPECIFIC = 0x40;
/** Alone (R = SL = 0), the non-specific EOI command. */
export const OCW2_EOI = 0x20;
/** Poll-read byte: bit 7 set when a request was found, bits 2:0 its level (datasheet "Poll command"). */
const POLL_INTERRUPT_PRESENT = 0x80;

/** A chip's place in the pair: fixed wiring, never state. */
export interface ChipRole {
  /** 0 for the master, 8 for the slave: added to a pin to name the ISA IRQ. */
  readonly irqOffset: number;
  /** ELCR bits that may be set (§1.1: 0xF8 master, 0xDE slave; the rest are forced edge). */
  readonly elcrWritable: number;
  /** Whether IR2 carries the slave's requests (special fully nested mode applies to it). */
  readonly isMaster: boolean;
  /** The ICW3 the PC's hard-wired cascade implies: master 0x04 (slave on IR2), slave ID 2. */
  readonly expectedIcw3: number;
}

/**
 * Side effects an operation owes its listeners, gathered under the lock and delivered after it
 * is released (a listener may call back into the PIC, and the lock is not re-entrant).
 * Bit n stands for ISA IRQ n.
 */
export class PendingNotifications {
  acknowledgedIrqs = 0;
  maskFlippedIrqs = 0;
}

/** The guest-error counts a chip can observe; the pair keeps them in its state words. */
export interface GuestErrorCounters {
  reservedBitWrite(): void;
  unsupportedMode(): void;
}

/** Rank (0 = highest priority) of the best IR level set in `mask` under rotation `priorityAdd`. */
function bestRank(mask: number, priorityAdd: number): number {
  if (mask === 0) return NO_RANK;
  // Rotate so that bit 0 is the highest-priority level, then count trailing zeros.
  const rotated = ((mask >>> priorityAdd) | (mask << (PINS_PER_CHIP - priorityAdd))) & BYTE_MASK;
  return 31 - Math.clz32(rotated & -rotated);
}

export class Pic8259Chip {
  constructor(
    private readonly words: Int32Array,
    private readonly base: number,
    readonly role: ChipRole,
    private readonly notifications: PendingNotifications,
    private readonly errors: GuestErrorCounters,
  ) {}

  read(field: ChipWord): number {
    return this.words[this.base + field] ?? 0;
  }

  private write(field: ChipWord, value: number): void {
    this.words[this.base + field] = value;
  }

  /** Inputs currently level-sensitive: the ELCR bits, or all of them under ICW1 LTIM (§1.3). */
  private levelSensitivePins(): number {
    return this.read(ChipWord.LevelTriggeredMode) !== 0 ? BYTE_MASK : this.read(ChipWord.Elcr);
  }

  // ------------------------------------------------------------------------------------------
  // Inputs and priority
  // ------------------------------------------------------------------------------------------

  /**
   * Samples input `pin` at `level` (§1.3). Returns KVM's result: -1 if the pin is masked,
   * otherwise 1 when an assert latched a new request (and for every de-assert), 0 when an assert
   * added nothing (the request was already latched, or the line was already high on an edge pin).
   */
  setInput(pin: number, level: boolean): number {
    const bit = 1 << pin;
    const irr = this.read(ChipWord.Irr);
    const lastIrr = this.read(ChipWord.LastIrr);
    let result = 1;
    if (level) {
      // Level pins request while high; edge pins latch only on a rising edge.
      const requests = (this.levelSensitivePins() & bit) !== 0 || (lastIrr & bit) === 0;
      if (requests && (irr & bit) === 0) this.write(ChipWord.Irr, irr | bit);
      else result = 0;
      this.write(ChipWord.LastIrr, lastIrr | bit);
    } else {
      // A falling edge pin keeps its latched request until INTA; a level pin's request follows the wire.
      if ((this.levelSensitivePins() & bit) !== 0) this.write(ChipWord.Irr, irr & ~bit);
      this.write(ChipWord.LastIrr, lastIrr & ~bit);
    }
    return (this.read(ChipWord.Imr) & bit) !== 0 ? -1 : result;
  }

  /**
   * The master's IR2 as driven by the slave (§1.5). Recommendation: KVM's pulse, i.e. a slave
   * request re-latches IRR2 on every update, so the master asks again after an INTA while the
   * slave still has a request. We keep the pulse's effect on IRR but not its side effect of
   * clearing the IR2 edge detector (that would swallow a rising edge of a device wired to IRQ2
   * directly). Under LTIM, IR2 is level-sensitive and a pulse would leave nothing latched, so
   * there IRR2 follows the slave's request OR'd with the IRQ2 line.
   */
  driveCascadeInput(slaveRequests: boolean): void {
    const bit = 1 << CASCADE_PIN;
    const irr = this.read(ChipWord.Irr);
    if ((this.levelSensitivePins() & bit) !== 0) {
      const lineHigh = slaveRequests || (this.read(ChipWord.LastIrr) & bit) !== 0;
      this.write(ChipWord.Irr, lineHigh ? irr | bit : irr & ~bit);
    } else if (slaveRequests) {
      this.write(ChipWord.Irr, irr | bit);
    }
  }

  /**
   * The pin this chip would present to the CPU (or the master), or NO_IRQ (§1.4): the best
   * unmasked request, if it outranks everything in service. In special mask mode an in-service
   * level that is masked no longer blocks (datasheet "Special mask mode"); in special fully
   * nested mode the master ignores its in-service IR2 so higher slave requests get through.
   */
  pendingIrq(): number {
    const priorityAdd = this.read(ChipWord.PriorityAdd);
    const imr = this.read(ChipWord.Imr);
    const requestRank = bestRank(this.read(ChipWord.Irr) & ~imr, priorityAdd);
    if (requestRank === NO_RANK) return NO_IRQ;
    let inService = this.read(ChipWord.Isr);
    if (this.read(ChipWord.SpecialMask) !== 0) inService &= ~imr;
    if (this.role.isMaster && this.read(ChipWord.SpecialFullyNested) !== 0) inService &= ~(1 << CASCADE_PIN);
    return requestRank < bestRank(inService, priorityAdd) ? (requestRank + priorityAdd) & PIN_MASK : NO_IRQ;
  }

  /** The vector for `pin`, or the spurious IR7 vector for NO_IRQ. */
  vectorFor(pin: number): number {
    return this.read(ChipWord.IrqBase) + (pin === NO_IRQ ? SPURIOUS_PIN : pin);
  }

  /**
   * One interrupt-acknowledge on this chip (an INTA cycle or a poll read, §1.8–1.9): moves the
   * winning request into service and returns its pin, or returns NO_IRQ and changes nothing.
   */
  interruptAcknowledge(): number {
    const pin = this.pendingIrq();
    if (pin === NO_IRQ) return NO_IRQ;
    const bit = 1 << pin;
    // Level requests stay in IRR and follow the wire; edge requests are consumed.
    if ((this.levelSensitivePins() & bit) === 0) this.write(ChipWord.Irr, this.read(ChipWord.Irr) & ~bit);
    if (this.read(ChipWord.AutoEoi) !== 0) {
      // AEOI: the in-service bit is reset at the end of the INTA sequence, which is its EOI (§1.10).
      if (this.read(ChipWord.RotateOnAutoEoi) !== 0) this.makeLowestPriority(pin);
      this.notifications.acknowledgedIrqs |= bit << this.role.irqOffset;
    } else {
      this.write(ChipWord.Isr, this.read(ChipWord.Isr) | bit);
    }
    return pin;
  }

  private makeLowestPriority(pin: number): void {
    this.write(ChipWord.PriorityAdd, (pin + 1) & PIN_MASK);
  }

  /** Clears ISR bit `pin` and owes an acknowledge notification, if it was set (§1.10). */
  private endOfInterrupt(pin: number): void {
    const bit = 1 << pin;
    const isr = this.read(ChipWord.Isr);
    if ((isr & bit) === 0) return;
    this.write(ChipWord.Isr, isr & ~bit);
    this.notifications.acknowledgedIrqs |= bit << this.role.irqOffset;
  }

  // ------------------------------------------------------------------------------------------
  // Guest port access
  // ------------------------------------------------------------------------------------------

  /** A byte written to the command port (A0 = 0): ICW1, OCW3 or OCW2 by bits 4 and 3 (§1.6). */
  writeCommand(value: number): void {
    if ((value & ICW1_MARKER) !== 0) this.initialise(value);
    else if ((value & OCW3_MARKER) !== 0) this.writeOcw3(value);
    else this.writeOcw2(value);
  }

  /** A byte written to the data port (A0 = 1): the next initialisation word, or OCW1 (§1.7). */
  writeData(value: number): void {
    switch (this.read(ChipWord.InitState)) {
      case InitState.ExpectIcw2:
        this.write(ChipWord.IrqBase, value & ICW2_VECTOR_BASE_MASK);
        // In single mode there is no ICW3 (datasheet; QEMU; §1.11 Recommendation).
        if (this.read(ChipWord.SingleMode) !== 0) this.finishAfterIcw3();
        else this.write(ChipWord.InitState, InitState.ExpectIcw3);
        return;
      case InitState.ExpectIcw3:
        // The cascade is hard-wired (slave on IR2); another topology cannot be modelled.
        if (value !== this.role.expectedIcw3) this.errors.unsupportedMode();
        this.finishAfterIcw3();
        return;
      case InitState.ExpectIcw4:
        this.writeIcw4(value);
        return;
      default:
        this.setMask(value);
    }
  }

  /** Reads the command port (A0 = 0): a poll result if armed, else IRR or ISR per OCW3 (§1.8). */
  readCommand(): number {
    if (this.read(ChipWord.PollArmed) !== 0) return this.poll();
    return this.read(this.read(ChipWord.ReadRegisterSelect) !== 0 ? ChipWord.Isr : ChipWord.Irr);
  }

  /** Reads the data port (A0 = 1): a poll result if armed, else IMR (§1.8). */
  readData(): number {
    if (this.read(ChipWord.PollArmed) !== 0) return this.poll();
    return this.read(ChipWord.Imr);
  }

  /**
   * Writes the ELCR (§1.1): forced-edge bits are dropped and counted. A pin that becomes
   * level-sensitive while its line is high is requesting (a level input's request is its line),
   * so that request is latched now rather than lost until the line next changes.
   */
  writeElcr(value: number): void {
    const writable = this.role.elcrWritable;
    if ((value & ~writable) !== 0) this.errors.reservedBitWrite();
    const levelBefore = this.levelSensitivePins();
    this.write(ChipWord.Elcr, value & writable);
    const newlyLevel = this.levelSensitivePins() & ~levelBefore;
    this.write(ChipWord.Irr, this.read(ChipWord.Irr) | (newlyLevel & this.read(ChipWord.LastIrr)));
  }

  /**
   * Power-on / device reset (§1.2, QEMU `pic_reset`): ELCR and LTIM cleared, then the same
   * clearing as ICW1, with the data port back to OCW1.
   */
  powerOnReset(): void {
    this.write(ChipWord.Elcr, 0);
    this.write(ChipWord.LevelTriggeredMode, 0);
    this.clearForInitialisation();
    this.write(ChipWord.Icw4Expected, 0);
    this.write(ChipWord.SingleMode, 0);
    this.write(ChipWord.InitState, InitState.Ready);
  }

  /** ICW1: restart initialisation (datasheet "Initialization command words"; §1.6 Recommendation). */
  private initialise(icw1: number): void {
    this.clearForInitialisation();
    this.write(ChipWord.Icw4Expected, icw1 & ICW1_IC4 ? 1 : 0);
    this.write(ChipWord.SingleMode, icw1 & ICW1_SNGL ? 1 : 0);
    // LTIM is supported as "every input level-sensitive" (§1.11 Recommendation).
    this.write(ChipWord.LevelTriggeredMode, icw1 & ICW1_LTIM ? 1 : 0);
    this.write(ChipWord.InitState, InitState.ExpectIcw2);
  }

  /**
   * What ICW1 clears. Per the datasheet: the edge detector is reset, IMR cleared, IR7 lowest
   * priority, special mask mode off, status read set to IRR, ICW4 functions zeroed. Per the
   * Recommendation (QEMU): ISR, poll and the vector base are cleared too, and pending edge
   * requests are dropped while level requests (the line is still high) stay.
   *
   * Every ISR bit cleared here owes an acknowledge notification (§1.6 Recommendation). So does
   * every dropped edge request, beyond the Recommendation: with the edge detector reset, a line
   * held high by a device waiting for its resample would otherwise never request again (the
   * reason KVM notifies for dropped edges, §6 item 15), and no interrupt may be lost.
   */
  private clearForInitialisation(): void {
    const irr = this.read(ChipWord.Irr);
    const levelRequests = irr & this.levelSensitivePins();
    this.notifications.acknowledgedIrqs |= (this.read(ChipWord.Isr) | (irr & ~levelRequests)) << this.role.irqOffset;
    this.write(ChipWord.Irr, levelRequests);
    this.write(ChipWord.LastIrr, 0);
    this.write(ChipWord.Isr, 0);
    this.setMask(0);
    this.write(ChipWord.PriorityAdd, 0);
    this.write(ChipWord.IrqBase, 0);
    this.write(ChipWord.ReadRegisterSelect, 0);
    this.write(ChipWord.PollArmed, 0);
    this.write(ChipWord.SpecialMask, 0);
    this.write(ChipWord.AutoEoi, 0);
    this.write(ChipWord.RotateOnAutoEoi, 0);
    this.write(ChipWord.SpecialFullyNested, 0);
  }

  private finishAfterIcw3(): void {
    this.write(ChipWord.InitState, this.read(ChipWord.Icw4Expected) !== 0 ? InitState.ExpectIcw4 : InitState.Ready);
  }

  /** ICW4: AEOI and SFNM are modelled; BUF and M/S are electrical only (§1.7). */
  private writeIcw4(icw4: number): void {
    if ((icw4 & ICW4_RESERVED) !== 0) this.errors.reservedBitWrite();
    // MCS-80/85 mode answers INTA with a CALL instruction; an x86 CPU always uses 8086 mode.
    if ((icw4 & ICW4_MICROPROCESSOR_8086) === 0) this.errors.unsupportedMode();
    this.write(ChipWord.AutoEoi, icw4 & ICW4_AEOI ? 1 : 0);
    this.write(ChipWord.SpecialFullyNested, icw4 & ICW4_SFNM ? 1 : 0);
    this.write(ChipWord.InitState, InitState.Ready);
  }

  /** OCW1, and ICW1's clearing of IMR: owes a mask notification per flipped bit (§1.7, §5.11). */
  private setMask(imr: number): void {
    this.notifications.maskFlippedIrqs |= (this.read(ChipWord.Imr) ^ imr) << this.role.irqOffset;
    this.write(ChipWord.Imr, imr);
  }

  /** OCW3: poll, read-register select (sticky), special mask mode (§1.6). */
  private writeOcw3(ocw3: number): void {
    if ((ocw3 & OCW3_RESERVED) !== 0) this.errors.reservedBitWrite();
    if ((ocw3 & OCW3_POLL) !== 0) this.write(ChipWord.PollArmed, 1);
    if ((ocw3 & OCW3_READ_REGISTER) !== 0) this.write(ChipWord.ReadRegisterSelect, ocw3 & OCW3_READ_ISR);
    if ((ocw3 & OCW3_ENABLE_SPECIAL_MASK) !== 0) this.write(ChipWord.SpecialMask, ocw3 & OCW3_SPECIAL_MASK ? 1 : 0);
  }

  /**
   * OCW2 (§1.6 table), decoded by its bits. With EOI set: SL picks a specific level L or the
   * highest in service, and R additionally makes the serviced level the lowest priority. With
   * EOI clear: R alone sets/clears rotate-in-AEOI, R+SL sets priority (L lowest), SL alone is a
   * no-op.
   */
  private writeOcw2(ocw2: number): void {
    const rotate = (ocw2 & OCW2_ROTATE) !== 0;
    const specific = (ocw2 & OCW2_SPECIFIC) !== 0;
    const level = ocw2 & PIN_MASK;
    if ((ocw2 & OCW2_EOI) !== 0) {
      const pin = specific ? level : this.highestInService();
      if (pin === NO_IRQ) return;
      this.endOfInterrupt(pin);
      if (rotate) this.makeLowestPriority(pin);
    } else if (rotate && specific) {
      this.makeLowestPriority(level);
    } else if (rotate) {
      this.write(ChipWord.RotateOnAutoEoi, 1);
    } else if (!specific) {
      this.write(ChipWord.RotateOnAutoEoi, 0);
    }
  }

  private highestInService(): number {
    const priorityAdd = this.read(ChipWord.PriorityAdd);
    const rank = bestRank(this.read(ChipWord.Isr), priorityAdd);
    return rank === NO_RANK ? NO_IRQ : (rank + priorityAdd) & PIN_MASK;
  }

  /**
   * A poll read (§1.8, datasheet form per the Recommendation): acknowledges on this chip only
   * and returns 0x80 | level, or 0 with nothing pending. Disarms the poll.
   */
  private poll(): number {
    this.write(ChipWord.PollArmed, 0);
    const pin = this.interruptAcknowledge();
    return pin === NO_IRQ ? 0 : POLL_INTERRUPT_PRESENT | pin;
  }
}
