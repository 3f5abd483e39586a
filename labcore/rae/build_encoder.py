"""Build chapter 5's two shipped artifacts: the frozen representation encoder and the FID classifier.

    python -m labcore.rae.build_encoder          # ~1 min on 2 CPU cores, writes data/ + MANIFEST.json

Both are trained on the training split of the upsampled digits (`digits_split()`), never on the
validation images the chapter measures on. The encoder is pre-trained as a digit classifier (our
stand-in for DINOv2's self-supervision); the FID network is a separate CNN so the score does not
favour the RAE latent by construction. `load_encoder()` / `load_fid_classifier()` read them back
(sha256-checked); when an artifact is missing they train it in memory instead (same recipe, same seed).
A rebuild reproduces the shipped val accuracies (0.978 / 0.961) and the weights up to float round-off,
not bit for bit: the thread count changes the order of summation, so the sha256 in the manifest changes.
"""

from __future__ import annotations

import argparse
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
from labcore.rae.config import ClassifierConfig, EncoderConfig
from labcore.rae.encoder import ViTEncoder, freeze
from labcore.rae.fid import FeatureClassifier, accuracy, classifier_loss, train_classifier

ENCODER_ARTIFACT = "rae_encoder"
CLASSIFIER_ARTIFACT = "rae_fid_classifier"
REBUILD = "python -m labcore.rae.build_encoder"


def digits_split(size: int = 16) -> tuple[torch.Tensor, torch.Tensor, torch.Tensor, torch.Tensor]:
    """(x_train, y_train, x_val, y_val): the chapter's fixed 80/20 split of the upsampled digits."""
    from labcore.data.images import digits_images, split, to_tensors

    return split(*to_tensors(digits_images(size)), val_fraction=0.2, seed=0)


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


def load_encoder(build_if_missing: bool = True) -> ViTEncoder:
    """The shipped encoder, frozen (eval, no grad). Trains it in memory when data/ lacks it."""
    model = ViTEncoder(EncoderConfig())
    if not _load(ENCODER_ARTIFACT, model):
        if not build_if_missing:
            raise FileNotFoundError(f"artifact {ENCODER_ARTIFACT!r} missing; run: {REBUILD}")
        print(f"[rae] {ENCODER_ARTIFACT} not in data/; training it now (run `{REBUILD}` to ship it)")
        x, y, _, _ = digits_split()
        model = train_encoder(x, y)
    return freeze(model)


def load_fid_classifier(build_if_missing: bool = True) -> FeatureClassifier:
    """The shipped FID feature network, frozen. Trains it in memory when data/ lacks it."""
    cfg = ClassifierConfig()
    model = FeatureClassifier(1, 10, cfg.feat_dim)
    if not _load(CLASSIFIER_ARTIFACT, model):
        if not build_if_missing:
            raise FileNotFoundError(f"artifact {CLASSIFIER_ARTIFACT!r} missing; run: {REBUILD}")
        print(f"[rae] {CLASSIFIER_ARTIFACT} not in data/; training it now (run `{REBUILD}` to ship it)")
        x, y, _, _ = digits_split()
        model = train_classifier(x, y, cfg)
    return freeze(model)


def main(argv: list[str] | None = None) -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--out", default=str(DATA_DIR),
                    help="folder for the .safetensors files and its MANIFEST.json")
    args = ap.parse_args(argv)
    manifest = Path(args.out) / "MANIFEST.json"
    x, y, xv, yv = digits_split()
    enc_cfg, cls_cfg = EncoderConfig(), ClassifierConfig()
    enc = train_encoder(x, y, enc_cfg, progress=True)
    cls = train_classifier(x, y, cls_cfg, progress=True)
    acc_enc, acc_cls = accuracy(enc, xv, yv), accuracy(cls, xv, yv)
    print(f"val accuracy: encoder {acc_enc:.3f}, fid classifier {acc_cls:.3f}")
    for name, model, cfg, acc in ((ENCODER_ARTIFACT, enc, enc_cfg, acc_enc),
                                  (CLASSIFIER_ARTIFACT, cls, cls_cfg, acc_cls)):
        path = f"{args.out}/{name}.safetensors"
        save_tensors(path, model.state_dict(), {"config": repr(cfg), "val_accuracy": acc})
        entry = register_artifact(name, path, provenance=f"{type(model).__name__} trained on the 80% train "
                                  f"split of sklearn digits upsampled to 16x16, seed 0, {cfg.steps} steps; "
                                  f"val accuracy {acc:.3f}", rebuild=REBUILD,
                                  manifest=manifest)
        print(f"wrote {path} ({entry['bytes'] / 1024:.0f} KiB, sha256 {entry['sha256'][:12]})")


if __name__ == "__main__":
    main()
