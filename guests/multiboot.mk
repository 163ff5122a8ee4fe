# multiboot-hello (guests/multiboot/): a multiboot v1 test image built the way kvm-unit-tests
# builds its x86_64 tests for `qemu -kernel`: a 64-bit program linked at 1 MiB with a 32-bit
# multiboot entry stub, converted with `objcopy -O elf32-i386` (QEMU's multiboot loader refuses a
# 64-bit ELF). The 64-bit link is kept as build/multiboot-hello.elf64.
MULTIBOOT_SOURCES := multiboot/entry.S multiboot/hello.c lib/machine.c
MULTIBOOT_LDFLAGS := -nostdlib -static -no-pie -Wl,--build-id=none -Wl,--no-warn-rwx-segments \
  -Wl,-z,max-page-size=0x1000 -T multiboot/multiboot.ld

all: $(OUT)/multiboot-hello.elf32

$(OUT)/multiboot-hello.elf64: $(MULTIBOOT_SOURCES) multiboot/multiboot.ld lib/machine.h lib/runtime.h | $(OUT)
	gcc $(CFLAGS) $(MULTIBOOT_LDFLAGS) -o $@ $(MULTIBOOT_SOURCES)

$(OUT)/multiboot-hello.elf32: $(OUT)/multiboot-hello.elf64
	objcopy -O elf32-i386 $< $@
