"""The policy server's wire format: msgpack with numpy arrays, as openpi's ``msgpack_numpy`` writes it
(so the real ``openpi-client`` package reads and writes it unchanged). Shared by the server
(vla/serve.py) and its client (vla/remote.py).

    packb({"actions": np.zeros((8, 7), np.float32)}) -> bytes          unpackb(bytes) -> the map back

Arrays travel as {__ndarray__, data, dtype, shape}; only number dtypes are accepted on the way in
(``unpackb`` raises :class:`WireDtypeError` for object/void/complex arrays, which could carry anything).
"""

from __future__ import annotations

from typing import Any

import numpy as np

# msgpack-numpy dtypes a message may carry: numbers only (no object/void/complex arrays).
SAFE_DTYPE_KINDS = "biuf"


class WireDtypeError(ValueError):
    """An array of a dtype that is not accepted (not a number)."""


def _pack_default(obj: Any) -> Any:
    if isinstance(obj, np.ndarray):
        if obj.dtype.kind in ("V", "O", "c"):
            raise ValueError(f"cannot send a numpy array of dtype {obj.dtype}")
        return {b"__ndarray__": True, b"data": np.ascontiguousarray(obj).tobytes(), b"dtype": obj.dtype.str,
                b"shape": obj.shape}
    if isinstance(obj, np.generic):
        return {b"__npgeneric__": True, b"data": obj.item(), b"dtype": obj.dtype.str}
    raise TypeError(f"cannot msgpack a {type(obj).__name__}")


def _unpack_hook(obj: dict) -> Any:
    if b"__ndarray__" in obj or b"__npgeneric__" in obj:
        dtype = np.dtype(obj[b"dtype"])
        if dtype.kind not in SAFE_DTYPE_KINDS:
            raise WireDtypeError(f"arrays of dtype {dtype} are not accepted (numbers only)")
        if b"__npgeneric__" in obj:
            return dtype.type(obj[b"data"])
        return np.ndarray(buffer=obj[b"data"], dtype=dtype, shape=tuple(obj[b"shape"]))
    return obj


def packb(obj: Any) -> bytes:
    import msgpack

    return msgpack.packb(obj, default=_pack_default)


def unpackb(data: bytes) -> Any:
    import msgpack

    return msgpack.unpackb(data, object_hook=_unpack_hook)
