package export

import (
	"os"
	"path/filepath"
)

// tokenizerFileNames is the fixed list of files TokenizerFiles looks for, in the order they are returned: the
// files transformers' tokenizer and processor save_pretrained write (fast and slow tokenizers, SentencePiece,
// BPE, WordPiece and tiktoken vocabularies, chat templates) plus the image/video processor configs a multimodal
// checkpoint needs to load.
var tokenizerFileNames = [...]string{
	"tokenizer.json",
	"tokenizer_config.json",
	"special_tokens_map.json",
	"added_tokens.json",
	"tokenizer.model",
	"spiece.model",
	"sentencepiece.bpe.model",
	"vocab.json",
	"merges.txt",
	"vocab.txt",
	"tiktoken.model",
	"qwen.tiktoken",
	"chat_template.jinja",
	"chat_template.json",
	"preprocessor_config.json",
	"processor_config.json",
	"video_preprocessor_config.json",
}

// TokenizerFileNames returns the fixed list of file names TokenizerFiles looks for (a copy): tokenizer.json,
// tokenizer_config.json, special_tokens_map.json, added_tokens.json, tokenizer.model, spiece.model,
// sentencepiece.bpe.model, vocab.json, merges.txt, vocab.txt, tiktoken.model, qwen.tiktoken, chat_template.jinja,
// chat_template.json, preprocessor_config.json, processor_config.json, video_preprocessor_config.json.
func TokenizerFileNames() []string { return append([]string(nil), tokenizerFileNames[:]...) }

// TokenizerFiles picks the directory to take tokenizer files from: the first of dirs (typically the checkpoint,
// then the base model) holding at least one regular file (symbolic links followed) named in TokenizerFileNames().
// It returns that directory and the names found there, in list order; "" and nil when no directory has any.
// Files are never mixed from two directories, since a tokenizer's files belong together. Empty dirs are skipped.
func TokenizerFiles(dirs ...string) (dir string, names []string) {
	for _, d := range dirs {
		if d == "" {
			continue
		}
		for _, n := range tokenizerFileNames {
			if st, err := os.Stat(filepath.Join(d, n)); err == nil && st.Mode().IsRegular() {
				names = append(names, n)
			}
		}
		if len(names) > 0 {
			return d, names
		}
	}
	return "", nil
}
