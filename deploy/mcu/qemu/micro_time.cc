// TFLite Micro's time source for the QEMU boards: MicroProfiler's "ticks" are executed
// instructions (deploy/mcu/qemu/startup.c), so its per-op figures are instruction counts.
// Replaces tensorflow/lite/micro/micro_time.cc in the build.
#include "tensorflow/lite/micro/micro_time.h"

extern "C" uint32_t edgekd_instructions(void);

namespace tflite {

// one instruction per virtual nanosecond under `qemu-system-arm -icount shift=0`
uint32_t ticks_per_second() { return 1000000000u; }
uint32_t GetCurrentTimeTicks() { return edgekd_instructions(); }

}  // namespace tflite
