"""Does the wire format give the grader plain data only, whatever a kernel sends, and refuse malformed messages?

What a kernel sends is decoded by :class:`da6401.wire.Decoder` without ``handle`` and ``pickled`` callbacks here, as
the grader decodes a kernel's replies (handles aside): each test builds the message a hostile kernel could send."""
from __future__ import annotations

import pickle

import numpy as np
import pytest
import torch

from da6401.wire import MAX_BUFFER_BYTES, MAX_DEPTH, Decoder, Encoder, WireError


def encode(value):
    """(tree, buffers) as a kernel would send ``value``; objects that are not data become handle nodes."""
    enc = Encoder(objects=lambda obj, _: {"$h": "h1", "type": type(obj).__name__}, mirror=lambda obj: (None, True))
    return enc.encode(value), enc.buffers


def decode(tree, buffers=()):
    return Decoder(list(buffers)).decode(tree)


class AlwaysEqual(np.ndarray):
    def __eq__(self, other):
        return np.ones(np.shape(other), dtype=bool)


def test_data_comes_back_as_plain_builtin_numpy_and_torch_objects():
    """Do nested containers, arrays, tensors (with their grad flag) and special floats survive the trip as plain
    objects of the builtin types?"""
    value = {"a": [1, 2.5, float("nan")], "t": (np.arange(6.0).reshape(2, 3), torch.ones(2, requires_grad=True)),
             "s": {1, 2}, "b": b"xy"}
    back = decode(*encode(value))
    assert type(back) is dict and type(back["a"]) is list and np.isnan(back["a"][2])
    array, tensor = back["t"]
    assert type(array) is np.ndarray and np.array_equal(array, np.arange(6.0).reshape(2, 3))
    assert type(tensor) is torch.Tensor and tensor.requires_grad and torch.equal(tensor.detach(), torch.ones(2))
    assert back["s"] == {1, 2} and back["b"] == b"xy"


def test_an_ndarray_subclass_that_lies_arrives_as_a_plain_array():
    """Does an ndarray subclass whose == always says yes lose its __eq__ on the way (only its bytes cross)?"""
    liar = np.zeros(3).view(AlwaysEqual)
    assert bool((liar == np.array([1.0, 2.0, 3.0])).all())  # the attack works in the kernel
    back = decode(*encode(liar))
    assert type(back) is np.ndarray and not (back == np.array([1.0, 2.0, 3.0])).all()


def test_objects_that_are_not_data_cross_as_handles_not_values():
    """Are an object with a lying __eq__, an object-dtype array and a function sent as handles (never as data)?"""
    class Liar:
        def __eq__(self, other):
            return True

    for value in (Liar(), np.array([Liar()], dtype=object), print):
        tree, _ = encode(value)
        assert tree.get("$h") == "h1", f"{value!r} crossed as {tree!r}"


@pytest.mark.parametrize("tree,buffers,message", [
    ({"$pickle": 0, "i": 0}, [pickle.dumps([1])], "pickles are not accepted"),
    ({"$nd": 0, "dtype": "|O", "shape": [1]}, [b"\0" * 8], "bad dtype"),
    ({"$nd": 0, "dtype": "<f8", "shape": [4]}, [b"\0" * 8], "do not hold"),
    ({"$t": 0, "dtype": "float32", "shape": [-1]}, [b""], "bad shape"),
    ({"$t": 0, "dtype": "qint8", "shape": [1]}, [b"\0"], "bad torch dtype"),
    ({"$dict": [[1, 2]], "kind": "builtins.eval"}, [], "bad dict kind"),
    ({"$h": "h1", "type": "x"}, [], "unexpected handle"),
    ({"$f": "1e999999"}, [], "bad float"),
    ({"$nd": 5, "dtype": "<f8", "shape": [0]}, [], "bad buffer index"),
    ({"$evil": 1}, [], "unknown tag"),
], ids=["pickle", "object_dtype", "short_buffer", "negative_shape", "quantised_dtype", "dict_kind", "handle",
        "float_text", "buffer_index", "unknown_tag"])
def test_a_malformed_or_hostile_message_is_refused(tree, buffers, message):
    """Is each message a hostile kernel could send (a pickle, an object dtype, a lying byte count, a made-up tag ...)
    refused with a WireError that names the fault, instead of being used?"""
    with pytest.raises(WireError, match=message):
        decode(tree, buffers)


def test_nesting_and_size_bombs_are_refused():
    """Are a list nested beyond MAX_DEPTH and buffers over the size limit refused before they cost the grader?"""
    deep: list = []
    for _ in range(MAX_DEPTH + 5):
        deep = [deep]
    with pytest.raises(WireError, match="nested too deeply"):
        decode(deep)
    with pytest.raises(WireError, match="over the limit"):
        Decoder([bytes(MAX_BUFFER_BYTES + 1)])


def test_a_long_list_answers_as_a_handle_and_its_items_as_data():
    """Is a list longer than EAGER_ITEMS (A3's train_data: 29,000 pairs, 17 s as JSON) sent as a handle, so that a
    test reading a few items asks for those alone, while the same data nested or shorter is sent whole?"""
    from da6401.wire import EAGER_ITEMS

    long = [[1, 2]] * (EAGER_ITEMS + 1)
    assert encode(long)[0].get("$h") == "h1"
    assert decode(*encode(long[:EAGER_ITEMS])) == long[:EAGER_ITEMS]
    assert decode(*encode({"data": long[:3]})) == {"data": long[:3]}
