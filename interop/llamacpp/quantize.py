"""quantize.py: llama.cpp v0.5.0's own llama_model_quantize (what llama-quantize runs), called through ctypes.

Usage: python3 quantize.py LIBDIR NTHREADS IN.gguf OUT.gguf FTYPE [IN OUT FTYPE ...]
FTYPE is a llama_ftype number (llama.h: 2 Q4_0, 7 Q8_0, 15 Q4_K_M, 17 Q5_K_M, 18 Q6_K, ...).
Prints one line per job: "ok OUT" or "error OUT: rc N". Exits 0 unless the library cannot be used.

llama_model_quantize_params is taken from llama_model_quantize_default_params() into a buffer larger than the
struct (it is returned through a hidden pointer, being larger than 16 bytes) and passed back by pointer, so only
the two leading fields are touched: int32 nthread at offset 0 and enum llama_ftype ftype at offset 4. The
defaults are checked first (nthread 0, ftype LLAMA_FTYPE_MOSTLY_Q8_0 = 7, output_tensor_type and
token_embedding_type GGML_TYPE_COUNT = 43, allow_requantize false, quantize_output_tensor true) so that a
different layout fails loudly instead of quantizing to the wrong type.
"""
import ctypes
import os
import sys


class Params(ctypes.Structure):
    # Room for llama_model_quantize_params (about 64 bytes in v0.5.0); only the first 8 bytes are interpreted.
    _fields_ = [("nthread", ctypes.c_int32), ("ftype", ctypes.c_int32), ("rest", ctypes.c_uint8 * 504)]


def main():
    libdir, nthreads, jobs = sys.argv[1], int(sys.argv[2]), sys.argv[3:]
    if len(jobs) == 0 or len(jobs) % 3 != 0:
        sys.exit("usage: quantize.py LIBDIR NTHREADS IN OUT FTYPE [IN OUT FTYPE ...]")
    for dep in ("libggml-base.so", "libggml.v0.5.0.so"):
        ctypes.CDLL(os.path.join(libdir, dep), mode=ctypes.RTLD_GLOBAL)
    lib = ctypes.CDLL(os.path.join(libdir, "libllama.v0.5.0.so"), mode=ctypes.RTLD_GLOBAL)
    lib.llama_backend_init.restype = None
    lib.llama_backend_init()
    lib.llama_model_quantize_default_params.restype = Params
    lib.llama_model_quantize_default_params.argtypes = []
    lib.llama_model_quantize.restype = ctypes.c_uint32
    lib.llama_model_quantize.argtypes = [ctypes.c_char_p, ctypes.c_char_p, ctypes.POINTER(Params)]
    p = lib.llama_model_quantize_default_params()
    # After nthread, ftype: output_tensor_type, token_embedding_type (enums), then the bools allow_requantize,
    # quantize_output_tensor, only_copy, pure, keep_split.
    if p.nthread != 0 or p.ftype != 7 or p.rest[0] != 43 or p.rest[4] != 43 or p.rest[8] != 0 or p.rest[9] != 1:
        sys.exit("llama_model_quantize_default_params: unexpected layout (nthread %d, ftype %d, bools %s)"
                 % (p.nthread, p.ftype, list(p.rest[8:13])))
    for i in range(0, len(jobs), 3):
        src, dst, ftype = jobs[i], jobs[i + 1], int(jobs[i + 2])
        q = Params.from_buffer_copy(p)
        q.nthread, q.ftype = nthreads, ftype
        rc = lib.llama_model_quantize(src.encode(), dst.encode(), ctypes.byref(q))
        print(("ok %s" % dst) if rc == 0 else ("error %s: rc %d" % (dst, rc)), flush=True)
    lib.llama_backend_free()


main()
