package vocab

import (
	"encoding/json"
	"errors"
	"fmt"
	"math"
	"os"
	"path/filepath"
	"strconv"
	"strings"
	"unicode/utf8"

	"google.golang.org/protobuf/encoding/protowire"
)

// Piece is one SentencePiece vocabulary entry (sentencepiece_model.proto ModelProto.SentencePiece).
type Piece struct {
	Text  string
	Score float32
	Type  int32 // TypeNormal … TypeByte (the proto's enum values are llama.cpp's token types)
}

// SentencePieceModel is the part of a SentencePiece ModelProto that a GGUF file needs.
type SentencePieceModel struct {
	Pieces []Piece
	// AddDummyPrefix is normalizer_spec.add_dummy_prefix (true when absent, the proto default).
	AddDummyPrefix bool
}

// ModelProto field numbers (sentencepiece_model.proto).
const (
	fieldPieces         = 1 // ModelProto.pieces (repeated SentencePiece)
	fieldNormalizerSpec = 3 // ModelProto.normalizer_spec
	fieldPieceText      = 1 // SentencePiece.piece
	fieldPieceScore     = 2 // SentencePiece.score (float)
	fieldPieceType      = 3 // SentencePiece.type (enum, NORMAL = 1 by default)
	fieldAddDummyPrefix = 3 // NormalizerSpec.add_dummy_prefix
)

// ParseSentencePiece decodes a serialized SentencePiece ModelProto (a tokenizer.model file). Unknown fields are
// skipped; a malformed message, a piece that is not UTF-8 or an unknown piece type is an error.
func ParseSentencePiece(data []byte) (*SentencePieceModel, error) {
	m := &SentencePieceModel{AddDummyPrefix: true}
	err := eachField(data, func(num protowire.Number, typ protowire.Type, val []byte, _ uint64) error {
		switch {
		case num == fieldPieces && typ == protowire.BytesType:
			p, err := parsePiece(val)
			if err != nil {
				return fmt.Errorf("piece %d: %w", len(m.Pieces), err)
			}
			m.Pieces = append(m.Pieces, p)
		case num == fieldNormalizerSpec && typ == protowire.BytesType:
			return eachField(val, func(n protowire.Number, t protowire.Type, _ []byte, u uint64) error {
				if n == fieldAddDummyPrefix && t == protowire.VarintType {
					m.AddDummyPrefix = u != 0
				}
				return nil
			})
		case num == fieldPieces || num == fieldNormalizerSpec:
			return fmt.Errorf("field %d has wire type %d, want length-delimited", num, typ)
		}
		return nil
	})
	if err != nil {
		return nil, err
	}
	if len(m.Pieces) == 0 {
		return nil, errors.New("no pieces")
	}
	return m, nil
}

func parsePiece(b []byte) (Piece, error) {
	p := Piece{Type: TypeNormal}
	err := eachField(b, func(num protowire.Number, typ protowire.Type, val []byte, u uint64) error {
		switch num {
		case fieldPieceText:
			if typ != protowire.BytesType {
				return fmt.Errorf("piece text has wire type %d", typ)
			}
			if !utf8.Valid(val) {
				return fmt.Errorf("piece text %q is not UTF-8", val)
			}
			p.Text = string(val)
		case fieldPieceScore:
			if typ != protowire.Fixed32Type {
				return fmt.Errorf("score has wire type %d, want fixed32", typ)
			}
			p.Score = math.Float32frombits(uint32(u))
		case fieldPieceType:
			if typ != protowire.VarintType {
				return fmt.Errorf("type has wire type %d, want varint", typ)
			}
			if u < uint64(TypeNormal) || u > uint64(TypeByte) {
				return fmt.Errorf("unknown piece type %d", u)
			}
			p.Type = int32(u)
		}
		return nil
	})
	return p, err
}

// eachField walks a protobuf message: val is the payload of a length-delimited field, u the value of a varint,
// fixed32 or fixed64 field. Groups are skipped.
func eachField(b []byte, fn func(protowire.Number, protowire.Type, []byte, uint64) error) error {
	for len(b) > 0 {
		num, typ, n := protowire.ConsumeTag(b)
		if n < 0 {
			return fmt.Errorf("bad tag: %w", protowire.ParseError(n))
		}
		b = b[n:]
		var val []byte
		var u uint64
		switch typ {
		case protowire.VarintType:
			u, n = protowire.ConsumeVarint(b)
		case protowire.Fixed32Type:
			var v uint32
			v, n = protowire.ConsumeFixed32(b)
			u = uint64(v)
		case protowire.Fixed64Type:
			u, n = protowire.ConsumeFixed64(b)
		case protowire.BytesType:
			val, n = protowire.ConsumeBytes(b)
		default:
			n = protowire.ConsumeFieldValue(num, typ, b)
		}
		if n < 0 {
			return fmt.Errorf("field %d: %w", num, protowire.ParseError(n))
		}
		b = b[n:]
		if err := fn(num, typ, val, u); err != nil {
			return err
		}
	}
	return nil
}

// loadSentencePiece is the converter's _create_vocab_sentencepiece + _set_vocab_sentencepiece.
func loadSentencePiece(dir string, vocabSize int, sf *sideFiles) (*Vocab, error) {
	path := filepath.Join(dir, fileSPM)
	data, err := os.ReadFile(path)
	if err != nil {
		return nil, fmt.Errorf("vocab: %w", err)
	}
	sp, err := ParseSentencePiece(data)
	if err != nil {
		return nil, fmt.Errorf("vocab: %s: not a SentencePiece model: %w", path, err)
	}
	n := vocabSize
	if n == 0 {
		n = len(sp.Pieces)
	}
	v := &Vocab{Model: "llama", Pre: "default", Tokens: make([]string, n), Scores: make([]float32, n),
		Types: make([]int32, n)}
	for i := range n {
		v.Tokens[i], v.Scores[i], v.Types[i] = "[PAD"+strconv.Itoa(i)+"]", -10000, TypeUnused
	}
	for i, p := range sp.Pieces {
		if i >= n {
			break // the converter warns and ignores pieces past vocab_size
		}
		t := p.Type
		if t == TypeUserDefined {
			t = TypeNormal // the converter asks IsUnknown/IsControl/IsUnused/IsByte only
		}
		v.Tokens[i], v.Scores[i], v.Types[i] = p.Text, p.Score, t
	}
	addedPath := filepath.Join(dir, fileAdded)
	if data, err := readOptional(addedPath); err != nil {
		return nil, err
	} else if data != nil {
		var added map[string]int
		if err := json.Unmarshal(data, &added); err != nil {
			return nil, fmt.Errorf("vocab: %s: %w", addedPath, err)
		}
		for _, tok := range sortedKeys(added) {
			id := added[tok]
			if id < 0 {
				return nil, fmt.Errorf("vocab: %s: %q has negative id %d", addedPath, tok, id)
			}
			if id >= n {
				continue
			}
			v.Tokens[id], v.Scores[id], v.Types[id] = tok, -1000, TypeUserDefined
		}
	}
	if sf.cfg != nil {
		dec, _ := sf.cfg["added_tokens_decoder"].(map[string]any)
		for _, key := range sortedKeys(dec) {
			id, err := strconv.Atoi(key)
			if err != nil || id < 0 {
				return nil, fmt.Errorf("vocab: %s: added_tokens_decoder key %q is not a token id",
					filepath.Join(dir, fileConfig), key)
			}
			entry, _ := dec[key].(map[string]any)
			tok, ok := entry["content"].(string)
			if !ok {
				return nil, fmt.Errorf("vocab: %s: added_tokens_decoder[%s] has no content",
					filepath.Join(dir, fileConfig), key)
			}
			if id >= n {
				continue
			}
			if special, _ := entry["special"].(bool); special || looksSpecial(tok) {
				v.Types[id] = TypeControl
			} else {
				tok = strings.ReplaceAll(tok, "▁", " ")
				v.Types[id] = TypeUserDefined
			}
			v.Scores[id], v.Tokens[id] = -1000, tok
		}
	}
	return v, nil
}
