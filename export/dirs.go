package export

import (
	"context"
	"path/filepath"

	"github.com/hubsync/hubsync/internal/safetensors"
	"github.com/hubsync/hubsync/internal/tensor"
)

// AuxFile is a small file copied unchanged into an output directory (tokenizer files, generation_config.json).
type AuxFile struct {
	// Name is the file's path in the output directory; Src the file copied.
	Name, Src string
}

// ModelFiles are a merged model directory's files besides the weight shards and the index.
type ModelFiles struct {
	// Config is config.json as written (see MergedConfig, SetQuantizationConfig).
	Config []byte
	// Aux are copied as they are.
	Aux []AuxFile
	// Card is the model card, README.md (ModelCard).
	Card []byte
}

// MergedConfig is the base's config.json rewritten for a merged output: torch_dtype (and the sub-configs'),
// the vocabulary size, and, when untie is set, tie_word_embeddings false.
func MergedConfig(base []byte, dtype tensor.DType, vocabSize int64, untie bool) ([]byte, error) {
	cfg, err := RewriteConfig(base, dtype, vocabSize)
	if err != nil {
		return nil, err
	}
	if untie {
		return UntieConfig(cfg)
	}
	return cfg, nil
}

// WriteModel writes the merged model directory final and commits it (nothing is left behind on error): the
// shards of plan with fill producing the tensor data (a nil fill writes no shards: the small files of a publish
// that produces the shards for the upload instead), the index for a sharded plan, then the files that files
// returns (called once the shards are written, so they may depend on them). It returns the final directory and
// every file's digest, sorted by path. Errors from files are returned as they are.
func WriteModel(ctx context.Context, final string, plan *ShardPlan, fill safetensors.FillFunc,
	files func() (ModelFiles, error)) (string, []FileDigest, error) {
	out, err := CreateOutput(final)
	if err != nil {
		return "", nil, err
	}
	defer out.Abort()
	if fill != nil {
		if err := out.WriteShards(ctx, plan, fill); err != nil {
			return "", nil, err
		}
	} else {
		idx, err := plan.IndexJSON()
		if err != nil {
			return "", nil, err
		}
		if idx != nil {
			if err := out.WriteFile(IndexFileName, idx); err != nil {
				return "", nil, err
			}
		}
	}
	m, err := files()
	if err != nil {
		return "", nil, err
	}
	if err := out.WriteFile(configFileName, m.Config); err != nil {
		return "", nil, err
	}
	for _, a := range m.Aux {
		if err := out.CopyFile(a.Name, a.Src); err != nil {
			return "", nil, err
		}
	}
	if err := out.WriteFile(cardFileName, m.Card); err != nil {
		return "", nil, err
	}
	return out.commitWithFiles(ctx)
}

// AdapterDir describes an adapter-only output directory.
type AdapterDir struct {
	// Src is the checkpoint directory; Files the names taken from it (hard links where possible, else copies).
	Src   string
	Files []string
	// Card is the model card, README.md (AdapterCard).
	Card []byte
}

// WriteAdapter writes the adapter-only directory final and commits it (every file synced; nothing is left
// behind on error). It returns the final directory and every file's digest, sorted by path.
func WriteAdapter(ctx context.Context, final string, d AdapterDir) (string, []FileDigest, error) {
	out, err := CreateOutput(final)
	if err != nil {
		return "", nil, err
	}
	defer out.Abort()
	for _, n := range d.Files {
		if err := ctx.Err(); err != nil {
			return "", nil, err
		}
		if err := out.LinkFile(ctx, n, filepath.Join(d.Src, n)); err != nil {
			return "", nil, err
		}
	}
	if err := out.WriteFile(cardFileName, d.Card); err != nil {
		return "", nil, err
	}
	return out.commitWithFiles(ctx)
}

// commitWithFiles commits the output unless ctx is done and returns the final directory and every file's
// digest.
func (o *Output) commitWithFiles(ctx context.Context) (string, []FileDigest, error) {
	if err := ctx.Err(); err != nil {
		return "", nil, err
	}
	digests := o.Files()
	dir, err := o.Commit()
	if err != nil {
		return "", nil, err
	}
	return dir, digests, nil
}

// The small files' names in a model directory.
const (
	configFileName = "config.json"
	cardFileName   = "README.md"
)
