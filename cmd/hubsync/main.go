// Command hubsync publishes fine-tuned models to the Hugging Face Hub: it merges LoRA adapters into their
// (4-bit or 16-bit) base models, shards the result and uploads it with resumable transfers, once or as a daemon.
package main

import (
	"context"
	"os"
	"os/signal"
	"syscall"
)

func main() {
	ctx, stop := signal.NotifyContext(context.Background(), os.Interrupt, syscall.SIGTERM)
	code := run(ctx, os.Args[1:], os.Stdin, os.Stdout, os.Stderr)
	stop()
	os.Exit(code)
}
