package torchzip

import (
	"encoding/binary"
	"errors"
	"fmt"
	"math"
	"strings"
)

// Global is a pickle global reference: module and qualified name.
type Global struct{ Module, Name string }

// String is "module.name", as Python names it.
func (g Global) String() string { return g.Module + "." + g.Name }

// The values the unpickler builds besides Go scalars (nil, bool, int64, float64, string, []byte).
type (
	// Tuple is a Python tuple.
	Tuple []any
	// List is a Python list (mutable, so a pointer).
	List struct{ Items []any }
	// Dict is a Python dict or collections.OrderedDict, in insertion order.
	Dict struct{ Keys, Values []any }
	// Tensor is the result of torch._utils._rebuild_tensor_v2: a view of a storage.
	Tensor struct {
		Storage *Storage
		Offset  int64 // in elements
		Size    []int64
		Stride  []int64
	}
	// Storage is what persistent_load returned for ('storage', type, key, location, numel).
	Storage struct {
		Type  Global
		Key   string
		Numel int64
		// Ref is set by the caller's persistent_load (e.g. the zip entry holding the bytes).
		Ref any
	}
)

type mark struct{}

// Allowed globals: the ones torch.save writes for a state dict of dense tensors. Anything else is refused.
var allowedGlobals = map[string]bool{
	"collections.OrderedDict":         true,
	"torch._utils._rebuild_tensor_v2": true,
	"torch._utils._rebuild_parameter": true,
	"torch.DoubleStorage":             true,
	"torch.FloatStorage":              true,
	"torch.HalfStorage":               true,
	"torch.BFloat16Storage":           true,
	"torch.LongStorage":               true,
	"torch.IntStorage":                true,
	"torch.ShortStorage":              true,
	"torch.CharStorage":               true,
	"torch.ByteStorage":               true,
	"torch.BoolStorage":               true,
}

// DisallowedError is a pickle that names a global hubsync does not accept.
type DisallowedError struct{ Global Global }

func (e *DisallowedError) Error() string {
	return fmt.Sprintf("pickle refers to %s, which a torch state dict never needs; refusing it (only tensor rebuild functions, storages and collections.OrderedDict are accepted)", e.Global)
}

// maxStack bounds the unpickler's stack and memo (a state dict needs a few entries per tensor).
const maxStack = 1 << 22

// Unpickle interprets a pickle (protocols 2 to 5, the opcodes torch.save and Python's pickler use for state
// dicts) without executing anything: globals are resolved against a fixed allow list, the only callables are
// collections.OrderedDict and torch's tensor rebuild functions, interpreted here, and persistent ids go to
// persistentLoad. Any other global, and any opcode that instantiates or extends, is refused.
func Unpickle(data []byte, persistentLoad func(pid any) (any, error)) (any, error) {
	u := &unpickler{data: data, memo: map[int64]any{}, load: persistentLoad}
	v, err := u.run()
	if err != nil {
		return nil, fmt.Errorf("pickle: %w", err)
	}
	return v, nil
}

type unpickler struct {
	data  []byte
	pos   int
	stack []any
	marks []int
	memo  map[int64]any
	load  func(pid any) (any, error)
}

var errTruncated = errors.New("truncated")

func (u *unpickler) take(n int) ([]byte, error) {
	if n < 0 || n > len(u.data)-u.pos {
		return nil, errTruncated
	}
	b := u.data[u.pos : u.pos+n]
	u.pos += n
	return b, nil
}

func (u *unpickler) line() (string, error) {
	i := strings.IndexByte(string(u.data[u.pos:]), '\n')
	if i < 0 {
		return "", errTruncated
	}
	s := string(u.data[u.pos : u.pos+i])
	u.pos += i + 1
	return s, nil
}

func (u *unpickler) uint(n int) (uint64, error) {
	b, err := u.take(n)
	if err != nil {
		return 0, err
	}
	var v uint64
	for i := n - 1; i >= 0; i-- {
		v = v<<8 | uint64(b[i])
	}
	return v, nil
}

func (u *unpickler) push(v any) error {
	if len(u.stack) >= maxStack {
		return errors.New("stack too deep")
	}
	u.stack = append(u.stack, v)
	return nil
}

func (u *unpickler) pop() (any, error) {
	if len(u.stack) == 0 || (len(u.marks) > 0 && len(u.stack) == u.marks[len(u.marks)-1]) {
		return nil, errors.New("stack underflow")
	}
	v := u.stack[len(u.stack)-1]
	u.stack = u.stack[:len(u.stack)-1]
	return v, nil
}

func (u *unpickler) top() (any, error) {
	if len(u.stack) == 0 || (len(u.marks) > 0 && len(u.stack) == u.marks[len(u.marks)-1]) {
		return nil, errors.New("stack underflow")
	}
	return u.stack[len(u.stack)-1], nil
}

// popMark pops everything above the last MARK.
func (u *unpickler) popMark() ([]any, error) {
	if len(u.marks) == 0 {
		return nil, errors.New("no MARK")
	}
	m := u.marks[len(u.marks)-1]
	u.marks = u.marks[:len(u.marks)-1]
	items := append([]any(nil), u.stack[m:]...)
	u.stack = u.stack[:m]
	return items, nil
}

func (u *unpickler) memoize(idx int64) error {
	v, err := u.top()
	if err != nil {
		return err
	}
	if len(u.memo) >= maxStack {
		return errors.New("memo too large")
	}
	u.memo[idx] = v
	return nil
}

func (u *unpickler) get(idx int64) error {
	v, ok := u.memo[idx]
	if !ok {
		return fmt.Errorf("memo key %d not defined", idx)
	}
	return u.push(v)
}

func (u *unpickler) global(module, name string) error {
	g := Global{module, name}
	if !allowedGlobals[g.String()] {
		return &DisallowedError{g}
	}
	return u.push(g)
}

func (u *unpickler) run() (any, error) {
	for {
		at := u.pos
		b, err := u.take(1)
		if err != nil {
			return nil, fmt.Errorf("no STOP opcode: %w", err)
		}
		op := b[0]
		if err := u.step(op); err != nil {
			if errors.Is(err, errStop) {
				if len(u.stack) != 1 || len(u.marks) != 0 {
					return nil, fmt.Errorf("STOP at byte %d with %d values on the stack", at, len(u.stack))
				}
				return u.stack[0], nil
			}
			return nil, fmt.Errorf("opcode 0x%02x at byte %d: %w", op, at, err)
		}
	}
}

var errStop = errors.New("stop")

func (u *unpickler) step(op byte) error {
	switch op {
	case 0x80: // PROTO
		v, err := u.uint(1)
		if err != nil {
			return err
		}
		if v > 5 {
			return fmt.Errorf("unsupported pickle protocol %d", v)
		}
		return nil
	case 0x95: // FRAME
		_, err := u.uint(8)
		return err
	case '.': // STOP
		return errStop
	case '(': // MARK
		if len(u.marks) >= maxStack {
			return errors.New("too many MARKs")
		}
		u.marks = append(u.marks, len(u.stack))
		return nil
	case '0': // POP
		_, err := u.pop()
		return err
	case '1': // POP_MARK
		_, err := u.popMark()
		return err
	case '2': // DUP
		v, err := u.top()
		if err != nil {
			return err
		}
		return u.push(v)
	case '}': // EMPTY_DICT
		return u.push(&Dict{})
	case ']': // EMPTY_LIST
		return u.push(&List{})
	case ')': // EMPTY_TUPLE
		return u.push(Tuple{})
	case 't': // TUPLE
		items, err := u.popMark()
		if err != nil {
			return err
		}
		return u.push(Tuple(items))
	case 0x85, 0x86, 0x87: // TUPLE1, TUPLE2, TUPLE3
		n := int(op - 0x84)
		t := make(Tuple, n)
		for i := n - 1; i >= 0; i-- {
			v, err := u.pop()
			if err != nil {
				return err
			}
			t[i] = v
		}
		return u.push(t)
	case 'l': // LIST
		items, err := u.popMark()
		if err != nil {
			return err
		}
		return u.push(&List{Items: items})
	case 'd': // DICT
		items, err := u.popMark()
		if err != nil {
			return err
		}
		d := &Dict{}
		if err := d.setItems(items); err != nil {
			return err
		}
		return u.push(d)
	case 'N':
		return u.push(nil)
	case 0x88:
		return u.push(true)
	case 0x89:
		return u.push(false)
	case 'J': // BININT
		v, err := u.uint(4)
		if err != nil {
			return err
		}
		return u.push(int64(int32(uint32(v))))
	case 'K': // BININT1
		v, err := u.uint(1)
		if err != nil {
			return err
		}
		return u.push(int64(v))
	case 'M': // BININT2
		v, err := u.uint(2)
		if err != nil {
			return err
		}
		return u.push(int64(v))
	case 0x8a: // LONG1
		n, err := u.uint(1)
		if err != nil {
			return err
		}
		b, err := u.take(int(n))
		if err != nil {
			return err
		}
		if n > 8 {
			return fmt.Errorf("integer of %d bytes is too large", n)
		}
		var v uint64
		for i := int(n) - 1; i >= 0; i-- {
			v = v<<8 | uint64(b[i])
		}
		if n > 0 && n < 8 && b[n-1]&0x80 != 0 {
			v |= ^uint64(0) << (8 * n) // sign-extend
		}
		return u.push(int64(v))
	case 'G': // BINFLOAT
		b, err := u.take(8)
		if err != nil {
			return err
		}
		return u.push(math.Float64frombits(binary.BigEndian.Uint64(b)))
	case 'X', 0x8c, 0x8d, 'U', 'T', 'C', 'B', 0x8e: // BINUNICODE, SHORT_BINUNICODE, BINUNICODE8, (SHORT_)BINSTRING, (SHORT_)BINBYTES, BINBYTES8
		size := map[byte]int{'X': 4, 0x8c: 1, 0x8d: 8, 'U': 1, 'T': 4, 'C': 1, 'B': 4, 0x8e: 8}[op]
		n, err := u.uint(size)
		if err != nil {
			return err
		}
		if n > uint64(len(u.data)) {
			return errTruncated
		}
		b, err := u.take(int(n))
		if err != nil {
			return err
		}
		if op == 'C' || op == 'B' || op == 0x8e {
			return u.push(append([]byte(nil), b...))
		}
		return u.push(string(b))
	case 'c': // GLOBAL
		module, err := u.line()
		if err != nil {
			return err
		}
		name, err := u.line()
		if err != nil {
			return err
		}
		return u.global(module, name)
	case 0x93: // STACK_GLOBAL
		n, err := u.pop()
		if err != nil {
			return err
		}
		m, err := u.pop()
		if err != nil {
			return err
		}
		ms, ok1 := m.(string)
		ns, ok2 := n.(string)
		if !ok1 || !ok2 {
			return errors.New("STACK_GLOBAL needs two strings")
		}
		return u.global(ms, ns)
	case 'q': // BINPUT
		v, err := u.uint(1)
		if err != nil {
			return err
		}
		return u.memoize(int64(v))
	case 'r': // LONG_BINPUT
		v, err := u.uint(4)
		if err != nil {
			return err
		}
		return u.memoize(int64(v))
	case 0x94: // MEMOIZE
		return u.memoize(int64(len(u.memo)))
	case 'h': // BINGET
		v, err := u.uint(1)
		if err != nil {
			return err
		}
		return u.get(int64(v))
	case 'j': // LONG_BINGET
		v, err := u.uint(4)
		if err != nil {
			return err
		}
		return u.get(int64(v))
	case 'Q': // BINPERSID
		pid, err := u.pop()
		if err != nil {
			return err
		}
		if u.load == nil {
			return errors.New("persistent id without persistent_load")
		}
		v, err := u.load(pid)
		if err != nil {
			return err
		}
		return u.push(v)
	case 'R': // REDUCE
		args, err := u.pop()
		if err != nil {
			return err
		}
		fn, err := u.pop()
		if err != nil {
			return err
		}
		t, ok := args.(Tuple)
		if !ok {
			return fmt.Errorf("REDUCE arguments are %T, not a tuple", args)
		}
		v, err := call(fn, t)
		if err != nil {
			return err
		}
		return u.push(v)
	case 'b': // BUILD
		state, err := u.pop()
		if err != nil {
			return err
		}
		obj, err := u.top()
		if err != nil {
			return err
		}
		// OrderedDict state dicts carry their _metadata attribute this way; it is not needed and ignored.
		if _, ok := obj.(*Dict); !ok {
			return fmt.Errorf("BUILD on %T (state %T) is not supported", obj, state)
		}
		return nil
	case 's': // SETITEM
		v, err := u.pop()
		if err != nil {
			return err
		}
		k, err := u.pop()
		if err != nil {
			return err
		}
		d, err := u.top()
		if err != nil {
			return err
		}
		dd, ok := d.(*Dict)
		if !ok {
			return fmt.Errorf("SETITEM on %T", d)
		}
		return dd.setItems([]any{k, v})
	case 'u': // SETITEMS
		items, err := u.popMark()
		if err != nil {
			return err
		}
		d, err := u.top()
		if err != nil {
			return err
		}
		dd, ok := d.(*Dict)
		if !ok {
			return fmt.Errorf("SETITEMS on %T", d)
		}
		return dd.setItems(items)
	case 'a': // APPEND
		v, err := u.pop()
		if err != nil {
			return err
		}
		l, err := u.top()
		if err != nil {
			return err
		}
		ll, ok := l.(*List)
		if !ok {
			return fmt.Errorf("APPEND on %T", l)
		}
		ll.Items = append(ll.Items, v)
		return nil
	case 'e': // APPENDS
		items, err := u.popMark()
		if err != nil {
			return err
		}
		l, err := u.top()
		if err != nil {
			return err
		}
		ll, ok := l.(*List)
		if !ok {
			return fmt.Errorf("APPENDS on %T", l)
		}
		ll.Items = append(ll.Items, items...)
		return nil
	}
	return fmt.Errorf("unsupported pickle opcode %q (hubsync reads only the opcodes torch.save writes for a state dict)", op)
}

func (d *Dict) setItems(items []any) error {
	if len(items)%2 != 0 {
		return errors.New("odd number of dict items")
	}
	for i := 0; i < len(items); i += 2 {
		switch items[i].(type) {
		case string, int64, bool, nil, float64:
		default:
			return fmt.Errorf("unhashable or unsupported dict key %T", items[i])
		}
		d.Keys = append(d.Keys, items[i])
		d.Values = append(d.Values, items[i+1])
	}
	return nil
}

// call interprets the allowed callables.
func call(fn any, args Tuple) (any, error) {
	g, ok := fn.(Global)
	if !ok {
		return nil, fmt.Errorf("REDUCE on %T, not a global", fn)
	}
	switch g.String() {
	case "collections.OrderedDict":
		if len(args) != 0 {
			return nil, errors.New("collections.OrderedDict with arguments is not supported")
		}
		return &Dict{}, nil
	case "torch._utils._rebuild_tensor_v2":
		// (storage, storage_offset, size, stride, requires_grad, backward_hooks[, metadata])
		if len(args) != 6 && len(args) != 7 {
			return nil, fmt.Errorf("%s takes 6 or 7 arguments, got %d", g, len(args))
		}
		st, ok := args[0].(*Storage)
		if !ok {
			return nil, fmt.Errorf("%s: storage is %T", g, args[0])
		}
		off, ok := args[1].(int64)
		if !ok || off < 0 {
			return nil, fmt.Errorf("%s: bad storage offset %s", g, describe(args[1]))
		}
		size, err := ints(args[2])
		if err != nil {
			return nil, fmt.Errorf("%s: size: %w", g, err)
		}
		stride, err := ints(args[3])
		if err != nil {
			return nil, fmt.Errorf("%s: stride: %w", g, err)
		}
		if len(size) != len(stride) {
			return nil, fmt.Errorf("%s: size %v and stride %v differ in rank", g, size, stride)
		}
		return &Tensor{Storage: st, Offset: off, Size: size, Stride: stride}, nil
	case "torch._utils._rebuild_parameter":
		// (data, requires_grad, backward_hooks)
		if len(args) != 3 {
			return nil, fmt.Errorf("%s takes 3 arguments, got %d", g, len(args))
		}
		t, ok := args[0].(*Tensor)
		if !ok {
			return nil, fmt.Errorf("%s: data is %T", g, args[0])
		}
		return t, nil
	}
	return nil, fmt.Errorf("%s is not callable", g)
}

// describe renders a pickled value for an error message: scalars (strings cut short) as Python writes them,
// containers by their type only. Pickles can share substructures, so a container's full rendering can be
// exponentially larger than the pickle; it is never printed.
func describe(v any) string {
	switch x := v.(type) {
	case nil:
		return "None"
	case bool, int64, float64:
		return fmt.Sprint(x)
	case string:
		if len(x) > 64 {
			x = x[:64] + "…"
		}
		return fmt.Sprintf("%q", x)
	case Global:
		return x.String()
	case Tuple:
		return fmt.Sprintf("a tuple of %d", len(x))
	}
	return fmt.Sprintf("a %T", v)
}

func ints(v any) ([]int64, error) {
	t, ok := v.(Tuple)
	if !ok {
		return nil, fmt.Errorf("%T is not a tuple", v)
	}
	out := make([]int64, len(t))
	for i, x := range t {
		n, ok := x.(int64)
		if !ok || n < 0 {
			return nil, fmt.Errorf("element %d is %s", i, describe(x))
		}
		out[i] = n
	}
	return out, nil
}
