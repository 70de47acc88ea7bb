// TEST SHIM (see tests/tflm_shim/README.md): declarations only, mirroring TFLite Micro's API.
#ifndef EDGEKD_TEST_SHIM_SYSTEM_SETUP_H_
#define EDGEKD_TEST_SHIM_SYSTEM_SETUP_H_
namespace tflite { void InitializeTarget(); }
#endif
