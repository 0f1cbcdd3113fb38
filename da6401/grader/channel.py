"""The grader end of the channel to a student's kernel: requests, proxies for the notebook's objects, mirrors.

A test running in the grader sees the notebook through this module. A name the notebook defines resolves to its
value if that is data (an array, a tensor, a number, a list of them ...), decoded into a plain object the grader
owns, or else to a :class:`Remote`: a handle to an object that stays in the kernel. Calling a handle, reading an
attribute or an item of it, iterating over it, sends one request and waits for the answer. What the student's
code raises comes back as :class:`StudentError` (also an instance of the builtin exception it was, when it was
one, so ``except ValueError`` and ``getattr(obj, name, default)`` work as in the kernel).

Arrays and tensors are *mirrored* (see :mod:`da6401.wire`): the grader's copy and the kernel's stay one object as
far as in-place updates and identity go, synchronised before and after every request.
"""
from __future__ import annotations

import builtins
import itertools
import pickle
import sys
import time
import uuid
import weakref
from typing import Any

import cloudpickle
from jupyter_core.utils import run_sync

from da6401.wire import Decoder, Encoder, WireError, assign, checksum

TARGET = "da6401.grader"
_rids = itertools.count(1)


class KernelGone(Exception):
    """The kernel died or stopped answering during a request: a fault, not a failed test."""


class StudentError(Exception):
    """The student's code raised; ``type_name``, ``message`` and ``student_traceback`` describe it."""

    def __init__(self, info: dict):
        self.type_name = str(info.get("type", "Exception"))[:200]
        self.mro = [str(n) for n in info.get("mro", [])][:32]
        self.message = str(info.get("message", ""))[:4000]
        self.student_traceback = str(info.get("traceback", ""))[:6000]
        super().__init__(f"{self.type_name}: {self.message}" if self.message else self.type_name)


_ERROR_CLASSES: dict[str, type] = {}


def student_error(info: dict) -> StudentError:
    """A StudentError that is also the builtin exception the student's code raised, if it was one."""
    names = [str(n) for n in info.get("mro", [])]
    base = next((getattr(builtins, n.split(".", 1)[1]) for n in names if n.startswith("builtins.")
                 and isinstance(getattr(builtins, n.split(".", 1)[1], None), type)
                 and issubclass(getattr(builtins, n.split(".", 1)[1]), Exception)), Exception)
    if base is Exception:
        return StudentError(info)
    cls = _ERROR_CLASSES.get(base.__name__)
    if cls is None:
        cls = _ERROR_CLASSES[base.__name__] = type(f"Student{base.__name__}", (StudentError, base), {})
    return cls(info)


class Remote:
    """A handle to an object in the student's kernel. Everything done to it is a request to the kernel."""

    __slots__ = ("_channel", "_hid", "_type", "_mro", "_callable", "__weakref__")
    __array_ufunc__ = None  # NumPy must not treat a handle as an array (it would probe it item by item)

    def __array__(self, *args, **kwargs):
        raise TypeError(f"the notebook's {self._type.rsplit('.', 1)[-1]} object is not an array")

    def __init__(self, channel: "Channel", node: dict):
        object.__setattr__(self, "_channel", channel)
        object.__setattr__(self, "_hid", node["$h"])
        object.__setattr__(self, "_type", str(node.get("type", "object"))[:300])
        object.__setattr__(self, "_mro", tuple(str(n)[:300] for n in node.get("mro", [])[:32]))
        object.__setattr__(self, "_callable", bool(node.get("call")))

    def __getattr__(self, name: str):
        if name.startswith("__") and name.endswith("__"):
            raise AttributeError(name)
        return self._channel.request({"op": "getattr", "obj": self, "name": name})

    def __setattr__(self, name: str, value) -> None:
        self._channel.request({"op": "setattr", "obj": self, "name": name, "value": value})

    def __delattr__(self, name: str) -> None:
        self._channel.request({"op": "delattr", "obj": self, "name": name})

    def __call__(self, *args, **kwargs):
        return self._channel.request({"op": "call", "obj": self, "args": args, "kwargs": kwargs})

    def __getitem__(self, key):
        return self._channel.request({"op": "getitem", "obj": self, "key": key})

    def __setitem__(self, key, value) -> None:
        self._channel.request({"op": "setitem", "obj": self, "key": key, "value": value})

    def __len__(self) -> int:
        n = self._channel.request({"op": "len", "obj": self})
        if type(n) is not int or n < 0:
            raise TypeError(f"len() of the notebook's {self._type} is not a non-negative int")
        return n

    def __bool__(self) -> bool:
        return self._channel.request({"op": "bool", "obj": self}) is True

    def __iter__(self):
        items = self._channel.request({"op": "list", "obj": self})
        if type(items) is not list:
            raise TypeError(f"iterating over the notebook's {self._type} did not give a list")
        return iter(items)

    def __contains__(self, item) -> bool:
        return self._channel.request({"op": "contains", "obj": self, "item": item}) is True

    def __deepcopy__(self, memo):
        return self._channel.request({"op": "deepcopy", "obj": self})

    def __copy__(self):
        return self.__deepcopy__({})

    def __eq__(self, other) -> bool:
        return isinstance(other, Remote) and other._hid == self._hid

    def __hash__(self) -> int:
        return hash(self._hid)

    def __repr__(self) -> str:
        return f"<notebook {self._type.rsplit('.', 1)[-1]}>"

    def __reduce__(self):
        raise TypeError("an object of the notebook cannot be pickled here; pass it to the notebook's code directly")


def is_remote(obj) -> bool:
    return isinstance(obj, Remote)


class Channel:
    """One comm to the agent in a student's kernel (see :mod:`da6401.student.agent`).

    Args:
        kc: a connected Jupyter kernel client (asynchronous, as nbclient's, or blocking).
        timeout: seconds one request may take (the student's code runs meanwhile).
        alive: a function that says whether the kernel process still runs.
    """

    def __init__(self, kc, timeout: float = 600.0, alive=None, deadline: float | None = None):
        self.kc, self.timeout, self.alive = kc, timeout, alive
        self.deadline = deadline  # time.monotonic() after which no request is made or waited for
        self.comm_id = uuid.uuid4().hex
        self.mirrors: dict[str, weakref.ref] = {}
        self.fingerprints: dict[str, int] = {}
        self.rid_of: dict[int, str] = {}
        self.handles: weakref.WeakValueDictionary[str, Remote] = weakref.WeakValueDictionary()
        self.printed: list[str] = []   # what the student's code printed during requests (capped)
        self._recent: list = []        # mirrors of the last reply, kept until the next request pushes changes
        self._printed_bytes = 0
        self.requests = 0
        self._send("comm_open", {"comm_id": self.comm_id, "target_name": TARGET, "data": {}})

    # --- transport --------------------------------------------------------------------------------------
    def _send(self, msg_type: str, content: dict, buffers=None) -> str:
        msg = self.kc.session.msg(msg_type, content)
        self.kc.session.send(self.kc.shell_channel.socket, msg, buffers=buffers or [])
        return msg["header"]["msg_id"]

    def _get_iopub(self, timeout: float):
        """The next iopub message, or None after ``timeout`` seconds (works with async and blocking clients)."""
        import inspect
        from queue import Empty

        get = self.kc.iopub_channel.get_msg
        try:
            return run_sync(get)(timeout=timeout) if inspect.iscoroutinefunction(get) else get(timeout=timeout)
        except (Empty, TimeoutError):
            return None

    def _wait(self, msg_id: str, deadline: float) -> dict:
        while True:
            left = deadline - time.monotonic()
            if left <= 0:
                raise KernelGone("time limit reached while the notebook's code ran" if self.deadline is not None and
                                 time.monotonic() >= self.deadline else
                                 f"the notebook's code did not answer within {self.timeout:g} s")
            msg = self._get_iopub(min(left, 1.0))
            if msg is None:
                if self.alive is not None and not self.alive():
                    raise KernelGone("the kernel died")
                continue
            if msg.get("parent_header", {}).get("msg_id") != msg_id:
                continue
            kind = msg["msg_type"]
            if kind == "comm_msg" and msg["content"].get("comm_id") == self.comm_id:
                return msg
            if kind == "stream" and self._printed_bytes < 20_000:
                text = str(msg["content"].get("text", ""))[: 20_000 - self._printed_bytes]
                self._printed_bytes += len(text)
                self.printed.append(text)
            if kind == "comm_close":
                raise KernelGone("the notebook closed the grader's channel")

    # --- mirrors ----------------------------------------------------------------------------------------
    def _held(self) -> dict[str, Any]:
        alive = {}
        for rid, ref in list(self.mirrors.items()):
            obj = ref()
            if obj is None:
                self._drop(rid)
            else:
                alive[rid] = obj
        return alive

    def _drop(self, rid: str) -> None:
        self.mirrors.pop(rid, None)
        self.fingerprints.pop(rid, None)
        for key, value in list(self.rid_of.items()):
            if value == rid:
                del self.rid_of[key]

    def _register(self, rid: str, obj) -> None:
        self.mirrors[rid] = weakref.ref(obj)
        self.rid_of[id(obj)] = rid
        self.fingerprints[rid] = _fingerprint(obj)

    def _local_mirror(self, obj) -> tuple[str, bool]:
        rid = self.rid_of.get(id(obj))
        if rid is not None and rid in self.mirrors and self.mirrors[rid]() is obj:
            return rid, False  # known: its changes travel in "push"
        rid = f"g{next(_rids)}"
        self._register(rid, obj)
        return rid, True

    def _objects(self, value, encoder: Encoder) -> dict:
        """The grader's own objects go by pickle, all of one request in one pickle, so that objects they share
        (a model and the optimizer over its parameters) stay shared in the kernel. Each is sent once: the kernel
        keeps its copy for the rest of the test cell, so it stays one object there too (a model, and an
        optimizer made for it earlier). Generators and modules also keep their state in step both ways."""
        if isinstance(value, Remote):
            if value._channel is not self:
                raise WireError("a handle from another kernel")
            return {"$h": value._hid}
        rid = self.rid_of.get(id(value))
        if rid is not None and rid in self.mirrors and self.mirrors[rid]() is value:
            return {"$ref": rid}
        objects = encoder.__dict__.setdefault("objects_to_pickle", [])
        node = {"$pickle": 0, "i": len(objects)}
        objects.append(value)
        try:
            weakref.ref(value)
        except TypeError:
            return node  # cannot be tracked: sent anew each time
        rid = f"g{next(_rids)}"
        self._register(rid, value)
        node["m"] = rid
        return node

    # --- requests -------------------------------------------------------------------------------------
    def request(self, request: dict):
        """Send one request; return its decoded result, or raise the student's error or KernelGone."""
        if self.deadline is not None and time.monotonic() >= self.deadline:
            raise KernelGone("time limit reached while the tests talked to the notebook")
        torch = sys.modules.get("torch")
        if torch is not None and "grad" not in request:
            request = {**request, "grad": torch.is_grad_enabled()}
        held = self._held()
        encoder = Encoder(self._objects, self._local_mirror)
        push = []
        for rid, obj in held.items():
            now = _fingerprint(obj)
            if now != self.fingerprints.get(rid):
                self.fingerprints[rid] = now
                value = obj if _is_array(obj) else {"state": _get_state(obj)}
                plain = Encoder(self._objects, lambda o: (None, True))
                plain.buffers = encoder.buffers
                push.append([rid, plain.encode(value)])
        tree = encoder.encode(request)
        objects = encoder.__dict__.get("objects_to_pickle")
        if objects:  # one pickle for all; its buffer index is fixed up in every node that points into it
            index = encoder.buffer(self._pickle(objects))
            _point_pickles(tree, index)
        held = self._held()  # now also the mirrors this request made
        msg_id = self._send("comm_msg", {"comm_id": self.comm_id, "data": {
            "request": tree, "held": list(held), "handles": list(self.handles.keys()), "push": push}},
            buffers=encoder.buffers)
        # A temporary such as ``model.fc.weight`` in ``model.fc.weight.copy_(w)`` dies at the end of its statement,
        # before the next request could push the change; the last reply's mirrors live until it has been pushed.
        self._recent = []
        self.requests += 1
        limit = time.monotonic() + self.timeout
        reply = self._wait(msg_id, limit if self.deadline is None else min(limit, self.deadline))
        data = reply["content"].get("data") or {}
        try:
            decoder = Decoder(reply.get("buffers") or [], handle=self._handle, ref=lambda rid, node: self._ref(rid, held),
                              mirrored=self._mirrored)
            for entry in data.get("sync") or []:
                if type(entry) is not list or len(entry) != 2 or type(entry[0]) is not str:
                    raise WireError("bad sync entry")
                target = held.get(entry[0])
                value = decoder.decode(entry[1])
                if target is not None:
                    if _is_array(target):
                        assign(target, value)
                    elif isinstance(value, dict) and "state" in value:
                        _set_state(target, value["state"])
                    self.fingerprints[entry[0]] = _fingerprint(target)
            if data.get("error") is not None:
                if type(data["error"]) is not dict:
                    raise WireError("bad error")
                raise student_error(data["error"])
            return decoder.decode(data.get("result"))
        except WireError as e:
            raise StudentError({"type": "WireError", "message": f"the kernel sent a malformed answer ({e})"}) from None

    def _pickle(self, objects: list) -> bytes:
        """cloudpickle ``objects``, with every mirrored array or tensor and every handle inside them pickled as a
        reference to the kernel's own object: an optimizer the grader builds over ``model.parameters()`` of the
        student's model then updates the model's parameters in the kernel, not copies."""
        import io

        channel = self

        class Pickler(cloudpickle.Pickler):
            def persistent_id(self, obj):
                if isinstance(obj, Remote):
                    return f"h:{obj._hid}"
                rid = channel.rid_of.get(id(obj))
                if rid is not None and rid in channel.mirrors and channel.mirrors[rid]() is obj and \
                        (_is_array(obj) or not any(o is obj for o in objects)):
                    return f"m:{rid}"
                return None

        out = io.BytesIO()
        Pickler(out, protocol=5).dump(objects)
        return out.getvalue()

    def _ref(self, rid: str, held: dict):
        if rid not in held:
            raise WireError(f"unknown mirror {rid}")
        return held[rid]

    def _mirrored(self, rid: str, value):
        """An array or tensor from the kernel: the object the grader already holds for it, updated, or a new one."""
        ref = self.mirrors.get(rid)
        existing = ref() if ref is not None else None
        if existing is not None and assign(existing, value):
            self.fingerprints[rid] = _fingerprint(existing)
            self._recent.append(existing)
            return existing
        self._register(rid, value)
        self._recent.append(value)
        return value

    def _handle(self, node: dict) -> Remote:
        existing = self.handles.get(node["$h"])
        if existing is not None:
            return existing
        remote = Remote(self, node)
        self.handles[node["$h"]] = remote
        return remote

    def reset(self) -> None:
        """Forget every mirror and handle (between test cells)."""
        self.mirrors.clear(), self.fingerprints.clear(), self.rid_of.clear()
        self._recent = []

    # --- conveniences -----------------------------------------------------------------------------------
    def get(self, name: str):
        return self.request({"op": "get", "name": name})

    def module(self, name: str) -> Remote:
        """A module imported in the kernel (``kernel.module("torch").manual_seed(0)`` seeds the kernel's RNG)."""
        return self.request({"op": "import", "module": name})


def _point_pickles(tree, index: int) -> None:
    if type(tree) is list:
        for item in tree:
            _point_pickles(item, index)
    elif type(tree) is dict:
        if "$pickle" in tree:
            tree["$pickle"] = index
        for value in tree.values():
            if type(value) in (list, dict):
                _point_pickles(value, index)


def _is_array(obj) -> bool:
    from da6401.student.agent import is_array

    return is_array(obj)


def _fingerprint(obj) -> int:
    from da6401.student.agent import fingerprint

    return fingerprint(obj)


def _get_state(obj):
    from da6401.student.agent import get_state

    return get_state(obj)


def _set_state(obj, state) -> None:
    from da6401.student.agent import set_state

    try:
        set_state(obj, state)
    except Exception as e:  # malformed state from the kernel: keep the grader's object as it was
        raise WireError(f"state does not fit the grader's {type(obj).__name__}: {e}") from None


AGENT_SETUP = "import da6401.student.agent as _da6401_agent; _da6401_agent.install(); del _da6401_agent"
