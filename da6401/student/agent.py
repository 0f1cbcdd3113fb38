"""The kernel end of the trusted grader's channel: it runs the student's code when the grader asks.

Under ``nbgrader autograde`` the test cells never run in the student's kernel. The grader (outside the sandbox)
runs them, and whenever a test calls a function the notebook defined, reads one of its variables or an attribute
of one of its objects, it sends this agent a request over a Jupyter comm (``da6401.grader``); the agent does it in
the notebook's namespace and answers with data (:mod:`da6401.wire`), or with a handle for any other object.

Nothing here is trusted: the student's code runs in this process and may replace any of it. That is fine by
design: whatever comes back is decoded by the grader as plain data, so tampering can only change what the
student's functions answer, which the student controls anyway. The grader decides the verdict.

One request, one reply::

    request: {"request": {"op": "call", "obj": {"$h": "h3"}, "args": [...]}, "held": [mirror ids the grader holds],
              "handles": [handle ids it holds], "push": [[mirror id, new value], ...]}
    reply:   {"result": tree, "error": null or {"type", "mro", "message", "traceback"}, "sync": [[id, new value], ...]}

The agent forgets every mirror and handle the grader no longer holds, applies the grader's in-place changes
(``push``), runs the request, and returns the result with the mirrors the student's code changed (``sync``).
"""
from __future__ import annotations

import copy
import itertools
import sys
import traceback
import zlib
from typing import Any

from da6401.wire import Decoder, Encoder, WireError, assign, checksum

TARGET = "da6401.grader"
_ids = itertools.count(1)
_HIDDEN_FRAMES = ("da6401/student/agent.py", "da6401/wire.py")


def type_names(obj) -> list[str]:
    """Qualified names of the classes of ``obj``, most specific first."""
    return [f"{c.__module__}.{c.__qualname__}" for c in type(obj).__mro__][:32]


# --- the grader's own objects the kernel keeps a copy of (pickled, then mirrored by state) -----------------
def is_stateful(obj) -> bool:
    import numpy as np

    torch = sys.modules.get("torch")
    return isinstance(obj, np.random.Generator) or (
        torch is not None and isinstance(obj, (torch.nn.Module, torch.Generator)))


def get_state(obj):
    """What may change in such an object: a generator's state, a module's tensors and train/eval modes."""
    import numpy as np

    if isinstance(obj, np.random.Generator):
        return obj.bit_generator.state
    torch = sys.modules["torch"]
    if isinstance(obj, torch.Generator):
        return obj.get_state()
    return {"tensors": dict(obj.state_dict()), "training": [m.training for m in obj.modules()]}


def set_state(obj, state) -> None:
    import numpy as np

    if isinstance(obj, np.random.Generator):
        obj.bit_generator.state = state
        return
    torch = sys.modules["torch"]
    if isinstance(obj, torch.Generator):
        obj.set_state(state)
        return
    with torch.no_grad():
        obj.load_state_dict(state["tensors"])
    for module, mode in zip(obj.modules(), state["training"]):
        module.training = bool(mode)


def state_checksum(obj) -> int:
    state = get_state(obj)
    torch = sys.modules.get("torch")
    if torch is not None and isinstance(state, torch.Tensor):
        return checksum(state)
    if isinstance(state, dict) and "tensors" in state:
        crc = zlib.crc32(repr(state["training"]).encode())
        for key, value in state["tensors"].items():
            crc = zlib.crc32(key.encode(), crc ^ checksum(value))
        return crc
    return zlib.crc32(repr(state).encode())


def is_array(obj) -> bool:
    import numpy as np

    torch = sys.modules.get("torch")
    return isinstance(obj, np.ndarray) or (torch is not None and isinstance(obj, torch.Tensor))


def fingerprint(obj) -> int:
    """What changes when the object changes in a way the other side should see (0 for other objects)."""
    if is_array(obj):
        return checksum(obj)
    return state_checksum(obj) if is_stateful(obj) else 0


class Agent:
    """Handles and mirrors for one comm; :meth:`handle` answers one request."""

    def __init__(self, comm, namespace: dict):
        self.comm, self.namespace = comm, namespace
        self.handles: dict[str, Any] = {}
        self.handle_ids: dict[int, str] = {}
        self.mirrors: dict[str, list] = {}       # rid -> [object, fingerprint at the last sync]
        self.mirror_ids: dict[int, str] = {}

    # --- encoding what goes back ----------------------------------------------------------------------
    def _handle(self, obj, encoder: Encoder) -> dict:
        hid = self.handle_ids.get(id(obj))
        if hid is None or self.handles.get(hid) is not obj:
            hid = f"h{next(_ids)}"
            self.handles[hid], self.handle_ids[id(obj)] = obj, hid
        names = type_names(obj)
        return {"$h": hid, "type": names[0], "mro": names, "call": callable(obj)}

    def _mirror(self, obj) -> tuple[str, bool]:
        rid = self.mirror_ids.get(id(obj))
        if rid is not None and rid in self.mirrors and self.mirrors[rid][0] is obj:
            return rid, False  # the grader holds it, and any change is in this reply's sync
        rid = f"k{next(_ids)}"
        self.mirrors[rid], self.mirror_ids[id(obj)] = [obj, checksum(obj)], rid
        return rid, True

    def encoder(self) -> Encoder:
        return Encoder(self._handle, self._mirror)

    # --- decoding what the grader sends ---------------------------------------------------------------
    def _ref(self, rid: str, node: dict):
        if rid not in self.mirrors:
            raise WireError(f"unknown mirror {rid}")
        return self.mirrors[rid][0]

    def _mirrored(self, rid: str, value):
        """A new array or tensor of the grader's, which it will keep in step with the kernel's copy."""
        self.mirrors[rid], self.mirror_ids[id(value)] = [value, checksum(value)], rid
        return value

    def _by_handle(self, node):
        hid = node["$h"]
        if hid not in self.handles:
            raise WireError(f"unknown handle {hid}")
        return self.handles[hid]

    def _pickled(self, data, index: int, rid):
        import io
        import pickle

        agent = self

        class Unpickler(pickle.Unpickler):
            def persistent_load(self, pid):  # the kernel's own objects, which the grader's objects refer to
                kind, _, key = str(pid).partition(":")
                if kind == "m" and key in agent.mirrors:
                    return agent.mirrors[key][0]
                if kind == "h" and key in agent.handles:
                    return agent.handles[key]
                raise WireError(f"unknown reference {pid!r}")

        cache = self.__dict__.setdefault("_unpickled", {})
        key = id(data)
        if key not in cache:  # the grader's own objects: the kernel trusts them, not the other way round
            cache.clear()
            cache[key] = (data, Unpickler(io.BytesIO(bytes(data))).load())
        obj = cache[key][1][index]
        if rid is not None:
            self.mirrors[rid], self.mirror_ids[id(obj)] = [obj, fingerprint(obj)], rid
        return obj

    def decode(self, tree, buffers):
        return Decoder(buffers, handle=self._by_handle, ref=self._ref, pickled=self._pickled,
                       mirrored=self._mirrored).decode(tree)

    # --- requests ---------------------------------------------------------------------------------------
    def handle(self, msg) -> None:
        data = msg["content"]["data"]
        buffers = msg.get("buffers") or []
        error = result = None
        try:
            self._forget(set(data.get("held", [])), set(data.get("handles", [])))
            decoder = Decoder(buffers, handle=self._by_handle, ref=self._ref, pickled=self._pickled,
                              mirrored=self._mirrored)
            for rid, value in data.get("push", []):
                self._apply(rid, decoder.decode(value))
            request = decoder.decode(data["request"])
            self.__dict__.pop("_unpickled", None)
            result = self.run(request)
        except Exception as e:  # the student's code raised: report it, with the student's own frames
            error = describe(e)
        encoder = self.encoder()
        try:
            tree = encoder.encode(result)
        except Exception as e:
            tree, error = None, error or describe(e)
        sync = self._changed(encoder)
        self.comm.send({"result": tree, "error": error, "sync": sync}, buffers=encoder.buffers)

    def _forget(self, held: set, handles: set) -> None:
        for rid in [r for r in self.mirrors if r not in held]:
            obj = self.mirrors.pop(rid)[0]
            self.mirror_ids.pop(id(obj), None)
        for hid in [h for h in self.handles if h not in handles]:
            obj = self.handles.pop(hid)
            self.handle_ids.pop(id(obj), None)

    def _apply(self, rid: str, value) -> None:
        if rid not in self.mirrors:
            raise WireError(f"unknown mirror {rid}")
        entry = self.mirrors[rid]
        if is_array(entry[0]):
            assign(entry[0], value)
        elif isinstance(value, dict) and "state" in value:
            set_state(entry[0], value["state"])
        entry[1] = fingerprint(entry[0])

    def _changed(self, encoder: Encoder) -> list:
        """Mirrors that the request changed in place, with their new contents (or state)."""
        plain = Encoder(self._handle, lambda obj: (None, True))
        plain.buffers = encoder.buffers
        changed = []
        for rid, entry in list(self.mirrors.items()):
            if not (is_array(entry[0]) or is_stateful(entry[0])):
                continue
            now = fingerprint(entry[0])
            if now != entry[1]:
                entry[1] = now
                value = entry[0] if is_array(entry[0]) else {"state": get_state(entry[0])}
                changed.append([rid, plain.encode(value)])
        return changed

    def run(self, request: dict):
        torch = sys.modules.get("torch")
        grad = request.get("grad")
        if torch is not None and grad is not None:
            with torch.set_grad_enabled(bool(grad)):
                return self._op(request["op"], request)
        return self._op(request["op"], request)

    def _op(self, op: str, r: dict):
        if op == "get":
            if r["name"] not in self.namespace:
                raise NameError(f"name {r['name']!r} is not defined in the notebook")
            return self.namespace[r["name"]]
        if op == "set":
            self.namespace[r["name"]] = r["value"]
            return None
        if op == "delete":
            self.namespace.pop(r["name"], None)
            return None
        if op == "has":
            return r["name"] in self.namespace
        if op == "getattr":
            return getattr(r["obj"], r["name"])
        if op == "setattr":
            setattr(r["obj"], r["name"], r["value"])
            return None
        if op == "delattr":
            delattr(r["obj"], r["name"])
            return None
        if op == "own_attr":  # is the attribute set on this object or class itself (not inherited)?
            return r["name"] in vars(r["obj"])
        if op == "getitem":
            return r["obj"][r["key"]]
        if op == "setitem":
            r["obj"][r["key"]] = r["value"]
            return None
        if op == "call":
            target = r["obj"] if not r.get("attr") else getattr(r["obj"], r["attr"])
            return target(*r.get("args", ()), **r.get("kwargs", {}))
        if op == "list":
            return list(r["obj"])
        if op == "len":
            return len(r["obj"])
        if op == "bool":
            return bool(r["obj"])
        if op == "repr":
            text = repr(r["obj"])
            return text[:2000] if isinstance(text, str) else "<repr did not return a string>"
        if op == "contains":
            return r["item"] in r["obj"]
        if op == "deepcopy":
            return copy.deepcopy(r["obj"])
        if op == "import":
            import importlib

            return importlib.import_module(r["module"])
        if op == "grad":
            return value_and_grad(r["obj"], r.get("args", ()), r.get("wrt"), r.get("upstream"))
        raise ValueError(f"unknown request {op!r}")


def value_and_grad(fn, args, wrt=None, upstream=None):
    """``fn(*args)`` with the tensors ``args[i]`` (i in ``wrt``, default all) as fresh leaves that require grad;
    returns (value, [d sum(upstream * value) / d args[i] for i in wrt]) (None for a non-tensor argument)."""
    import torch

    args = list(args)
    wrt = list(range(len(args))) if wrt is None else list(wrt)
    for i in wrt:
        if isinstance(args[i], torch.Tensor):
            args[i] = args[i].detach().clone().requires_grad_(True)
    with torch.enable_grad():
        out = fn(*args)
        if isinstance(out, torch.Tensor) and out.requires_grad:
            out.backward(torch.ones_like(out) if upstream is None else upstream)
    grads = [args[i].grad if isinstance(args[i], torch.Tensor) else None for i in wrt]
    return (out.detach() if isinstance(out, torch.Tensor) else out), grads


def describe(e: BaseException) -> dict:
    """The exception the student's code raised, with its traceback cut to frames outside this agent."""
    frames = [f for f in traceback.extract_tb(e.__traceback__) if not f.filename.endswith(_HIDDEN_FRAMES)]
    return {"type": type(e).__name__, "mro": type_names(e), "message": str(e)[:4000],
            "traceback": "".join(traceback.format_list(frames[-8:]))[-6000:]}


def install(shell=None) -> None:
    """Register the comm target the grader opens (the grader runs this before the notebook's first cell)."""
    shell = shell or get_ipython()  # noqa: F821 - run inside IPython

    def opened(comm, msg):
        comm.on_msg(Agent(comm, shell.user_ns).handle)

    shell.kernel.comm_manager.register_target(TARGET, opened)
