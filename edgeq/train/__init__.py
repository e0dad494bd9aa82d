"""Training-side remedies: `adapt` (activation swap + recovery fine-tuning with Ultralytics' trainer and its
distillation from the original model) and `qat` (quantization-aware fine-tuning under the target's own fake
quantization, initialised from its PTQ calibration, distilled from the FP32 model). Core only: the quantizer
libraries (NNCF, ModelOpt) are reached through the target's backend."""
