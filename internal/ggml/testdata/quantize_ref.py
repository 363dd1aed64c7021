#!/usr/bin/env python3
"""Oracle for internal/ggml's tests: ggml's own quantizers from llama.cpp v0.5.0's libggml-base.so.

usage: quantize_ref.py LIBDIR MANIFEST

Each MANIFEST line is "q TYPE NCOLS IN OUT" or "d TYPE NCOLS IN OUT", TYPE a ggml_type number.
q: IN is a file of little-endian float32 values (a whole number of rows of NCOLS); OUT gets
   ggml_quantize_chunk(TYPE, IN, OUT, 0, rows, NCOLS, NULL)'s bytes (no importance matrix).
d: IN holds rows of TYPE; OUT gets the float32 values of the type's to_float (dequantize_row_*).
Exits non-zero on any error.
"""
import ctypes
import os
import sys


class TypeTraits(ctypes.Structure):
    """struct ggml_type_traits of ggml.h (v0.5.0)."""
    _fields_ = [("type_name", ctypes.c_char_p), ("blck_size", ctypes.c_int64),
                ("blck_size_interleave", ctypes.c_int64), ("type_size", ctypes.c_size_t),
                ("is_quantized", ctypes.c_bool), ("to_float", ctypes.c_void_p),
                ("from_float_ref", ctypes.c_void_p)]


TO_FLOAT = ctypes.CFUNCTYPE(None, ctypes.c_void_p, ctypes.c_void_p, ctypes.c_int64)


def dequantize(lib, typ, ncols, data):
    if typ == 0:  # F32 has no to_float
        return data
    tr = lib.ggml_get_type_traits(typ).contents
    if not tr.to_float:
        sys.exit("type %d has no to_float" % typ)
    rs = lib.ggml_row_size(typ, ncols)
    if len(data) % rs or rs != ncols // tr.blck_size * tr.type_size:
        sys.exit("type %d: %d bytes are not rows of %d (%d bytes)" % (typ, len(data), ncols, rs))
    n = len(data) // rs * ncols
    inbuf = ctypes.create_string_buffer(data, len(data))
    out = ctypes.create_string_buffer(4 * n)
    TO_FLOAT(tr.to_float)(inbuf, out, n)
    return out.raw


def main():
    libdir, manifest = sys.argv[1], sys.argv[2]
    lib = ctypes.CDLL(os.path.join(libdir, "libggml-base.so"))
    lib.ggml_row_size.restype = ctypes.c_size_t
    lib.ggml_row_size.argtypes = [ctypes.c_int, ctypes.c_int64]
    lib.ggml_quantize_chunk.restype = ctypes.c_size_t
    lib.ggml_quantize_chunk.argtypes = [ctypes.c_int, ctypes.c_void_p, ctypes.c_void_p,
                                        ctypes.c_int64, ctypes.c_int64, ctypes.c_int64, ctypes.c_void_p]
    lib.ggml_get_type_traits.restype = ctypes.POINTER(TypeTraits)
    lib.ggml_get_type_traits.argtypes = [ctypes.c_int]
    with open(manifest) as f:
        for line in f:
            if not line.strip():
                continue
            op, typ, ncols, src, dst = line.split()
            typ, ncols = int(typ), int(ncols)
            with open(src, "rb") as g:
                data = g.read()
            if op == "d":
                with open(dst, "wb") as g:
                    g.write(dequantize(lib, typ, ncols, data))
                continue
            if op != "q":
                sys.exit("unknown operation %r" % op)
            n = len(data) // 4
            if n % ncols:
                sys.exit("%s: %d values are not rows of %d" % (src, n, ncols))
            nrows = n // ncols
            size = lib.ggml_row_size(typ, ncols) * nrows
            inbuf = ctypes.create_string_buffer(data, len(data))
            out = ctypes.create_string_buffer(size)
            got = lib.ggml_quantize_chunk(typ, inbuf, out, 0, nrows, ncols, None)
            if got != size:
                sys.exit("%s: ggml_quantize_chunk wrote %d bytes, want %d" % (src, got, size))
            with open(dst, "wb") as g:
                g.write(out.raw)


if __name__ == "__main__":
    main()
