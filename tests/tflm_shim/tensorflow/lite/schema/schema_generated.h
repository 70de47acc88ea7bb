// TEST SHIM (see tests/tflm_shim/README.md): declarations only, mirroring TFLite Micro's API.
#ifndef EDGEKD_TEST_SHIM_SCHEMA_GENERATED_H_
#define EDGEKD_TEST_SHIM_SCHEMA_GENERATED_H_
#include "tensorflow/lite/micro/micro_interpreter.h"
#define TFLITE_SCHEMA_VERSION (3)
namespace tflite { const Model* GetModel(const void* buf); }
#endif
