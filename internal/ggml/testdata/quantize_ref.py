#!/usr/bin/env python3
"""Oracle for internal/ggml's tests: ggml's own quantizers from llama.cpp v0.5.0's libggml-base.so.

usage: quantize_ref.py LIBDIR MANIFEST

Each MANIFEST line is "TYPE NCOLS IN OUT": TYPE a ggml_type number, IN a file of little-endian float32 values
(a whole number of rows of NCOLS), OUT the file to write with ggml_quantize_chunk(TYPE, IN, OUT, 0, rows, NCOLS,
NULL)'s bytes (no importance matrix). Exits non-zero on any error.
"""
import ctypes
import os
import sys


def main():
    libdir, manifest = sys.argv[1], sys.argv[2]
    lib = ctypes.CDLL(os.path.join(libdir, "libggml-base.so"))
    lib.ggml_row_size.restype = ctypes.c_size_t
    lib.ggml_row_size.argtypes = [ctypes.c_int, ctypes.c_int64]
    lib.ggml_quantize_chunk.restype = ctypes.c_size_t
    lib.ggml_quantize_chunk.argtypes = [ctypes.c_int, ctypes.c_void_p, ctypes.c_void_p,
                                        ctypes.c_int64, ctypes.c_int64, ctypes.c_int64, ctypes.c_void_p]
    with open(manifest) as f:
        for line in f:
            if not line.strip():
                continue
            typ, ncols, src, dst = line.split()
            typ, ncols = int(typ), int(ncols)
            with open(src, "rb") as g:
                data = g.read()
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
