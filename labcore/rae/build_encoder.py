"""Build chapter 5's shipped artifacts: frozen representation encoders and FID classifiers, for two datasets.

    python -m labcore.rae.build_encoder                    # both datasets; writes data/ + MANIFEST.json
    python -m labcore.rae.build_encoder --only digits      # ~1 min on 2 CPU cores
    python -m labcore.rae.build_encoder --only nuisance    # ~10 min on 2 CPU cores

digits: the upsampled sklearn digits (`digits_split()`). The encoder is pre-trained as a digit classifier
(a stand-in for DINOv2's self-supervision); the FID network is a separate CNN so the score does not
favour the RAE latent by construction.
nuisance: the same digits under random colours, textured backgrounds and affine jitter
(`nuisance_split()`, `labcore.data.images.nuisance_render`), where the label is no longer in the raw
pixels. Its encoder is trained *without labels*, contrastively on two renders of the same glyph
(`labcore.rae.ssl`), so it learns to ignore exactly those nuisances; its FID CNN is trained on labels with
fresh renders every step.
Everything is trained on the training split only, never on the validation images the chapter measures
on. The `load_*` functions read the artifacts back (sha256-checked); when one is missing they train it in
memory instead (same recipe, same seed). A rebuild reproduces the shipped accuracies (in MANIFEST.json)
and the weights up to float round-off, not bit for bit: the thread count changes the order of summation,
so the sha256 in the manifest changes.
"""

from __future__ import annotations

import argparse
from collections.abc import Callable
from pathlib import Path

import torch

from labcore.checkpoint import (
    DATA_DIR,
    artifact_path,
    load_tensors,
    read_manifest,
    register_artifact,
    save_tensors,
)
from labcore.rae.config import NUISANCE_CLASSIFIER, NUISANCE_ENCODER, ClassifierConfig, EncoderConfig
from labcore.rae.encoder import ViTEncoder, freeze
from labcore.rae.fid import FeatureClassifier, accuracy, classifier_loss, train_classifier

ENCODER_ARTIFACT = "rae_encoder"
CLASSIFIER_ARTIFACT = "rae_fid_classifier"
NUISANCE_ENCODER_ARTIFACT = "rae_nuisance_encoder"
NUISANCE_CLASSIFIER_ARTIFACT = "rae_nuisance_fid_classifier"
REBUILD = "python -m labcore.rae.build_encoder --only digits"
REBUILD_NUISANCE = "python -m labcore.rae.build_encoder --only nuisance"
NUISANCE_SEED = 1  # the nuisance draw of the chapter's fixed nuisance dataset


def digits_split(size: int = 16) -> tuple[torch.Tensor, torch.Tensor, torch.Tensor, torch.Tensor]:
    """(x_train, y_train, x_val, y_val): the chapter's fixed 80/20 split of the upsampled digits."""
    from labcore.data.images import digits_images, split, to_tensors

    return split(*to_tensors(digits_images(size)), val_fraction=0.2, seed=0)


def nuisance_split(size: int = 16) -> tuple[torch.Tensor, torch.Tensor, torch.Tensor, torch.Tensor]:
    """(x_train, y_train, x_val, y_val) of the nuisance digits (3 channels): the same 80/20 split of the
    same digits as `digits_split`, each rendered once with nuisances drawn from NUISANCE_SEED."""
    from labcore.data.images import nuisance_digits_images, split, to_tensors

    return split(*to_tensors(nuisance_digits_images(size, seed=NUISANCE_SEED)), val_fraction=0.2, seed=0)


def train_nuisance_encoder(x_grey: torch.Tensor, cfg: EncoderConfig | None = None, seed: int = 0,
                           progress: bool = False) -> ViTEncoder:
    """The nuisance-invariant encoder: contrastive (no labels) on two nuisance renders of each grey glyph."""
    from labcore.data.images import nuisance_render
    from labcore.rae.ssl import train_contrastive

    cfg = cfg or NUISANCE_ENCODER
    torch.manual_seed(seed)
    enc, _ = train_contrastive(ViTEncoder(cfg), x_grey, nuisance_render, steps=cfg.steps, batch=cfg.batch,
                               lr=cfg.lr, seed=seed, progress=progress)
    return enc


def train_nuisance_classifier(x_grey: torch.Tensor, y: torch.Tensor, cfg: ClassifierConfig | None = None,
                              seed: int = 0, progress: bool = False) -> FeatureClassifier:
    """The nuisance FID CNN: supervised on fresh nuisance renders of the grey training glyphs every step."""
    from labcore.data.images import nuisance_render

    return train_classifier(x_grey, y, cfg or NUISANCE_CLASSIFIER, seed, progress, augment=nuisance_render,
                            channels=3)


def train_encoder(x: torch.Tensor, y: torch.Tensor, cfg: EncoderConfig | None = None, seed: int = 0,
                  progress: bool = False) -> ViTEncoder:
    """Pre-train the small ViT as a classifier (random 1-pixel shifts as augmentation)."""
    from labcore.train import TrainConfig, batch_generator, train

    cfg = cfg or EncoderConfig()
    torch.manual_seed(seed)
    model = ViTEncoder(cfg)

    def batch_fn(step: int, rank: int, world: int):
        g = batch_generator(seed, step, rank)
        idx = torch.randint(0, x.shape[0], (cfg.batch,), generator=g)
        dx, dy = torch.randint(-1, 2, (2,), generator=g).tolist()
        return torch.roll(x[idx], shifts=(dy, dx), dims=(2, 3)), y[idx]

    train(model, classifier_loss, batch_fn, TrainConfig(steps=cfg.steps, lr=cfg.lr, warmup=30,
                                                        weight_decay=0.05, progress=progress, desc="encoder"))
    return model.eval()


def _load(name: str, model: torch.nn.Module) -> bool:
    if name not in read_manifest():
        return False
    tensors, _ = load_tensors(artifact_path(name))
    model.load_state_dict(tensors)
    return True


def _load_or_train(artifact: str, model: torch.nn.Module, rebuild: str, build_if_missing: bool,
                   train: Callable[[], torch.nn.Module]) -> torch.nn.Module:
    """model with the shipped weights of data/<artifact>, frozen; trained in memory by train() when missing."""
    if not _load(artifact, model):
        if not build_if_missing:
            raise FileNotFoundError(f"artifact {artifact!r} missing; run: {rebuild}")
        print(f"[rae] {artifact} not in data/; training it now (run `{rebuild}` to ship it)")
        model = train()
    return freeze(model)


def load_encoder(build_if_missing: bool = True) -> ViTEncoder:
    """The shipped digits encoder, frozen (eval, no grad). Trains it in memory when data/ lacks it."""
    return _load_or_train(ENCODER_ARTIFACT, ViTEncoder(EncoderConfig()), REBUILD, build_if_missing,
                          lambda: train_encoder(*digits_split()[:2]))


def load_fid_classifier(build_if_missing: bool = True) -> FeatureClassifier:
    """The shipped digits FID feature network, frozen. Trains it in memory when data/ lacks it."""
    cfg = ClassifierConfig()
    return _load_or_train(CLASSIFIER_ARTIFACT, FeatureClassifier(1, 10, cfg.feat_dim), REBUILD, build_if_missing,
                          lambda: train_classifier(*digits_split()[:2], cfg))


def load_nuisance_encoder(build_if_missing: bool = True) -> ViTEncoder:
    """The shipped contrastive encoder of the nuisance digits, frozen. Trains it in memory when missing."""
    return _load_or_train(NUISANCE_ENCODER_ARTIFACT, ViTEncoder(NUISANCE_ENCODER), REBUILD_NUISANCE,
                          build_if_missing, lambda: train_nuisance_encoder(digits_split()[0]))


def load_nuisance_fid_classifier(build_if_missing: bool = True) -> FeatureClassifier:
    """The shipped FID feature network of the nuisance digits, frozen. Trains it in memory when missing."""
    return _load_or_train(NUISANCE_CLASSIFIER_ARTIFACT, FeatureClassifier(3, 10, NUISANCE_CLASSIFIER.feat_dim),
                          REBUILD_NUISANCE, build_if_missing, lambda: train_nuisance_classifier(*digits_split()[:2]))


def _ship(out: str, manifest: Path, name: str, model: torch.nn.Module, cfg: object, provenance: str,
          rebuild: str, metrics: dict[str, float]) -> None:
    path = f"{out}/{name}.safetensors"
    save_tensors(path, model.state_dict(), {"config": repr(cfg), **metrics})
    entry = register_artifact(name, path, provenance=provenance, rebuild=rebuild, manifest=manifest)
    print(f"wrote {path} ({entry['bytes'] / 1024:.0f} KiB, sha256 {entry['sha256'][:12]})")


def build_digits(out: str, manifest: Path) -> None:
    x, y, xv, yv = digits_split()
    enc_cfg, cls_cfg = EncoderConfig(), ClassifierConfig()
    enc = train_encoder(x, y, enc_cfg, progress=True)
    cls = train_classifier(x, y, cls_cfg, progress=True)
    acc_enc, acc_cls = accuracy(enc, xv, yv), accuracy(cls, xv, yv)
    print(f"val accuracy: encoder {acc_enc:.3f}, fid classifier {acc_cls:.3f}")
    for name, model, cfg, acc in ((ENCODER_ARTIFACT, enc, enc_cfg, acc_enc),
                                  (CLASSIFIER_ARTIFACT, cls, cls_cfg, acc_cls)):
        _ship(out, manifest, name, model, cfg, f"{type(model).__name__} trained on the 80% train split of "
              f"sklearn digits upsampled to 16x16, seed 0, {cfg.steps} steps; val accuracy {acc:.3f}",
              REBUILD, {"val_accuracy": acc})


def build_nuisance(out: str, manifest: Path) -> None:
    from labcore.rae.ssl import knn_accuracy

    xg, y, _, _ = digits_split()
    x, _, xv, yv = nuisance_split()
    enc = train_nuisance_encoder(xg, progress=True)
    cls = train_nuisance_classifier(xg, y, progress=True)
    knn, acc = knn_accuracy(enc, x, y, xv, yv), accuracy(cls, xv, yv)
    print(f"nuisance val: encoder 5-NN accuracy {knn:.3f} (no labels in training), fid classifier {acc:.3f}")
    data = ("renders (labcore.data.images.nuisance_render: colour, textured background, affine jitter) of the "
            "80% train split of sklearn digits upsampled to 16x16, seed 0")
    _ship(out, manifest, NUISANCE_ENCODER_ARTIFACT, enc, NUISANCE_ENCODER,
          f"ViTEncoder trained contrastively (InfoNCE, no labels) on pairs of {data}, {NUISANCE_ENCODER.steps} "
          f"steps; 5-NN val accuracy of its flattened latent {knn:.3f}", REBUILD_NUISANCE, {"knn_accuracy": knn})
    _ship(out, manifest, NUISANCE_CLASSIFIER_ARTIFACT, cls, NUISANCE_CLASSIFIER,
          f"FeatureClassifier trained on labels of fresh {data}, {NUISANCE_CLASSIFIER.steps} steps; val accuracy "
          f"{acc:.3f}", REBUILD_NUISANCE, {"val_accuracy": acc})


def main(argv: list[str] | None = None) -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--out", default=str(DATA_DIR),
                    help="folder for the .safetensors files and its MANIFEST.json")
    ap.add_argument("--only", choices=("digits", "nuisance"), default=None,
                    help="build one dataset's artifacts (default: both)")
    args = ap.parse_args(argv)
    manifest = Path(args.out) / "MANIFEST.json"
    if args.only in (None, "digits"):
        build_digits(args.out, manifest)
    if args.only in (None, "nuisance"):
        build_nuisance(args.out, manifest)


if __name__ == "__main__":
    main()
