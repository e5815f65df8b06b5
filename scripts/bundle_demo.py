"""Copy a trained demo model and its CLAP into the package (src/longplay/assets/demo), with
the weights in float16, and check the size budget (40 MB for all bundled models).

    python scripts/bundle_demo.py MODEL_FOLDER CLAP_FOLDER [--out src/longplay/assets/demo]
    python scripts/bundle_demo.py MODELS/demo-fast --out src/longplay/assets/demo-fast \
        --share-vae src/longplay/assets/demo

MODEL_FOLDER is a model folder written by ``longplay export`` (model_config.json +
model.safetensors) whose text encoder is a packaged one (referenced by name), and
CLAP_FOLDER a CLAP folder from ``longplay export`` of a CLAP run. A variant of the demo
model (the distilled ``demo-fast``) is bundled without a CLAP: it shares the demo's.
With ``--share-vae BUNDLED_FOLDER`` the variant's weight file leaves out the VAE, which
must be the one already bundled there (checked), and its config names that folder
(``vae_weights_from``): two copies of the VAE would not fit the budget.
"""

from __future__ import annotations

import argparse
import json
import os
import shutil
from pathlib import Path

import torch

from longplay.atomic import atomic_output_path
from longplay.checkpoints import load_clap
from longplay.checkpoints.diffusion import SAT_VAE_PREFIX as VAE_PREFIX
from longplay.checkpoints.files import (
    SAT_SHARED_VAE_KEY,
    read_state_dict,
    shared_vae_folder,
    write_safetensors,
)
from longplay.conditioning import packaged_text_encoder_path
from longplay.pipelines import TextToMusicPipeline

BUDGET_BYTES = 40 * 1000 * 1000


def _half(src: Path, dst: Path, metadata: dict | None = None) -> None:
    state = read_state_dict(src)
    write_safetensors(dst, {k: v.to(torch.float16) for k, v in state.items()}, metadata=metadata)


def _vae_of(state: dict[str, torch.Tensor]) -> dict[str, torch.Tensor]:
    return {k: v for k, v in state.items() if k.startswith(VAE_PREFIX)}


def _same_vae(a: dict[str, torch.Tensor], b: dict[str, torch.Tensor], *,
              decoders: bool = True) -> bool:
    """Whether the model states ``a`` and ``b`` hold bit-identical VAE weights; with
    ``decoders=False``, whether they differ at most in their decoders: the same encoder
    makes the same latents, so a DiT trained on one's latents is trained on the other's (a
    decoder fine-tuned with the encoder frozen, ``freeze_encoder``)."""
    skip = () if decoders else (VAE_PREFIX + "decoder.",)
    a, b = ({k: v for k, v in _vae_of(s).items() if not k.startswith(skip)} for s in (a, b))
    return a.keys() == b.keys() and all(torch.equal(a[k], b[k]) for k in a)


def _check_sharers(out: Path, tmp: Path) -> None:
    """Refuse to replace the VAE of ``out`` that another bundled model shares
    (``vae_weights_from``, resolved by :func:`shared_vae_folder`) with one of another
    encoder: that model's latents would not be the new VAE's. A new decoder of the same
    encoder is accepted (the sharer decodes with it too)."""
    if not (out / "model.safetensors").is_file():
        return
    sharers = [c.parent for c in out.parent.glob("*/model_config.json")
               if c.parent.resolve() != out.resolve()
               and shared_vae_folder(c.parent) == out.resolve()]
    if not sharers:
        return
    old, new = (read_state_dict(folder / "model.safetensors") for folder in (out, tmp))
    if not _same_vae(old, new, decoders=False):
        raise SystemExit(f"{sharers[0]} shares the VAE of {out}, and this model's VAE encodes "
                         f"other latents: distil and bundle {sharers[0].name} from it as well "
                         f"(or remove {sharers[0]}) before replacing {out}")
    if not _same_vae(old, new):
        print(f"note: {', '.join(p.name for p in sharers)} will decode with the new decoder "
              "(same encoder, so the same latents)")


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("model", type=Path)
    parser.add_argument("clap", type=Path, nargs="?", default=None)
    parser.add_argument("--out", type=Path, default=Path("src/longplay/assets/demo"))
    parser.add_argument("--share-vae", type=Path, default=None,
                        help="a bundled model folder whose VAE (the same weights) to share")
    args = parser.parse_args()

    config = json.loads((args.model / "model_config.json").read_text())
    text = next(c for c in config["model"]["conditioning"]["configs"] if c["type"] != "number")
    name = text["config"].get("model_path")
    if name is None or packaged_text_encoder_path(name) is None:
        raise SystemExit(f"the model's text encoder ({name}) is not a packaged encoder: the "
                         "bundled model must run without any other download")
    clap_config = (None if args.clap is None
                   else json.loads((args.clap / "clap_config.json").read_text()))
    if clap_config is not None and "text_encoder" not in clap_config:
        raise SystemExit("the CLAP folder holds its own text tower; export it from a run whose "
                         "text_encoder_path names a packaged encoder")

    tmp = args.out.with_name(args.out.name + ".tmp")
    if tmp.exists():
        shutil.rmtree(tmp)
    tmp.mkdir(parents=True)
    if args.share_vae is None:
        _half(args.model / "model.safetensors", tmp / "model.safetensors")
    else:
        state = {k: v.to(torch.float16)
                 for k, v in read_state_dict(args.model / "model.safetensors").items()}
        if not _same_vae(state, read_state_dict(args.share_vae / "model.safetensors")):
            raise SystemExit(f"{args.model}'s VAE is not the one bundled in {args.share_vae}: "
                             "bundle it whole, or export it from the bundled model's VAE")
        write_safetensors(tmp / "model.safetensors",
                          {k: v for k, v in state.items() if not k.startswith(VAE_PREFIX)})
        config[SAT_SHARED_VAE_KEY] = Path(os.path.relpath(args.share_vae.resolve(),
                                                          args.out.resolve())).as_posix()
    with atomic_output_path(tmp / "model_config.json") as path:
        path.write_text(json.dumps(config, indent=2) + "\n")
    if args.clap is not None:
        (tmp / "clap").mkdir()
        _half(args.clap / "model.safetensors", tmp / "clap" / "model.safetensors",
              metadata={"format": "longplay-clap", "format_version": "1"})
        shutil.copy(args.clap / "clap_config.json", tmp / "clap" / "clap_config.json")
    size = sum(p.stat().st_size for p in tmp.rglob("*") if p.is_file())
    others = sum(p.stat().st_size for folder in args.out.parent.iterdir()
                 if folder.is_dir() and folder not in (args.out, tmp)
                 for p in folder.rglob("*") if p.is_file())
    if size + others > BUDGET_BYTES:
        raise SystemExit(f"the bundled models would take {(size + others) / 1e6:.1f} MB, over "
                         f"the {BUDGET_BYTES / 1e6:.0f} MB budget")
    _check_sharers(args.out, tmp)
    # It loads before the bundle replaces the old one.
    TextToMusicPipeline.from_pretrained(tmp)
    if args.clap is not None:
        load_clap(tmp / "clap")
    if args.out.exists():
        shutil.rmtree(args.out)
    tmp.rename(args.out)
    print(f"bundled {args.out} ({size / 1e6:.1f} MB; all bundled models "
          f"{(size + others) / 1e6:.1f} MB)")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
