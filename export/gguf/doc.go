// Package gguf writes GGUF files (llama.cpp, Ollama) from a Hugging Face checkpoint's tensors, in pure Go:
// metadata from config.json and the tokenizer files, tensor names, shapes and llama's Q/K permutation as
// llama.cpp's converter writes them, and tensor data quantized by internal/ggml, streamed from a Source so that
// no intermediate file is written. A File's layout is planned before any data is produced, so any byte range
// of it can be produced on demand (uploads without staging).
package gguf
