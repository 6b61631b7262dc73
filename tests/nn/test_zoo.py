"""Every layer kind, end to end: prune 90 %, share 5 bits, fine-tune, save, load by factory.

The models are built in tests/nn/zoo.py (ResNet-style, MobileNet-style, Transformer encoder,
tied-embedding LSTM language model, GRU/RNN/LSTM-with-projections/EmbeddingBag/Bilinear/
MultiheadAttention, U-Net-style with ConvTranspose, raw Parameters).
"""

import copy
import gzip
import io
from pathlib import Path

import pytest
import torch

from netsqueeze.core.container import read_nsq
from netsqueeze.nn.export import load_compressed, save_compressed
from netsqueeze.nn.prune import masks, prune_, pruning_report
from netsqueeze.nn.share import codebooks, share_report, share_weights_, strip_
from tests.nn.zoo import ZOO

ZOO_FILE = Path(__file__).with_name("zoo.py")
BITS = 5


def compressed(name, steps=3):
    factory, inputs = ZOO[name]
    torch.manual_seed(0)
    model = factory()
    x = inputs()
    prune_(model, 0.9)
    keep = masks(model)
    share_weights_(model, BITS)
    opt = torch.optim.Adam(model.parameters(), lr=1e-2)
    model.train()
    for _ in range(steps):
        opt.zero_grad()
        model(x).float().pow(2).mean().backward()
        opt.step()
    return model.eval(), x, keep


def gzip_baseline(model) -> int:
    buf = io.BytesIO()
    torch.save(strip_(copy.deepcopy(model)).state_dict(), buf)
    return len(gzip.compress(buf.getvalue(), compresslevel=9, mtime=0))


@pytest.mark.slow
@pytest.mark.parametrize("name", list(ZOO))
def test_prune_share_finetune_save_load_is_exact_and_small(name, tmp_path):
    model, x, keep = compressed(name)
    factory = ZOO[name][0].__name__
    # every floating >= 2-D parameter is covered; nothing is dense without a reason
    rep = pruning_report(model)
    for row in rep.coverage:
        assert row["coverage"] in ("compressed", "dense", "tied"), row
        if row["coverage"] == "dense":
            assert row["reason"] and len(row["shape"]) < 2, row
    assert 0.89 < rep.sparsity < 0.91
    # zeros stay zero through fine-tuning, at most 2**BITS values per tensor
    assert set(masks(model)) == set(keep)
    for tname, book in codebooks(model).items():
        w = book.decode()
        assert not w[~keep[tname].numpy()].any(), tname
        assert len(book.centroids) <= 2**BITS
    for layer in share_report(model):
        assert layer.distinct <= 2**BITS
    # save naming a factory (module form for half, file form for the others), load by it
    spec = (f"tests.nn.zoo:{factory}" if len(name) % 2 else f"{ZOO_FILE}:{factory}")
    path = tmp_path / f"{name}.nsq"
    summary = save_compressed(model, path, factory=spec)
    assert read_nsq(path).header["factory"] == spec
    with pytest.raises(ValueError, match="pass factory="):
        load_compressed(path)  # the file names a factory; it is never imported on its own
    loaded = load_compressed(path, factory=spec)
    with torch.no_grad():
        assert torch.equal(loaded(x), model(x))
    plain = strip_(copy.deepcopy(model))
    for k, v in plain.state_dict().items():
        assert torch.equal(loaded.state_dict()[k], v), k
    # ties come back as the same Parameter object
    for alias, first in summary["tied"].items():
        assert loaded.get_parameter(alias) is loaded.get_parameter(first)
    # smaller than torch.save + gzip -9 of the same compressed model
    assert summary["bytes"] < gzip_baseline(model), (summary["bytes"], gzip_baseline(model))


def test_tied_embedding_is_compressed_once_and_comes_back_tied(tmp_path):
    model, x, _ = compressed("tied_lstm_lm", steps=1)
    cb = codebooks(model)
    assert "embedding" in cb and "decoder" not in cb  # one codebook for the tied pair
    assert model.decoder.weight_centroids is model.embedding.weight_centroids
    assert torch.equal(model.decoder.weight, model.embedding.weight)
    rep = pruning_report(model)
    tied = {r["name"]: r for r in rep.coverage if r["coverage"] == "tied"}
    assert tied["decoder.weight_centroids"]["tied_to"] == "embedding.weight_centroids"
    assert [layer.aliases for layer in share_report(model) if layer.name == "embedding"] == [
        ("decoder.weight",)]
    plain = strip_(copy.deepcopy(model))
    assert plain.decoder.weight is plain.embedding.weight
    summary = save_compressed(model, tmp_path / "lm.nsq")
    assert summary["tied"] == {"decoder.weight": "embedding.weight"}
    names = [r.name for r in read_nsq(tmp_path / "lm.nsq").records]
    assert "decoder.weight" not in names and "embedding.weight" in names
    # a skeleton that does not tie gets tied on load
    skeleton = ZOO["tied_lstm_lm"][0]()
    skeleton.decoder.weight = torch.nn.Parameter(skeleton.embedding.weight.detach().clone())
    back = load_compressed(tmp_path / "lm.nsq", model=skeleton)
    assert back.decoder.weight is back.embedding.weight
    with torch.no_grad():
        assert torch.equal(back(x), model(x))


def test_masks_hold_through_rnn_and_attention_fast_paths():
    model, x, keep = compressed("recurrent", steps=2)
    model.lstm.flatten_parameters()
    model.gru.flatten_parameters()
    for name in ("lstm.weight_ih_l0", "lstm.weight_hr_l0", "gru.weight_hh_l0_reverse",
                 "attn.q_proj_weight", "attn.out_proj", "bag", "bilinear"):
        assert name in keep, sorted(keep)
    for module, param in ((model.lstm, "weight_ih_l0"), (model.gru, "weight_hh_l0_reverse")):
        w = getattr(module, param)
        k = keep[f"{'lstm' if module is model.lstm else 'gru'}.{param}"]
        assert not w[~k].any()
    # the flat weight list the RNN kernels run on is the shared weight
    with torch.no_grad():
        flat = dict(zip(model.lstm._flat_weights_names, model.lstm._flat_weights, strict=True))
        model(x)
        flat = dict(zip(model.lstm._flat_weights_names, model.lstm._flat_weights, strict=True))
        assert torch.equal(flat["weight_hh_l0"], model.lstm.weight_hh_l0)
    # the Transformer's inference fast path gives the same result as the slow path
    tmodel, tx, _ = compressed("transformer", steps=1)
    with torch.no_grad():
        fast = tmodel(tx)
    slow = tmodel(tx).detach()  # grad enabled: the fast path is off
    assert torch.allclose(fast, slow, atol=1e-5)


def test_gap_bits_and_bits_by_name_pattern_for_any_parameter(tmp_path):
    factory, _inputs = ZOO["recurrent"]
    torch.manual_seed(0)
    model = factory()
    prune_(model, {"sparsity": {"lstm.*": 0.5, "*": 0.8}})
    rep = {layer.name: layer for layer in pruning_report(model).layers}
    assert rep["lstm.weight_ih_l0"].sparsity == pytest.approx(0.5, abs=0.01)
    assert rep["gru.weight_ih_l0"].sparsity == pytest.approx(0.8, abs=0.01)
    share_weights_(model, {"bits": {"gru.*": 2, "*": 4}})
    by = {layer.name: layer for layer in share_report(model)}
    assert by["gru.weight_ih_l0"].k <= 4 and by["lstm.weight_ih_l0"].k <= 16
    save_compressed(model, tmp_path / "r.nsq", gap_bits={"gru.*": 3, "fc": 6})
    recs = {r.name: r for r in read_nsq(tmp_path / "r.nsq").records}
    assert recs["gru.weight_ih_l0"].gap_bits in (3, None)
    assert recs["lstm.weight_ih_l0"].gap_bits in (6, None)


@pytest.mark.parametrize("name", list(ZOO))
def test_fresh_models_too_are_smaller_than_gzip(name, tmp_path):
    """Right after prune + share, before any training (BatchNorm still at 1 / 0: many small
    constant tensors, which gzip compresses well)."""
    model, _, _ = compressed(name, steps=0)
    for m in (model, strip_(copy.deepcopy(model))):  # shared, and plain
        summary = save_compressed(m, tmp_path / "f.nsq")
        assert summary["bytes"] < gzip_baseline(model), (summary["bytes"], gzip_baseline(model))
    back = load_compressed(tmp_path / "f.nsq", model=ZOO[name][0]())
    plain = strip_(copy.deepcopy(model)).state_dict()
    assert all(torch.equal(v, plain[k]) for k, v in back.state_dict().items())
