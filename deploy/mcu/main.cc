// edgekd TensorFlow Lite Micro application template: runs the bundle's int8 model on the sample
// images of its config header and checks every int8 output value against what the TFLM interpreter
// computed on the host for the same input (a model that TFLM + CMSIS-NN run correctly on the device
// gives bit-identical outputs). Build it into a Cortex-M project next to TFLM (see README.md) with
// two generated files:
//   student_int8_model_data.cc/.h     the model as a C array (in the bundle, from `edgekd export`)
//   student_int8_tflm_config.h        arena size, op list, input shape, sample images and the host's
//                                     int8 outputs for them (from `edgekd bench --device mcu` or
//                                     `edgekd mcu build`)
// Another model: -DEDGEKD_TFLM_CONFIG='"<stem>_tflm_config.h"'. With -DEDGEKD_PROFILE (what
// `edgekd mcu build` uses for the emulated boards) TFLM's MicroProfiler times every op.
#include <cstddef>
#include <cstdint>

#include "tensorflow/lite/micro/micro_interpreter.h"
#include "tensorflow/lite/micro/micro_log.h"
#include "tensorflow/lite/micro/micro_mutable_op_resolver.h"
#include "tensorflow/lite/micro/system_setup.h"
#include "tensorflow/lite/schema/schema_generated.h"
#ifdef EDGEKD_PROFILE
#include "tensorflow/lite/micro/micro_profiler.h"
#include "tensorflow/lite/micro/micro_time.h"
#endif

#ifndef EDGEKD_TFLM_CONFIG
#define EDGEKD_TFLM_CONFIG "student_int8_tflm_config.h"
#endif
#include EDGEKD_TFLM_CONFIG

namespace {

// The tensor arena holds every activation, scratch buffer and runtime struct; TFLM needs it 16-byte
// aligned. Its size was measured on the host (plus CMSIS-NN scratch and margin).
alignas(16) std::uint8_t g_arena[kEdgekdArenaSize];

#ifdef EDGEKD_PROFILE
// ~80 KB of event buffers: in a section of its own so the linker map tells the RAM a deployed
// build needs from what profiling adds (deploy/mcu/qemu/sections.ld)
__attribute__((section(".profiler"))) tflite::MicroProfiler g_profiler;
#endif

// edgekd models take raw pixels 0-255 (normalisation is folded into the graph): quantize with the
// input tensor's own scale and zero point, round half away from zero, clamp to int8. The host
// reference quantizes the same way in float32, so both sides feed the model the same bytes.
std::int8_t QuantizePixel(std::uint8_t pixel, float scale, int zero_point) {
  const float q = static_cast<float>(pixel) / scale + static_cast<float>(zero_point);
  const int rounded = static_cast<int>(q >= 0.0f ? q + 0.5f : q - 0.5f);
  return static_cast<std::int8_t>(rounded < -128 ? -128 : (rounded > 127 ? 127 : rounded));
}

// One line per 32 output values: "edgekd: output S OFFSET: v,v,…" (parsed by edgekd.mcu.emulate).
void PrintOutput(int sample, const std::int8_t* values, std::size_t count) {
  char line[32 * 5 + 1];
  for (std::size_t start = 0; start < count; start += 32) {
    std::size_t n = 0;
    for (std::size_t i = start; i < count && i < start + 32; ++i) {
      int v = values[i];
      if (i > start) line[n++] = ',';
      if (v < 0) {
        line[n++] = '-';
        v = -v;
      }
      if (v >= 100) line[n++] = static_cast<char>('0' + v / 100);
      if (v >= 10) line[n++] = static_cast<char>('0' + v / 10 % 10);
      line[n++] = static_cast<char>('0' + v % 10);
    }
    line[n] = '\0';
    MicroPrintf("edgekd: output %d %u: %s", sample, static_cast<unsigned>(start), line);
  }
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
#ifdef EDGEKD_PROFILE
  static tflite::MicroInterpreter interpreter(model, resolver, g_arena, kEdgekdArenaSize, nullptr, &g_profiler);
#else
  static tflite::MicroInterpreter interpreter(model, resolver, g_arena, kEdgekdArenaSize);
#endif
  if (interpreter.AllocateTensors() != kTfLiteOk) {
    MicroPrintf("AllocateTensors failed: the arena of %u bytes is too small", static_cast<unsigned>(kEdgekdArenaSize));
    return 1;
  }

  TfLiteTensor* input = interpreter.input(0);
  const TfLiteTensor* output = interpreter.output(0);
  if (input->type != kTfLiteInt8 || input->bytes != kEdgekdInputBytes) {
    MicroPrintf("input is not int8 of %u bytes", static_cast<unsigned>(kEdgekdInputBytes));
    return 1;
  }
  if (output->type != kTfLiteInt8 || output->bytes != kEdgekdOutputBytes) {
    MicroPrintf("output is not int8 of %u bytes", static_cast<unsigned>(kEdgekdOutputBytes));
    return 1;
  }

  int failed = 0;
  for (int s = 0; s < kEdgekdNumSamples; ++s) {
    for (std::size_t i = 0; i < kEdgekdInputBytes; ++i) {
      input->data.int8[i] = QuantizePixel(kEdgekdSampleImages[s][i], input->params.scale, input->params.zero_point);
    }
#ifdef EDGEKD_PROFILE
    g_profiler.ClearEvents();
    const std::uint32_t start = tflite::GetCurrentTimeTicks();
#endif
    if (interpreter.Invoke() != kTfLiteOk) {
      MicroPrintf("Invoke failed");
      return 1;
    }
#ifdef EDGEKD_PROFILE
    const std::uint32_t ticks = tflite::GetCurrentTimeTicks() - start;
    MicroPrintf("edgekd: profile %d", s);
    g_profiler.LogCsv();  // "event,tag,ticks" per op; ticks are instructions on the QEMU boards
    MicroPrintf("edgekd: invoke %d ticks %u", s, static_cast<unsigned>(ticks));
#endif
    // argmax over the int8 scores (classification): dequantization is monotonic, so it does not
    // change the winner
    int best = 0;
    for (int c = 1; c < kEdgekdNumClasses; ++c) {
      if (output->data.int8[c] > output->data.int8[best]) best = c;
    }
    int differ = 0;
    if (kEdgekdHasExpected) {
      for (std::size_t i = 0; i < kEdgekdOutputBytes; ++i) differ += output->data.int8[i] != kEdgekdExpectedOutputs[s][i];
    }
    PrintOutput(s, output->data.int8, kEdgekdOutputBytes);
    const bool ok = kEdgekdHasExpected ? differ == 0 : (kEdgekdSampleLabels[s] < 0 || best == kEdgekdSampleLabels[s]);
    MicroPrintf("edgekd: sample %d: class %d (label %d), %d of %u output values differ from the host's: %s", s, best,
                kEdgekdSampleLabels[s], differ, static_cast<unsigned>(kEdgekdOutputBytes), ok ? "ok" : "MISMATCH");
    failed += ok ? 0 : 1;
  }
  MicroPrintf("edgekd: arena used %u of %u bytes", static_cast<unsigned>(interpreter.arena_used_bytes()),
              static_cast<unsigned>(kEdgekdArenaSize));
  MicroPrintf("edgekd: %d of %d samples ok", kEdgekdNumSamples - failed, kEdgekdNumSamples);
  return failed == 0 ? 0 : 2;
}
