"""Does checkpoint loading accept the right file and refuse, with a clear message, every wrong one?"""
from __future__ import annotations

import torch
import pytest

from da6401.student.checkpoints import (CheckpointError, assert_parameter_budget, count_parameters, load_into,
                                        load_state_dict, read_checkpoint, save_weights)


def small_net(width: int = 4) -> torch.nn.Module:
    return torch.nn.Sequential(torch.nn.Conv2d(3, width, 3), torch.nn.BatchNorm2d(width), torch.nn.Flatten(),
                               torch.nn.Linear(width * 4, 10))


def test_state_dict_round_trip_restores_weights_in_eval_mode(tmp_path):
    """Does a saved state_dict load into a fresh model of the same class, weights equal, in eval mode?"""
    torch.manual_seed(0)
    trained = small_net()
    torch.save(trained.state_dict(), tmp_path / "model.pt")
    fresh = load_into(small_net(), tmp_path / "model.pt")
    assert not fresh.training
    for (name, a), b in zip(trained.state_dict().items(), fresh.state_dict().values()):
        assert torch.equal(a, b), name


def test_fp16_checkpoint_is_cast_to_the_model_dtype(tmp_path):
    """Does a half-precision checkpoint (small file) load into a float32 model?"""
    net = small_net()
    torch.save({k: v.half() if v.is_floating_point() else v for k, v in net.state_dict().items()}, tmp_path / "m.pt")
    loaded = load_into(small_net(), tmp_path / "m.pt")
    assert loaded[0].weight.dtype == torch.float32
    assert torch.allclose(loaded[0].weight, net[0].weight, atol=1e-3)


def test_missing_checkpoint_says_what_to_submit(tmp_path):
    """Does a missing file fail with the file name and what to do?"""
    with pytest.raises(CheckpointError, match=r"no checkpoint at .*model\.pt: run the training cell"):
        load_into(small_net(), tmp_path / "model.pt")


def test_truncated_checkpoint_is_reported_as_corrupt(tmp_path):
    """Does a truncated file fail as unreadable rather than crash with a zip traceback?"""
    torch.save(small_net().state_dict(), tmp_path / "model.pt")
    data = (tmp_path / "model.pt").read_bytes()
    (tmp_path / "model.pt").write_bytes(data[: len(data) // 2])
    with pytest.raises(CheckpointError, match="not a readable PyTorch checkpoint"):
        load_state_dict(tmp_path / "model.pt")


def test_checkpoint_from_other_architecture_names_the_differences(tmp_path):
    """Does a checkpoint of another architecture fail, naming missing, unexpected and reshaped tensors?"""
    torch.save(small_net(width=8).state_dict(), tmp_path / "model.pt")
    with pytest.raises(CheckpointError, match=r"different architecture.*other shape \(\d+\): 0\.weight"):
        load_into(small_net(width=4), tmp_path / "model.pt")
    torch.save(torch.nn.Linear(3, 2).state_dict(), tmp_path / "other.pt")
    with pytest.raises(CheckpointError, match=r"missing \(\d+\).*unexpected \(2\): weight, bias"):
        load_into(small_net(), tmp_path / "other.pt")


class _Payload:
    """Pickles to a call that would create a file when unpickled."""

    def __init__(self, target):
        self.target = target

    def __reduce__(self):
        return (open, (str(self.target), "w"))


def test_pickled_code_in_a_checkpoint_is_never_executed(tmp_path):
    """Is a checkpoint that would run code when unpickled refused, with the code not run?"""
    target = tmp_path / "pwned"
    torch.save({"weight": torch.zeros(2), "payload": _Payload(target)}, tmp_path / "evil.pt")
    with pytest.raises(CheckpointError, match="pickled Python objects"):
        load_state_dict(tmp_path / "evil.pt")
    assert not target.exists()


def test_whole_module_pickle_is_refused_with_advice(tmp_path):
    """Is torch.save(model) (a pickled module) refused with the state_dict advice?"""
    torch.save(small_net(), tmp_path / "model.pt")
    with pytest.raises(CheckpointError, match=r"save only the weights with save_weights\(model"):
        load_state_dict(tmp_path / "model.pt")


def test_parameter_budget_counts_trainable_parameters_only():
    """Does the budget count weights and biases (not BatchNorm running stats) and fail over budget?"""
    net = small_net(width=4)  # conv 3*4*9 + 4, bn 4 + 4, linear 16*10 + 10
    assert count_parameters(net) == 108 + 4 + 8 + 170
    assert_parameter_budget(net, 290)
    with pytest.raises(AssertionError, match="290 trainable parameters; the budget is 289"):
        assert_parameter_budget(net, 289)


def test_save_weights_writes_a_small_checkpoint_that_loads_back(tmp_path):
    """Does save_weights store fp16 tensors (half the bytes) that load_into restores, leaving no temp file?"""
    torch.manual_seed(0)
    wide = torch.nn.Linear(256, 256)
    size = save_weights(wide, tmp_path / "wide.pt")
    torch.save(wide.state_dict(), tmp_path / "full.pt")
    assert size == (tmp_path / "wide.pt").stat().st_size < 0.6 * (tmp_path / "full.pt").stat().st_size
    net = small_net(width=8)
    save_weights(net, tmp_path / "model.pt")
    assert [p.name for p in tmp_path.iterdir() if p.name.endswith(".part")] == []
    restored = load_into(small_net(width=8), tmp_path / "model.pt")
    assert torch.allclose(restored[0].weight, net[0].weight, atol=1e-3)
    assert torch.equal(restored[1].num_batches_tracked, net[1].num_batches_tracked)


def tied_pair(vocab=1000, dim=64, tie=True):
    """An embedding and an output layer sharing one matrix when tie (as A3's decoder does)."""
    net = torch.nn.Sequential(torch.nn.Embedding(vocab, dim), torch.nn.Linear(dim, vocab))
    if tie:
        net[1].weight = net[0].weight
    return net


def test_tied_weights_are_stored_once_and_extras_come_back(tmp_path):
    """Does save_weights store a tied matrix once (not once per name) and return plain extras beside the weights?"""
    tied, untied = tied_pair(), tied_pair(tie=False)
    tied_size = save_weights(tied, tmp_path / "tied.pt", itos=["<pad>", "a"])
    untied_size = save_weights(untied, tmp_path / "untied.pt")
    assert tied_size < 0.6 * untied_size, f"tied {tied_size} B vs untied {untied_size} B: the shared matrix was saved twice"
    state, extras = read_checkpoint(tmp_path / "tied.pt", extras=("itos",))
    assert extras == {"itos": ["<pad>", "a"]}
    restored = load_into(tied_pair(), tmp_path / "tied.pt", state)
    assert restored[1].weight is restored[0].weight, "loading must keep the tie"
    assert torch.allclose(restored[0].weight, tied[0].weight, atol=1e-2)
    with pytest.raises(CheckpointError, match="holds the weights but not vocab"):
        read_checkpoint(tmp_path / "untied.pt", extras=("vocab",))


def test_the_grader_refuses_a_checkpoint_that_holds_more_numbers_than_its_budget(tmp_path):
    """Does the grader's load_into with a budget refuse a file whose buffers hide a table (a copy of a test set for a
    nearest-neighbour lookup), which no parameter count sees, and accept the same model without the table?"""
    from da6401.grader.checkpoints import load_into as grader_load_into

    class Lookup(torch.nn.Module):
        def __init__(self, rows: int):
            super().__init__()
            self.fc = torch.nn.Linear(4, 2)
            self.register_buffer("table", torch.zeros(rows, 4))

    honest, smuggler = tmp_path / "honest.pt", tmp_path / "smuggler.pt"
    torch.save(Lookup(10).state_dict(), honest)
    torch.save(Lookup(100_000).state_dict(), smuggler)
    assert count_parameters(Lookup(100_000)) == 10  # the table is invisible to the parameter budget
    grader_load_into(Lookup(10), honest, budget=100)
    with pytest.raises(AssertionError, match="holds 400,010 numbers"):
        grader_load_into(Lookup(100_000), smuggler, budget=100)
