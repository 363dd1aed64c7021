// Package export writes a merged model as a standard Hugging Face model directory: safetensors shards planned
// exactly as huggingface_hub splits a state dict, the shard index, config.json without quantization settings, the
// tokenizer files and a model card.
//
// Everything is written into a temporary directory beside the final one and renamed into place by
// [Output.Commit], so a failure never leaves a half-written model behind. Every file is hashed while it is
// written (shards) or from memory (small files), so the upload never has to re-read the output: [Output.Files]
// returns each file's size, SHA-256 and leading sample.
package export
