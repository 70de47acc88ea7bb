// edgekd TensorFlow Lite Micro application template: runs the bundle's int8 model once on one eval
// image and prints the predicted class, the expected one and the arena used. Build it into a Cortex-M
// project next to TFLM (see README.md) with two generated files:
//   student_int8_model_data.cc/.h     the model as a C array (in the bundle, from `edgekd export`)
//   student_int8_tflm_config.h        arena size, op list, input shape, a sample image
//                                     (from `edgekd bench --device mcu`, in its report folder)
// Another model: -DEDGEKD_TFLM_CONFIG='"<stem>_tflm_config.h"'.
#include <cstddef>
#include <cstdint>

#include "tensorflow/lite/micro/micro_interpreter.h"
#include "tensorflow/lite/micro/micro_log.h"
#include "tensorflow/lite/micro/micro_mutable_op_resolver.h"
#include "tensorflow/lite/micro/system_setup.h"
#include "tensorflow/lite/schema/schema_generated.h"

#ifndef EDGEKD_TFLM_CONFIG
#define EDGEKD_TFLM_CONFIG "student_int8_tflm_config.h"
#endif
#include EDGEKD_TFLM_CONFIG

namespace {

// The tensor arena holds every activation, scratch buffer and runtime struct; TFLM needs it 16-byte
// aligned. Its size was measured by `edgekd bench --device mcu` (plus CMSIS-NN scratch and margin).
alignas(16) std::uint8_t g_arena[kEdgekdArenaSize];

// edgekd models take raw pixels 0-255 (normalisation is folded into the graph): quantize with the
// input tensor's own scale and zero point, round half away from zero, clamp to int8.
std::int8_t QuantizePixel(std::uint8_t pixel, float scale, int zero_point) {
  const float q = static_cast<float>(pixel) / scale + static_cast<float>(zero_point);
  const int rounded = static_cast<int>(q >= 0.0f ? q + 0.5f : q - 0.5f);
  return static_cast<std::int8_t>(rounded < -128 ? -128 : (rounded > 127 ? 127 : rounded));
}

}  // namespace

int main() {
  tflite::InitializeTarget();  // board bring-up hook (UART for MicroPrintf on most ports)

  const tflite::Model* model = tflite::GetModel(EDGEKD_MODEL_DATA);
  if (model->version() != TFLITE_SCHEMA_VERSION) {
    MicroPrintf("model schema %d, this TFLM expects %d", static_cast<int>(model->version()), TFLITE_SCHEMA_VERSION);
    return 1;
  }
  // only the kernels this model uses are linked in: MicroMutableOpResolver, not AllOpsResolver
  static tflite::MicroMutableOpResolver<kEdgekdNumOps> resolver;
  if (EdgekdRegisterOps(resolver) != kTfLiteOk) {
    MicroPrintf("registering the model's ops failed");
    return 1;
  }
  static tflite::MicroInterpreter interpreter(model, resolver, g_arena, kEdgekdArenaSize);
  if (interpreter.AllocateTensors() != kTfLiteOk) {
    MicroPrintf("AllocateTensors failed: the arena of %u bytes is too small", static_cast<unsigned>(kEdgekdArenaSize));
    return 1;
  }

  TfLiteTensor* input = interpreter.input(0);
  if (input->type != kTfLiteInt8 || input->bytes != kEdgekdInputBytes) {
    MicroPrintf("input is not int8 of %u bytes", static_cast<unsigned>(kEdgekdInputBytes));
    return 1;
  }
  for (std::size_t i = 0; i < kEdgekdInputBytes; ++i) {
    input->data.int8[i] = QuantizePixel(kEdgekdSampleImage[i], input->params.scale, input->params.zero_point);
  }
  if (interpreter.Invoke() != kTfLiteOk) {
    MicroPrintf("Invoke failed");
    return 1;
  }

  // argmax over the int8 scores: dequantization is monotonic, so it does not change the winner
  const TfLiteTensor* output = interpreter.output(0);
  int best = 0;
  for (int c = 1; c < kEdgekdNumClasses; ++c) {
    if (output->data.int8[c] > output->data.int8[best]) best = c;
  }
  MicroPrintf("class %d (expected %d), arena used %u of %u bytes", best, kEdgekdSampleLabel,
              static_cast<unsigned>(interpreter.arena_used_bytes()), static_cast<unsigned>(kEdgekdArenaSize));
  return (kEdgekdSampleLabel < 0 || best == kEdgekdSampleLabel) ? 0 : 2;
}
