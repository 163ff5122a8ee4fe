/* pic-legacy: PC interrupts through the 8259A pair (8259A datasheet; x86-controllers.md §1), one
 * CPU, with the local APIC as a virtual wire (LINT0 in ExtINT mode, SDM vol. 3 §11.5.1; every
 * IOAPIC pin stays masked, as RESET leaves it). Interrupt requests come from pc-testdev's lines
 * (ISA IRQ n = line n reaches both the 8259A and the IOAPIC) and from the UART (IRQ 4).
 *
 * It checks, in order: ICW1-4 and the IMR read back; the ELCR reads back; one delivery per edge
 * and what the handler sees in ISR; an edge on a masked IRQ held in IRR and delivered once at
 * unmask; the slave through the cascade (IRQ 10 → IRQ 2); fully nested priority (a lower IRQ waits
 * while a higher one is in service, a higher one nests), a non-specific EOI ending the highest
 * IRQ in service, a specific EOI ending only its own; ICW4 auto-EOI; a level IRQ (ELCR) still
 * high at its EOI delivered again and not after its line fell; a level request withdrawn while
 * the CPU had interrupts off: on the slave it leaves the master's edge-latched IRQ 2 and so gives
 * a spurious IRQ 15 (handled: ISR clear, only the master EOIed), on the master nothing at all; the
 * UART's THR-empty interrupt (IER bit 1: raised when enabled with THR empty, ended by reading IIR,
 * raised again by a THR write); LINT0 masked holds the 8259A's request, unmasked delivers it; and
 * no other spurious IRQ 7 or 15 in all of that.
 * The 8259A is not the local APIC: none of this depends on when a local APIC ends an interrupt. */
#include "lib/irqtest.h"
#include "lib/timing.h"

#define LINE_EDGE 3
#define LINE_HELD 5
#define LINE_LOWER_PRIORITY 6
#define LINE_SLAVE_EDGE 10
#define LINE_SLAVE_LEVEL 12
#define IRQ_COM1 4 /* GSI_COM1 */
#define PIC_IRQS 16
#define PIC_SPURIOUS_MASTER 7 /* a request gone before INTA reads as the lowest-priority IRQ */
#define PIC_SPURIOUS_SLAVE 15
#define PIC_OCW2_NONSPECIFIC_EOI 0x20
#define PIC_OCW2_SPECIFIC_EOI 0x60 /* | the IRQ (0-7) */
#define PIC_ICW1_ICW4_NEEDED 0x11
#define PIC_ICW4_8086 0x01
#define PIC_ICW4_AUTO_EOI 0x02
#define UART_IER 1
#define UART_IIR 2
#define UART_IER_THR_EMPTY 0x02
#define UART_IIR_ID_MASK 0x0f
#define UART_IIR_THR_EMPTY 0x02
#define DELIVERY_TIMEOUT_US 500000
#define QUIET_US 20000 /* how long "nothing more happens" is watched */

#define BIT(irq) ((u16)(1u << (irq)))

static volatile u32 deliveries[PIC_IRQS];
static volatile u16 isr_at_entry[PIC_IRQS];
static volatile u32 spurious[PIC_IRQS]; /* at PIC_SPURIOUS_MASTER and PIC_SPURIOUS_SLAVE */
static volatile int handler_eois = 1; /* 0: handlers leave the EOI to the main code */
static volatile u32 lower_line_at[PIC_IRQS]; /* level lines: the delivery at which the handler lowers it */
static volatile u8 uart_iir;
static u16 unmasked;

static void handle_irq(u32 irq) {
  u16 isr = pic_read_isr();
  if ((irq == PIC_SPURIOUS_MASTER || irq == PIC_SPURIOUS_SLAVE) && !(isr & BIT(irq))) {
    /* A spurious request takes no EOI on its own chip; the master did acknowledge the cascade. */
    spurious[irq]++;
    if (irq == PIC_SPURIOUS_SLAVE) outb(PIC_MASTER_COMMAND, PIC_OCW2_NONSPECIFIC_EOI);
    return;
  }
  deliveries[irq]++;
  isr_at_entry[irq] = isr;
  if (irq == IRQ_COM1) uart_iir = inb(PORT_COM1 + UART_IIR);
  if (lower_line_at[irq] != 0 && deliveries[irq] == lower_line_at[irq]) testdev_set_irq(irq, 0);
  if (handler_eois) pic_eoi((u8)irq);
}

void guest_interrupt(u64 vector, u64 error_code) {
  if (vector < PIC_MASTER_VECTOR_BASE) unexpected_exception(vector, error_code);
  if (vector >= PIC_VECTOR_END) unexpected_vector(vector);
  handle_irq((u32)(vector - PIC_MASTER_VECTOR_BASE));
}

static void pulse(u32 line) {
  testdev_set_irq(line, 1);
  testdev_set_irq(line, 0);
}

static void unmask(u16 irqs) {
  unmasked |= irqs;
  pic_set_mask((u16)~unmasked);
}

static void mask(u16 irqs) {
  unmasked &= (u16)~irqs;
  pic_set_mask((u16)~unmasked);
}

/* Re-initialises the master alone with ICW4 `icw4` (interrupts off meanwhile), keeping the IMR. */
static void reinit_master(u8 icw4) {
  cli();
  outb(PIC_MASTER_COMMAND, PIC_ICW1_ICW4_NEEDED);
  outb(PIC_MASTER_DATA, PIC_MASTER_VECTOR_BASE);
  outb(PIC_MASTER_DATA, BIT(PIC_CASCADE_IRQ));
  outb(PIC_MASTER_DATA, icw4);
  pic_set_mask((u16)~unmasked);
  sti();
}

/* Raises and lowers a level line while the CPU has interrupts off: no INTA can see the request.
 * On the slave the master's IRQ 2 input is edge-triggered (ELCR bits 0-2 are fixed at 0), so the
 * master latches the cascade's rise and later acknowledges IRQ 2 with nothing behind it on the
 * slave: the slave answers with IRQ 15, a spurious interrupt (8259A datasheet, "Interrupt
 * sequence": a request gone before INTA reads as IR7). On the master the request simply goes. */
static void withdraw_request(u32 line) {
  cli();
  testdev_set_irq(line, 1);
  testdev_set_irq(line, 0);
  sti();
}

static u16 read_elcr(void) { return (u16)(inb(PIC_ELCR_MASTER) | (inb(PIC_ELCR_SLAVE) << 8)); }

int main(void) {
  serial_init();
  idt_install();
  printf("pic-legacy: 8259A pair, LINT0 virtual wire, pc-testdev lines and the UART's IRQ 4\n");
  CHECK(1, timing_init() == 0, "the TSC calibrates against PIT counter 2 (%lu ticks/ms)", tsc_per_ms());
  lapic_enable(0);
  lapic_write(LAPIC_REG_LINT0, LVT_EXTINT);
  pic_init(PIC_MASTER_VECTOR_BASE, PIC_SLAVE_VECTOR_BASE);
  pic_set_elcr(0);
  CHECK(2, pic_read_mask() == 0xffff, "after ICW1-4 every IRQ is masked: IMR reads 0x%x", pic_read_mask());
  pic_set_elcr(BIT(LINE_SLAVE_LEVEL));
  CHECK(3, read_elcr() == BIT(LINE_SLAVE_LEVEL), "ELCR reads back IRQ 12 level-triggered (0x%x)", read_elcr());
  pic_set_elcr(0);
  sti();

  /* Edges. */
  unmask(BIT(LINE_EDGE));
  pulse(LINE_EDGE);
  CHECK(4, WAIT_FOR(deliveries[LINE_EDGE] == 1, DELIVERY_TIMEOUT_US), "an edge on IRQ 3 is delivered (vector 0x23)");
  CHECK(5, isr_at_entry[LINE_EDGE] == BIT(LINE_EDGE), "in its handler ISR holds IRQ 3 alone (0x%x)", isr_at_entry[LINE_EDGE]);
  CHECK(6, pic_read_isr() == 0, "the handler's non-specific EOI ends it (ISR 0x%x)", pic_read_isr());
  for (u32 edge = 2; edge <= 4; edge++) {
    pulse(LINE_EDGE);
    (void)WAIT_FOR(deliveries[LINE_EDGE] == edge, DELIVERY_TIMEOUT_US);
  }
  delay_us(QUIET_US);
  CHECK(7, deliveries[LINE_EDGE] == 4, "four edges, four deliveries (%u)", deliveries[LINE_EDGE]);

  /* An edge on a masked IRQ waits in IRR. */
  pulse(LINE_HELD);
  delay_us(QUIET_US);
  CHECK(8, deliveries[LINE_HELD] == 0 && (pic_read_irr() & BIT(LINE_HELD)), "an edge on masked IRQ 5 is held in IRR (0x%x), not delivered", pic_read_irr());
  unmask(BIT(LINE_HELD));
  CHECK(9, WAIT_FOR(deliveries[LINE_HELD] == 1, DELIVERY_TIMEOUT_US), "unmasking IRQ 5 delivers the held edge");

  /* The slave through the cascade. */
  unmask(BIT(PIC_CASCADE_IRQ) | BIT(LINE_SLAVE_EDGE));
  pulse(LINE_SLAVE_EDGE);
  CHECK(10, WAIT_FOR(deliveries[LINE_SLAVE_EDGE] == 1, DELIVERY_TIMEOUT_US), "an edge on IRQ 10 arrives from the slave through the cascade (vector 0x2a)");
  CHECK(11, isr_at_entry[LINE_SLAVE_EDGE] == (BIT(LINE_SLAVE_EDGE) | BIT(PIC_CASCADE_IRQ)), "in its handler the slave's ISR holds IRQ 10 and the master's IRQ 2 (0x%x)", isr_at_entry[LINE_SLAVE_EDGE]);
  CHECK(12, pic_read_isr() == 0, "EOIs to the slave, then the master, end both (ISR 0x%x)", pic_read_isr());

  /* Fully nested priority, non-specific and specific EOIs: the main code EOIs from here. */
  handler_eois = 0;
  unmask(BIT(LINE_LOWER_PRIORITY));
  pulse(LINE_HELD);
  CHECK(13, WAIT_FOR(deliveries[LINE_HELD] == 2, DELIVERY_TIMEOUT_US), "IRQ 5 is delivered; its handler sends no EOI");
  CHECK(14, pic_read_isr() == BIT(LINE_HELD), "IRQ 5 stays in service (ISR 0x%x)", pic_read_isr());
  pulse(LINE_LOWER_PRIORITY);
  delay_us(QUIET_US);
  CHECK(15, deliveries[LINE_LOWER_PRIORITY] == 0 && (pic_read_irr() & BIT(LINE_LOWER_PRIORITY)), "IRQ 6, lower in priority, waits in IRR (0x%x) while IRQ 5 is in service", pic_read_irr());
  pulse(LINE_EDGE);
  CHECK(16, WAIT_FOR(deliveries[LINE_EDGE] == 5, DELIVERY_TIMEOUT_US), "IRQ 3, higher in priority, is delivered while IRQ 5 is in service");
  CHECK(17, pic_read_isr() == (BIT(LINE_EDGE) | BIT(LINE_HELD)), "IRQs 3 and 5 are both in service (ISR 0x%x)", pic_read_isr());
  outb(PIC_MASTER_COMMAND, PIC_OCW2_NONSPECIFIC_EOI);
  CHECK(18, pic_read_isr() == BIT(LINE_HELD), "a non-specific EOI ends the highest-priority one, IRQ 3 (ISR 0x%x)", pic_read_isr());
  delay_us(QUIET_US);
  CHECK(19, deliveries[LINE_LOWER_PRIORITY] == 0, "IRQ 6 still waits behind IRQ 5");
  outb(PIC_MASTER_COMMAND, PIC_OCW2_SPECIFIC_EOI | LINE_LOWER_PRIORITY);
  CHECK(20, pic_read_isr() == BIT(LINE_HELD), "a specific EOI for IRQ 6, not in service, leaves IRQ 5 in service (ISR 0x%x)", pic_read_isr());
  outb(PIC_MASTER_COMMAND, PIC_OCW2_SPECIFIC_EOI | LINE_HELD);
  CHECK(21, WAIT_FOR(deliveries[LINE_LOWER_PRIORITY] == 1, DELIVERY_TIMEOUT_US), "a specific EOI ends IRQ 5, and the waiting IRQ 6 is delivered");
  CHECK(22, pic_read_isr() == BIT(LINE_LOWER_PRIORITY), "IRQ 6 is in service (ISR 0x%x)", pic_read_isr());
  outb(PIC_MASTER_COMMAND, PIC_OCW2_SPECIFIC_EOI | LINE_LOWER_PRIORITY);
  CHECK(23, pic_read_isr() == 0, "its specific EOI ends it (ISR 0x%x)", pic_read_isr());

  /* Auto-EOI: the second INTA pulse ends the interrupt (ICW4 bit 1). */
  reinit_master(PIC_ICW4_8086 | PIC_ICW4_AUTO_EOI);
  pulse(LINE_EDGE);
  CHECK(24, WAIT_FOR(deliveries[LINE_EDGE] == 6, DELIVERY_TIMEOUT_US), "with ICW4 auto-EOI an edge on IRQ 3 is delivered");
  CHECK(25, !(isr_at_entry[LINE_EDGE] & BIT(LINE_EDGE)) && pic_read_isr() == 0, "and is never in service (ISR 0x%x in the handler)", isr_at_entry[LINE_EDGE]);
  reinit_master(PIC_ICW4_8086);
  handler_eois = 1;

  /* Level-triggered (ELCR): the request follows the line. */
  pic_set_elcr(BIT(LINE_SLAVE_LEVEL));
  unmask(BIT(LINE_SLAVE_LEVEL));
  lower_line_at[LINE_SLAVE_LEVEL] = 2;
  testdev_set_irq(LINE_SLAVE_LEVEL, 1);
  (void)WAIT_FOR(deliveries[LINE_SLAVE_LEVEL] >= 2, DELIVERY_TIMEOUT_US);
  delay_us(QUIET_US);
  CHECK(26, deliveries[LINE_SLAVE_LEVEL] == 2, "level IRQ 12, still high at its EOI, is delivered again, and not once its line fell (%u deliveries)", deliveries[LINE_SLAVE_LEVEL]);
  withdraw_request(LINE_SLAVE_LEVEL);
  CHECK(27, WAIT_FOR(spurious[PIC_SPURIOUS_SLAVE] == 1, DELIVERY_TIMEOUT_US), "a slave level request withdrawn while interrupts were off leaves the master's edge-latched IRQ 2: a spurious IRQ 15");
  delay_us(QUIET_US);
  CHECK(28, deliveries[LINE_SLAVE_LEVEL] == 2 && spurious[PIC_SPURIOUS_SLAVE] == 1 && pic_read_isr() == 0, "IRQ 12 is not delivered, and the master's EOI ends the cascade (ISR 0x%x)", pic_read_isr());
  pic_set_elcr(BIT(LINE_HELD));
  withdraw_request(LINE_HELD);
  delay_us(QUIET_US);
  CHECK(29, deliveries[LINE_HELD] == 2 && spurious[PIC_SPURIOUS_MASTER] == 0, "a master level request (IRQ 5) withdrawn while interrupts were off delivers nothing, not even a spurious IRQ 7");
  pic_set_elcr(0);

  /* The UART's THR-empty interrupt. The test's own THR write ends the line printed first. */
  printf("UART THR-empty interrupt on IRQ 4:");
  unmask(BIT(IRQ_COM1));
  outb(PORT_COM1 + UART_IER, UART_IER_THR_EMPTY);
  int raised = WAIT_FOR(deliveries[IRQ_COM1] == 1, DELIVERY_TIMEOUT_US);
  u8 first_iir = uart_iir;
  delay_us(QUIET_US);
  u32 after_iir_read = deliveries[IRQ_COM1];
  outb(PORT_COM1, '\n');
  int raised_again = WAIT_FOR(deliveries[IRQ_COM1] == 2, DELIVERY_TIMEOUT_US);
  outb(PORT_COM1 + UART_IER, 0);
  mask(BIT(IRQ_COM1));
  CHECK(30, raised && (first_iir & UART_IIR_ID_MASK) == UART_IIR_THR_EMPTY, "enabling it with THR empty raises IRQ 4, and IIR says THR empty (0x%x)", first_iir);
  CHECK(31, after_iir_read == 1, "reading IIR ended it: no second interrupt (%u)", after_iir_read);
  CHECK(32, raised_again, "a THR write, sent at once, raises it again");

  /* LINT0 is the virtual wire: masked, the 8259A's request waits. */
  lapic_write(LAPIC_REG_LINT0, LVT_EXTINT | LVT_MASKED);
  pulse(LINE_EDGE);
  delay_us(QUIET_US);
  CHECK(33, deliveries[LINE_EDGE] == 6 && (pic_read_irr() & BIT(LINE_EDGE)), "with LINT0 masked an edge on IRQ 3 waits in the 8259A (IRR 0x%x)", pic_read_irr());
  lapic_write(LAPIC_REG_LINT0, LVT_EXTINT);
  CHECK(34, WAIT_FOR(deliveries[LINE_EDGE] == 7, DELIVERY_TIMEOUT_US), "unmasking LINT0 (ExtINT) delivers it");

  delay_us(QUIET_US);
  CHECK(35, spurious[PIC_SPURIOUS_MASTER] == 0 && spurious[PIC_SPURIOUS_SLAVE] == 1, "no other spurious IRQ 7 or 15 in all of this (%u, %u)", spurious[PIC_SPURIOUS_MASTER], spurious[PIC_SPURIOUS_SLAVE]);
  cli();
  all_checks_passed("pic-legacy");
}
