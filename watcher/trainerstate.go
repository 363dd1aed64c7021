package watcher

import (
	"bytes"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"math"
	"strconv"
)

// TrainerStateFile is the file the transformers Trainer writes last in every checkpoint (prior-art.md §2.2).
const TrainerStateFile = "trainer_state.json"

// TrainerState holds the fields of trainer_state.json the watcher uses.
type TrainerState struct {
	// GlobalStep is the optimizer step the checkpoint was saved at; checkpoint-N has global_step == N.
	GlobalStep int64
	// Epoch is the (fractional) epoch, when present.
	Epoch float64
	// BestModelCheckpoint is the path of the best checkpoint so far, when the Trainer tracks one.
	BestModelCheckpoint string
}

// ParseTrainerState parses the contents of a trainer_state.json. The document must be one JSON object with an
// integral, non-negative global_step; anything else (including a truncated file, which is never valid JSON because
// the object's closing brace comes last) is an error.
func ParseTrainerState(data []byte) (TrainerState, error) {
	// A map, not a struct: encoding/json matches struct fields case-insensitively, and "Global_Step" is not
	// the Trainer's key.
	var obj map[string]json.RawMessage
	dec := json.NewDecoder(bytes.NewReader(data))
	if err := dec.Decode(&obj); err != nil {
		return TrainerState{}, fmt.Errorf("not a complete JSON object: %w", err)
	}
	if obj == nil {
		return TrainerState{}, errors.New("not a complete JSON object: null")
	}
	raw := struct {
		GlobalStep, Epoch, BestModelCheckpoint json.RawMessage
	}{obj["global_step"], obj["epoch"], obj["best_model_checkpoint"]}
	if _, err := dec.Token(); !errors.Is(err, io.EOF) {
		return TrainerState{}, errors.New("trailing data after the JSON object")
	}
	gs, ok := number(raw.GlobalStep)
	if !ok {
		if len(raw.GlobalStep) == 0 || string(raw.GlobalStep) == "null" {
			return TrainerState{}, errors.New("no global_step")
		}
		return TrainerState{}, fmt.Errorf("global_step %s is not a number", raw.GlobalStep)
	}
	step, err := integral(gs)
	if err != nil {
		return TrainerState{}, fmt.Errorf("global_step %s: %w", gs, err)
	}
	st := TrainerState{GlobalStep: step}
	if e, ok := number(raw.Epoch); ok {
		if st.Epoch, err = e.Float64(); err != nil {
			return TrainerState{}, fmt.Errorf("epoch %s: %w", e, err)
		}
	}
	if len(raw.BestModelCheckpoint) > 0 && raw.BestModelCheckpoint[0] == '"' {
		if err := json.Unmarshal(raw.BestModelCheckpoint, &st.BestModelCheckpoint); err != nil {
			return TrainerState{}, fmt.Errorf("best_model_checkpoint: %w", err)
		}
	}
	return st, nil
}

// integral parses a JSON number that must hold a non-negative integer (written as 500 or, by some writers,
// 500.0).
func integral(n json.Number) (int64, error) {
	if v, err := strconv.ParseInt(n.String(), 10, 64); err == nil {
		if v < 0 {
			return 0, errors.New("is negative")
		}
		return v, nil
	}
	f, err := n.Float64()
	if err != nil {
		return 0, errors.New("is not a number")
	}
	if f < 0 || f != math.Trunc(f) || f >= 1<<63 {
		return 0, errors.New("is not a non-negative integer")
	}
	return int64(f), nil
}

// number returns raw as a JSON number, or false when it is absent or another JSON type.
func number(raw json.RawMessage) (json.Number, bool) {
	if len(raw) == 0 || !(raw[0] == '-' || raw[0] >= '0' && raw[0] <= '9') {
		return "", false
	}
	return json.Number(raw), true
}
