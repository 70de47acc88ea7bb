// TEST SHIM (see tests/tflm_shim/README.md): declarations only, mirroring TFLite Micro's API.
#ifndef EDGEKD_TEST_SHIM_MICRO_MUTABLE_OP_RESOLVER_H_
#define EDGEKD_TEST_SHIM_MICRO_MUTABLE_OP_RESOLVER_H_
#include "tensorflow/lite/micro/micro_interpreter.h"
namespace tflite {
template <unsigned int tOpCount>
class MicroMutableOpResolver : public MicroOpResolver {
 public:
  TfLiteStatus AddAdd(); TfLiteStatus AddAveragePool2D(); TfLiteStatus AddConcatenation(); TfLiteStatus AddConv2D();
  TfLiteStatus AddDepthwiseConv2D(); TfLiteStatus AddDequantize(); TfLiteStatus AddFullyConnected(); TfLiteStatus AddHardSwish();
  TfLiteStatus AddLogistic(); TfLiteStatus AddMaxPool2D(); TfLiteStatus AddMean(); TfLiteStatus AddMul(); TfLiteStatus AddPad();
  TfLiteStatus AddQuantize(); TfLiteStatus AddRelu(); TfLiteStatus AddRelu6(); TfLiteStatus AddReshape(); TfLiteStatus AddSoftmax();
  TfLiteStatus AddSub(); TfLiteStatus AddTranspose();
};
}  // namespace tflite
#endif
