"""LZF decompression (the format of h5py's ``lzf`` filter) as a compiled, GIL-free function.

h5py decompresses lzf chunks inside HDF5, which serialises every call; decoding the raw chunks here lets a
thread pool decompress them in parallel. The format (Marc Lehmann's liblzf) is a stream of literal runs and
back-references; h5py stores it without a header and with the chunk's uncompressed size known.
"""

from __future__ import annotations

import numba
import numpy as np


@numba.njit(nogil=True, cache=True)
def lzf_decompress(src: np.ndarray, dst: np.ndarray) -> int:
    """Decode ``src`` (uint8) into ``dst`` (uint8, the expected size); the number of bytes written, or -1 if
    ``src`` is not a valid LZF stream that fits ``dst``."""
    ip, op = 0, 0
    n, m = len(src), len(dst)
    while ip < n:
        ctrl = np.int64(src[ip])
        ip += 1
        if ctrl < 32:  # a literal run of ctrl + 1 bytes
            run = ctrl + 1
            if ip + run > n or op + run > m:
                return -1
            for k in range(run):
                dst[op + k] = src[ip + k]
            ip += run
            op += run
        else:  # a back-reference: (length - 2) in the top 3 bits, offset - 1 in 13 bits
            length = ctrl >> 5
            if length == 7:
                if ip >= n:
                    return -1
                length += np.int64(src[ip])
                ip += 1
            if ip >= n:
                return -1
            ref = op - ((ctrl & 0x1F) << 8) - 1 - np.int64(src[ip])
            ip += 1
            length += 2
            if ref < 0 or op + length > m:
                return -1
            for k in range(length):  # byte by byte: the source may overlap what is being written
                dst[op + k] = dst[ref + k]
            op += length
    return op
