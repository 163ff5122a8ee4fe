/* hang: a guest that never ends, so that only the VMM's time limit (`irqchip run --timeout`) can
 * end the run, with the vCPU busy in an interrupt storm that never lets up: a level line held high
 * whose handler EOIs but never lowers it. Each EOI finds the line still high, so the IOAPIC
 * delivers it again at once (82093AA remote IRR; x86-controllers.md §2.8), and the main code,
 * which spins with interrupts on, hardly runs. One CPU; no PIT needed. */
#include "lib/irqtest.h"

#define STORM_PIN 21
#define STORM_VECTOR 0x60
#define BSP_DESTINATION 0

void guest_interrupt(u64 vector, u64 error_code) {
  if (vector != STORM_VECTOR) {
    if (vector < PIC_MASTER_VECTOR_BASE) unexpected_exception(vector, error_code);
    unexpected_vector(vector);
  }
  lapic_eoi();
}

int main(void) {
  serial_init();
  idt_install();
  lapic_enable(0);
  printf("hang: a level line that stays high and a handler that EOIs it, for ever; only the time limit ends this\n");
  ioapic_route(STORM_PIN, STORM_VECTOR, 1, BSP_DESTINATION, 0);
  testdev_set_irq(STORM_PIN, 1);
  sti();
  for (;;) __asm__ volatile("pause");
}
