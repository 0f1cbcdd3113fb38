"""The wire format between the trusted grader and the student's kernel: values as JSON trees plus raw buffers.

Both ends use it; what each end *accepts* differs, and that is the trust boundary:

- **kernel -> grader** carries data only: ``None``, bools, ints, floats, strings, lists, tuples, dicts, sets,
  NumPy arrays and scalars of numeric, bool or fixed-width unicode dtype, PyTorch tensors of numeric or bool dtype,
  dtypes, devices, slices, bytes; every other object stays in the kernel and crosses as a *handle* (an id and the
  names of its type). :func:`decode` on the grader side builds plain NumPy/PyTorch/builtin objects from validated
  bytes and never unpickles, imports or calls anything the kernel names, so an object whose ``__eq__`` always says
  yes, an ndarray subclass, or a malformed message is worth nothing.
- **grader -> kernel** may also carry the grader's own objects (a test's ``nn.Module``, a spy model, a
  ``DataLoader``) pickled with cloudpickle: the kernel is the untrusted side, and what the grader sends it is
  trusted by definition.

A tree node is a JSON scalar, a list, or a one-key object whose key starting with ``$`` says what it is::

    {"$tuple": [...]}  {"$dict": [[key, value], ...], "kind": "Counter"}  {"$set": [...]}  {"$f": "nan"}
    {"$nd": 0, "dtype": "<f8", "shape": [3, 4], "m": "k7"}          # buffer 0; mirror id (see below)
    {"$t": 1, "dtype": "float32", "shape": [2], "grad": true, "m": "g3", "g": <tree of .grad or null>}
    {"$np": "<f4", "v": 0.5}  {"$dtype": "float32"}  {"$device": "cpu"}  {"$slice": [0, null, 2]}  {"$bytes": 2}
    {"$h": "h12", "type": "mymodule.Net", "mro": [...], "call": true}  # a kernel object
    {"$ref": "k7"}                                                     # a mirror the other side already holds
    {"$pickle": 3, "i": 0, "m": "g4"}    # grader -> kernel only: item 0 of the one pickle (buffer 3) of a message
    {"$raise": {"type": "ValueError", "mro": [...], "message": "...", "traceback": "..."}}

**Mirrors.** Arrays and tensors keep their identity and their in-place updates across the boundary: each one
that crosses gets a mirror id (``m``), and both ends remember the object under it for the rest of the test cell.
Before each request the grader sends the new contents of every mirror it changed; after it, the kernel sends back
those the student's code changed; so ``SGD(lr).step([p], [g])`` updates the grader's ``p``, and a perturbation of
``p`` in a finite-difference loop reaches the kernel's weights.
"""
from __future__ import annotations

import collections
import math
import re
import zlib
from typing import Any, Callable

import numpy as np

MAX_DEPTH = 64
MAX_ITEMS = 5_000_000             # list/tuple/dict entries in one message
MAX_BUFFER_BYTES = 256 << 20      # all buffers of one message together (the largest honest one: ~40 MB)
MAX_STRING = 64 << 20
EAGER_ITEMS = 10_000              # a list, tuple or dict longer than this is not sent whole as an answer but as a handle
                                  # (A3's train_data: 29,000 pairs, 17 s as JSON; a test reads a few of its items)

_NP_DTYPE = re.compile(r"[<>|=]?(b1|[iu][1248]|f[248]|c(8|16)|U[0-9]{1,6})")
TORCH_DTYPES = ("bool", "uint8", "int8", "int16", "int32", "int64", "float16", "bfloat16", "float32", "float64",
                "complex64", "complex128")


_DICTS = {dict: "dict", collections.Counter: "Counter", collections.OrderedDict: "OrderedDict",
          collections.defaultdict: "dict"}
_DICT_KINDS = {"dict": dict, "Counter": collections.Counter, "OrderedDict": collections.OrderedDict}


class WireError(ValueError):
    """A message that breaks the format: the other side is broken or lying; the value is not used."""


def _torch():
    import sys

    return sys.modules.get("torch")


def checksum(obj) -> int:
    """CRC-32 of an array's or tensor's bytes (and shape), to notice in-place changes cheaply."""
    torch = _torch()
    if torch is not None and isinstance(obj, torch.Tensor):
        t = obj.detach()
        if t.dtype == torch.bfloat16:
            t = t.view(torch.int16)
        data = np.ascontiguousarray(t.cpu().numpy() if t.dtype != torch.bool else t.cpu().numpy().view(np.uint8))
    else:
        data = np.ascontiguousarray(obj)
    if data.dtype.kind == "U":
        data = data.view(np.uint8) if data.size else np.zeros(0, np.uint8)
    return zlib.crc32(data.view(np.uint8).reshape(-1).data if data.size else b"", zlib.crc32(repr(data.shape).encode()))


def tensor_bytes(t) -> tuple[bytes | memoryview, str]:
    """A CPU tensor's raw bytes and dtype name."""
    torch = _torch()
    t = t.detach().cpu().contiguous()
    name = str(t.dtype).removeprefix("torch.")
    if t.dtype == torch.bfloat16:
        return t.view(torch.int16).numpy().tobytes(), name
    return t.numpy().tobytes() if t.dtype != torch.bool else t.numpy().view(np.uint8).tobytes(), name


class Encoder:
    """Turns a value into (tree, buffers). ``objects`` decides what an unknown object becomes (a handle in the
    kernel, a pickle in the grader); ``mirror`` gives (mirror id, send_data) for an array or tensor."""

    def __init__(self, objects: Callable[[Any, "Encoder"], dict], mirror: Callable[[Any], tuple[str | None, bool]]):
        self.objects, self.mirror = objects, mirror
        self.buffers: list = []

    def buffer(self, data) -> int:
        self.buffers.append(data)
        return len(self.buffers) - 1

    def encode(self, value, depth: int = 0):
        if depth > MAX_DEPTH:
            raise WireError("value nested too deeply")
        if value is None or isinstance(value, (bool, str)) and type(value) in (bool, str):
            return value
        if type(value) is int:
            return value
        if type(value) is float:
            return value if math.isfinite(value) else {"$f": repr(value)}
        if depth == 0 and type(value) in (list, tuple, dict) and len(value) > EAGER_ITEMS:
            return self.objects(value, self)
        if type(value) in (list, tuple, set, frozenset):
            items = [self.encode(v, depth + 1) for v in value]
            return items if type(value) is list else {"$tuple" if type(value) is tuple else "$set": items}
        if type(value) in _DICTS:
            node = {"$dict": [[self.encode(k, depth + 1), self.encode(v, depth + 1)] for k, v in value.items()]}
            return node if type(value) is dict else {**node, "kind": _DICTS[type(value)]}
        if type(value) is slice:
            return {"$slice": [self.encode(value.start), self.encode(value.stop), self.encode(value.step)]}
        if value is Ellipsis:
            return {"$ellipsis": True}
        if type(value) is bytes:
            return {"$bytes": self.buffer(value)}
        if isinstance(value, np.ndarray) and _NP_DTYPE.fullmatch(value.dtype.str):
            rid, send = self.mirror(value)
            if rid is not None and not send:
                return {"$ref": rid}
            node = {"$nd": self.buffer(np.ascontiguousarray(value).tobytes()), "dtype": value.dtype.str,
                    "shape": list(value.shape)}
            return {**node, "m": rid} if rid else node
        if isinstance(value, np.generic) and _NP_DTYPE.fullmatch(value.dtype.str):
            item = value.item()
            return {"$np": value.dtype.str, "v": self.encode(item if not isinstance(item, complex) else [item.real, item.imag])}
        torch = _torch()
        if torch is not None:
            if isinstance(value, torch.Tensor) and value.layout == torch.strided and not value.is_quantized \
                    and str(value.dtype).removeprefix("torch.") in TORCH_DTYPES and value.device.type in ("cpu", "cuda", "mps"):
                rid, send = self.mirror(value)
                if rid is not None and not send:
                    return {"$ref": rid}
                data, dtype = tensor_bytes(value)
                node = {"$t": self.buffer(data), "dtype": dtype, "shape": list(value.shape),
                        "grad": bool(value.requires_grad), "param": isinstance(value, torch.nn.Parameter)}
                grad = getattr(value, "grad", None) if value.is_leaf else None
                if grad is not None:
                    node["g"] = self.encode(grad.detach(), depth + 1)
                return {**node, "m": rid} if rid else node
            if isinstance(value, torch.dtype):
                return {"$dtype": str(value).removeprefix("torch.")}
            if isinstance(value, torch.device):
                return {"$device": str(value)}
            if isinstance(value, torch.Size):
                return {"$tuple": [int(v) for v in value]}
        return self.objects(value, self)


class Decoder:
    """Turns (tree, buffers) back into values. ``handle(node)`` makes a handle node into something, ``ref(rid)``
    returns a mirrored object already held, ``pickled(data)`` (kernel side only) unpickles the grader's objects,
    and ``mirrored(rid, obj)`` lets the owner record a new mirror."""

    def __init__(self, buffers, handle=None, ref=None, pickled=None, mirrored=None):
        self.buffers = [memoryview(b).cast("B") if not isinstance(b, (bytes, bytearray)) else b for b in buffers]
        total = sum(len(b) for b in self.buffers)
        if total > MAX_BUFFER_BYTES:
            raise WireError(f"message of {total} bytes is over the limit")
        self.handle, self.ref, self.pickled, self.mirrored = handle, ref, pickled, mirrored
        self.items = 0

    def _buf(self, index) -> bytes:
        if type(index) is not int or not 0 <= index < len(self.buffers):
            raise WireError(f"bad buffer index {index!r}")
        return self.buffers[index]

    def decode(self, node, depth: int = 0):
        if depth > MAX_DEPTH:
            raise WireError("value nested too deeply")
        if node is None or type(node) in (bool, int, float):
            return node
        if type(node) is str:
            if len(node) > MAX_STRING:
                raise WireError("string too long")
            return node
        if type(node) is list:
            self.items += len(node)
            if self.items > MAX_ITEMS:
                raise WireError("too many items")
            return [self.decode(v, depth + 1) for v in node]
        if type(node) is not dict or len(node) == 0:
            raise WireError(f"not a value node: {type(node).__name__}")
        tag = next(iter(node))
        body = node[tag]
        if tag in ("$tuple", "$set"):
            if type(body) is not list:
                raise WireError(f"{tag} needs a list")
            items = [self.decode(v, depth + 1) for v in body]
            self.items += len(items)
            if tag == "$set":
                try:
                    return set(items)
                except TypeError:
                    raise WireError("unhashable set item") from None
            return tuple(items)
        if tag == "$dict":
            if type(body) is not list or not all(type(p) is list and len(p) == 2 for p in body):
                raise WireError("$dict needs [key, value] pairs")
            self.items += len(body)
            kind = node.get("kind", "dict")
            if kind not in _DICT_KINDS:
                raise WireError(f"bad dict kind {kind!r}")
            out = _DICT_KINDS[kind]()
            for k, v in body:
                key = self.decode(k, depth + 1)
                try:
                    out[key] = self.decode(v, depth + 1)
                except TypeError:
                    raise WireError("unhashable dict key") from None
            return out
        if tag == "$f":
            if body not in ("nan", "inf", "-inf"):
                raise WireError(f"bad float {body!r}")
            return float(body)
        if tag == "$slice":
            if type(body) is not list or len(body) != 3:
                raise WireError("bad slice")
            parts = [self.decode(v, depth + 1) for v in body]
            if not all(p is None or type(p) is int for p in parts):
                raise WireError("slice bounds must be ints")
            return slice(*parts)
        if tag == "$ellipsis":
            return Ellipsis
        if tag == "$bytes":
            return bytes(self._buf(body))
        if tag == "$nd":
            return self._array(node)
        if tag == "$np":
            dtype = node.get("$np")
            if type(dtype) is not str or not _NP_DTYPE.fullmatch(dtype):
                raise WireError(f"bad dtype {dtype!r}")
            value = self.decode(node.get("v"), depth + 1)
            if type(value) is list and len(value) == 2:
                value = complex(*value)
            if type(value) not in (bool, int, float, complex, str):
                raise WireError("bad scalar")
            try:
                return np.dtype(dtype).type(value)
            except (OverflowError, ValueError, TypeError):
                raise WireError(f"scalar {value!r} does not fit {dtype}") from None
        if tag == "$t":
            return self._tensor(node, depth)
        if tag == "$dtype":
            torch = _torch()
            if body not in TORCH_DTYPES or torch is None:
                raise WireError(f"bad torch dtype {body!r}")
            return getattr(torch, body)
        if tag == "$device":
            torch = _torch()
            if type(body) is not str or not re.fullmatch(r"(cpu|cuda|mps)(:[0-9]{1,2})?", body) or torch is None:
                raise WireError(f"bad device {body!r}")
            return torch.device(body)
        if tag == "$ref":
            if self.ref is None or type(body) is not str:
                raise WireError("unexpected mirror reference")
            return self.ref(body, node)
        if tag == "$h":
            if self.handle is None or type(body) is not str:
                raise WireError("unexpected handle")
            return self.handle(node)
        if tag == "$pickle":
            if self.pickled is None:
                raise WireError("pickles are not accepted here")
            return self.pickled(self._buf(body), node.get("i", 0), node.get("m"))
        raise WireError(f"unknown tag {tag!r}")

    def _array(self, node) -> np.ndarray:
        dtype, shape, rid = node.get("dtype"), node.get("shape"), node.get("m")
        if type(dtype) is not str or not _NP_DTYPE.fullmatch(dtype):
            raise WireError(f"bad dtype {dtype!r}")
        if type(shape) is not list or not all(type(s) is int and s >= 0 for s in shape) or len(shape) > 32:
            raise WireError("bad shape")
        dt = np.dtype(dtype)
        data = self._buf(node["$nd"])
        if math.prod(shape) * dt.itemsize != len(data):
            raise WireError(f"{len(data)} bytes do not hold {shape} of {dtype}")
        array = np.frombuffer(data, dtype=dt).reshape(shape).copy()
        if rid is not None and self.mirrored is not None:
            if type(rid) is not str:
                raise WireError("bad mirror id")
            return self.mirrored(rid, array)
        return array

    def _tensor(self, node, depth: int):
        torch = _torch()
        if torch is None:
            import torch  # noqa: F811 - a tensor arrived before the grader imported torch
        dtype, shape, rid = node.get("dtype"), node.get("shape"), node.get("m")
        if dtype not in TORCH_DTYPES:
            raise WireError(f"bad torch dtype {dtype!r}")
        if type(shape) is not list or not all(type(s) is int and s >= 0 for s in shape) or len(shape) > 32:
            raise WireError("bad shape")
        tdtype = getattr(torch, dtype)
        data = self._buf(node["$t"])
        itemsize = torch.empty((), dtype=tdtype).element_size()
        if math.prod(shape) * itemsize != len(data):
            raise WireError(f"{len(data)} bytes do not hold {shape} of {dtype}")
        if len(data) == 0:
            tensor = torch.empty(shape, dtype=tdtype)
        elif tdtype == torch.bfloat16:
            tensor = torch.frombuffer(bytearray(data), dtype=torch.int16).view(torch.bfloat16).reshape(shape)
        elif tdtype == torch.bool:
            tensor = torch.frombuffer(bytearray(data), dtype=torch.uint8).reshape(shape).bool()
        else:
            tensor = torch.frombuffer(bytearray(data), dtype=tdtype).reshape(shape)
        if node.get("param") is True:
            tensor = torch.nn.Parameter(tensor, requires_grad=bool(node.get("grad")))
        elif node.get("grad") is True and (tensor.is_floating_point() or tensor.is_complex()):
            tensor.requires_grad_(True)
        if node.get("g") is not None:
            grad = self.decode(node["g"], depth + 1)
            if isinstance(grad, torch.Tensor) and grad.shape == tensor.shape and tensor.requires_grad:
                tensor.grad = grad.detach().to(tensor.dtype)
        if rid is not None and self.mirrored is not None:
            if type(rid) is not str:
                raise WireError("bad mirror id")
            return self.mirrored(rid, tensor)
        return tensor


def assign(target, source) -> bool:
    """Copy ``source``'s values into ``target`` in place (same shape and dtype); False when they do not fit."""
    torch = _torch()
    if torch is not None and isinstance(target, torch.Tensor):
        if not isinstance(source, torch.Tensor) or target.shape != source.shape:
            return False
        with torch.no_grad():
            target.data.copy_(source.to(target.dtype))
        return True
    if isinstance(target, np.ndarray) and isinstance(source, np.ndarray) and target.shape == source.shape:
        if not target.flags.writeable:
            return False
        np.copyto(target, source, casting="unsafe")
        return True
    return False
