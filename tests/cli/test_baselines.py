"""``--baselines``: the same protocol on raw pixels and on the architecture at random init."""

from __future__ import annotations

import json

import torch

from sslkit.data.specs import load_split
from sslkit.data.views import to_float_rgb
from sslkit.eval.knn import knn_classify
from sslkit.features.extract import EvalTransform, embed_dataset
from sslkit.models.backbones import build_backbone
from tests.conftest import run_cli

DATA = "digits@256"


def _knn_json(digits_run, tmp_path, name: str) -> dict:
    out = tmp_path / f"{name}.json"
    run_cli("knn", "--checkpoint", digits_run / "checkpoint.pt", "--data", DATA, "--baselines",
            "--k", "10,20", "--cache-dir", tmp_path / "cache", "--json", out)  # fmt: skip
    return json.loads(out.read_text())


def test_knn_baselines_are_the_same_protocol_on_pixels_and_random_init(digits_run, tmp_path):
    output = _knn_json(digits_run, tmp_path, "first")
    raw, random_init = output["baselines"]["raw_pixels"], output["baselines"]["random_init"]
    assert set(raw) == set(random_init) == set(output) - {"baselines", "seconds"}
    train, test = load_split(DATA, "train"), load_split(DATA, "test")
    pixels = knn_classify(to_float_rgb(train.images).flatten(1), train.labels,
                          to_float_rgb(test.images).flatten(1), test.labels, (10, 20), 0.07)
    assert [raw["k"][str(k)]["top1"] for k in (10, 20)] == [pixels.top1[10], pixels.top1[20]]
    torch.manual_seed(0)  # the random init is torchvision's initialisation under seed 0
    network = build_backbone("resnet18").eval()
    view = EvalTransform(32, train.info.mean, train.info.std)
    bank, queries = (embed_dataset(network, split, view, torch.device("cpu"))
                     for split in (train, test))  # fmt: skip
    expected = knn_classify(bank, train.labels, queries, test.labels, (10, 20), 0.07)
    assert [random_init["k"][str(k)]["top1"] for k in (10, 20)] == [expected.top1[10],
                                                                     expected.top1[20]]
    assert random_init["inputs"]["train"]["checkpoint_format"] == "random-init"
    assert random_init["inputs"]["train"]["arch"] == "resnet18"


def test_knn_baselines_are_cached_like_other_features(digits_run, tmp_path):
    _knn_json(digits_run, tmp_path, "first")
    again = _knn_json(digits_run, tmp_path, "second")
    for kind in ("raw_pixels", "random_init"):
        sources = again["baselines"][kind]["inputs"]
        assert sources["train"]["cache_hit"] and sources["test"]["cache_hit"], kind


def test_linear_baselines_probe_the_references_the_same_way(digits_run, tmp_path):
    result = run_cli("linear", "--checkpoint", digits_run / "checkpoint.pt", "--data", DATA,
                     "--baselines", "--costs", "0.1,1", "--cache-dir", tmp_path / "cache",
                     "--json", "-")  # fmt: skip
    output = json.loads(result.stdout)
    for kind in ("raw_pixels", "random_init"):
        reference = output["baselines"][kind]
        assert reference["protocol"] == output["protocol"] == "lbfgs-logistic"
        assert 0 <= reference["result"]["top1"] <= 100


def test_baselines_need_images_and_backbone_features(digits_run, tmp_path):
    checkpoint = digits_run / "checkpoint.pt"
    head = run_cli("knn", "--checkpoint", checkpoint, "--data", DATA, "--baselines", "--layer",
                   "head", expect=2)  # fmt: skip
    assert "drop --layer head" in head.output
    files = run_cli("knn", "--train-features", tmp_path / "a.h5", "--test-features",
                    tmp_path / "b.h5", "--baselines", expect=2)  # fmt: skip
    assert "give --checkpoint and --data" in files.output
    augment = run_cli("linear", "--checkpoint", checkpoint, "--data", DATA, "--baselines",
                      "--recipe", "mocov2", expect=2)  # fmt: skip
    assert "--mode features" in augment.output


def test_momentum_encoder_and_recomputed_bn_are_options_recorded_in_the_features(
        digits_run, tmp_path):  # fmt: skip
    """--encoder momentum reads the target backbone; --recompute-bn replaces BN statistics."""
    from sslkit.features.store import read_features

    checkpoint = digits_run / "checkpoint.pt"
    outputs = {}
    for name, extra in (("online", []), ("momentum", ["--encoder", "momentum"]),
                        ("recomputed", ["--recompute-bn", "200"])):  # fmt: skip
        outputs[name] = tmp_path / f"{name}.h5"
        run_cli("extract", "--checkpoint", checkpoint, "--data", DATA, "--split", "test",
                "--out", outputs[name], *extra)  # fmt: skip
    online, momentum, recomputed = (read_features(outputs[n]) for n in outputs)
    assert momentum.attrs["encoder"] == "momentum" and "encoder" not in online.attrs
    assert recomputed.attrs["bn_recomputed"] == f"200 clean training images of {DATA}"
    assert not (online.features == momentum.features).all()
    assert not (online.features == recomputed.features).all()
    state = torch.load(checkpoint, weights_only=True)["method_state"]
    target = build_backbone("resnet18")
    target.load_state_dict({k[len("target.backbone."):]: v for k, v in state.items()
                            if k.startswith("target.backbone.")})  # fmt: skip
    test = load_split(DATA, "test")
    expected = embed_dataset(target.eval(), test, EvalTransform(32, test.info.mean,
                                                                test.info.std),
                              torch.device("cpu"))
    assert torch.allclose(torch.from_numpy(momentum.features[:]), expected, atol=1e-5)


def test_recompute_bn_averages_the_clean_batch_statistics():
    """After recomputation a BatchNorm's running mean is the mean of its inputs' batch means."""
    from sslkit.features.service import recompute_batchnorm

    network = torch.nn.Sequential(torch.nn.Conv2d(3, 4, 1), torch.nn.BatchNorm2d(4))
    dataset = load_split("digits@256", "train")
    view = EvalTransform(32, dataset.info.mean, dataset.info.std)
    used = recompute_batchnorm(network, dataset, view, torch.device("cpu"), 128, batch_size=64)
    assert used == 128 and not network.training
    import numpy as np

    order = np.random.default_rng(0).permutation(len(dataset))[:128]
    with torch.no_grad():
        means = [network[0](view(dataset.images[torch.as_tensor(order[i:i + 64])]))
                 .mean(dim=(0, 2, 3)) for i in (0, 64)]  # fmt: skip
    assert torch.allclose(network[1].running_mean, torch.stack(means).mean(0), atol=1e-5)


def test_encoder_choices_need_a_checkpoint_with_a_momentum_encoder(digits_run, tmp_path):
    plain = tmp_path / "plain.pt"
    torch.save(build_backbone("resnet18").state_dict(), plain)
    refused = run_cli("knn", "--checkpoint", plain, "--data", DATA, "--encoder", "momentum",
                      expect=2)  # fmt: skip
    assert "no momentum encoder" in refused.output
    files = run_cli("knn", "--train-features", tmp_path / "a.h5", "--test-features",
                    tmp_path / "b.h5", "--recompute-bn", "100", expect=2)  # fmt: skip
    assert "give --checkpoint and --data" in files.output
