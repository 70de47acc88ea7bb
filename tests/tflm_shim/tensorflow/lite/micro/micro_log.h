// TEST SHIM (see tests/tflm_shim/README.md): declarations only, mirroring TFLite Micro's API.
#ifndef EDGEKD_TEST_SHIM_MICRO_LOG_H_
#define EDGEKD_TEST_SHIM_MICRO_LOG_H_
void MicroPrintf(const char* format, ...);
#endif
