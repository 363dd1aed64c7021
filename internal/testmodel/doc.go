// Package testmodel generates the models, adapters and trainer checkpoints that hubsync's tests, benchmarks and
// demos use, without any network: Hugging Face model directories (16-bit, or bitsandbytes NF4/FP4 4-bit with
// optional double quantization, single file or sharded), PEFT LoRA adapters with every option the merge has to
// handle (rank/alpha patterns, rsLoRA, DoRA, fan_in_fan_out, lora_bias, trained biases, embedding LoRA,
// modules_to_save with a resized vocabulary), trainer-like checkpoint folders written in the Trainer's order, and
// an independent float64 reference merge to check the production merge against.
//
// Everything is deterministic for a given seed. Weights are random (normal, with a few outliers, never zeros) and
// are generated tile by tile from per-tensor random streams, so memory stays bounded for any model size.
//
// The formats follow the reference notes summarised in docs/formats.md (model-formats.md §3 bitsandbytes
// serialization, §4.5/4.6 quantization, §5 PEFT, §7 tensor naming).
package testmodel
