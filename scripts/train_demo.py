"""Train the bundled demo model from scratch, stage by stage, resumably: the commands of
docs/demo.md ("How it was trained") in order, each skipped once its output exists and
each training run resumed from its last checkpoint. Run it again after an interruption
(or, on a small machine, once per working session) and it goes on where it stopped.

    python scripts/train_demo.py WORK [--corpus CORPUS] [--stop-after STAGE]
                                      [--max-steps STAGE=N ...] [--dry-run]

Stages, with what each writes under WORK:

    vae            runs/demo-vae -> models/demo-vae       configs/demo/vae.yaml
    vae-decoder    runs/demo-vae-decoder -> models/demo-vae-decoder
                   (the decoder fine-tuned with the adversary, the encoder frozen:
                   configs/demo/vae-adversarial.yaml)
    encode         latents/ (the training set's latents; resumable itself)
    dit-pretrain   runs/demo-dit-pretrain -> models/demo-dit-pretrain
    dit-finetune   runs/demo-dit-finetune -> models/demo  (the full window)
    distill        runs/demo-distill -> models/demo-fast  (few steps, no guidance)

CORPUS (default WORK/corpus) is a folder with train/ and test/ as ``longplay data
build-corpus`` writes it; it is built first when missing. The CLAP of the bundled model
is reused (it is trained on audio, not on latents: ``longplay train clap`` retrains it).
``--max-steps vae=4000`` stops a stage's run early for now (the stage is then not done,
and the next run resumes it); ``--stop-after`` ends after a stage. Bundling into the
package is the last, manual step: ``python scripts/bundle_demo.py WORK/models/demo
src/longplay/assets/demo/clap``, then the few-step variant with ``python
scripts/bundle_demo.py WORK/models/demo-fast --out src/longplay/assets/demo-fast
--share-vae src/longplay/assets/demo``.
"""

from __future__ import annotations

import argparse
import shlex
import subprocess
import sys
from dataclasses import dataclass
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent
CONFIGS = ROOT / "configs" / "demo"


@dataclass(frozen=True)
class Stage:
    name: str
    kind: str  # longplay train <kind>; "" for a command that is not a training run
    config: str
    extra: tuple[str, ...]  # arguments after the config, with {work} and {corpus}
    run: str  # run folder under WORK
    model: str  # exported model folder under WORK


STAGES = (
    Stage("vae", "vae", "vae.yaml", ("--data", "{corpus}/train"), "runs/demo-vae",
          "models/demo-vae"),
    Stage("vae-decoder", "vae", "vae-adversarial.yaml",
          ("--data", "{corpus}/train", "--model", "{work}/models/demo-vae"),
          "runs/demo-vae-decoder", "models/demo-vae-decoder"),
    Stage("encode", "", "", (), "", ""),
    Stage("dit-pretrain", "dit", "dit-pretrain.yaml",
          ("--data", "{work}/latents", "--vae", "{work}/models/demo-vae-decoder"),
          "runs/demo-dit-pretrain", "models/demo-dit-pretrain"),
    Stage("dit-finetune", "dit", "dit-finetune.yaml",
          ("--data", "{work}/latents", "--model", "{work}/models/demo-dit-pretrain"),
          "runs/demo-dit-finetune", "models/demo"),
    Stage("distill", "distill", "distill.yaml",
          ("--data", "{work}/latents", "--teacher", "{work}/models/demo"),
          "runs/demo-distill", "models/demo-fast"),
)
NAMES = tuple(s.name for s in STAGES)


def run_step(run: Path) -> int | None:
    """The step a training run folder has reached, None when it has no checkpoint."""
    import torch

    last = run / "checkpoints" / "last.ckpt"
    if not last.is_file():
        return None
    # mmap: only the step is read, not the weights and optimiser states.
    return int(torch.load(last, map_location="cpu", weights_only=True, mmap=True)["global_step"])


def config_steps(stage: Stage) -> int:
    """The stage's full length: trainer.max_steps of its config file (a run started or
    resumed with --max-steps records that instead)."""
    import yaml

    return int(yaml.safe_load((CONFIGS / stage.config).read_text())["trainer"]["max_steps"])


def command(args: list[str], dry_run: bool) -> None:
    print("+ " + shlex.join(args), flush=True)
    if not dry_run:
        subprocess.run(args, check=True)


def train_stage(stage: Stage, work: Path, corpus: Path, max_steps: int | None,
                dry_run: bool) -> bool:
    """Train (or resume) and export one stage; True when its model exists afterwards."""
    model, run = work / stage.model, work / stage.run
    if (model / "model_config.json").is_file():
        print(f"{stage.name}: done ({model})")
        return True
    extra = [a.format(work=work, corpus=corpus) for a in stage.extra]
    args = ["longplay", "train", stage.kind, str(CONFIGS / stage.config), *extra,
            "-o", str(run), "--no-progress"]
    full = config_steps(stage)
    target = full if max_steps is None else min(max_steps, full)
    args += ["--max-steps", str(target)]
    step = run_step(run)
    if step is None:
        command(args, dry_run)
    elif step < target:
        command([*args, "--resume"], dry_run)
    if dry_run:
        command(["longplay", "export", str(run), "-o", str(model)], dry_run)
        return True
    step = run_step(run) or 0
    if step < full:
        print(f"{stage.name}: at step {step} of {full}; run this script again to go on")
        return False
    command(["longplay", "export", str(run), "-o", str(model)], dry_run)
    return True


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("work", type=Path, help="folder for the corpus, runs, latents, models")
    parser.add_argument("--corpus", type=Path, default=None,
                        help="audio corpus with train/ and test/ (default WORK/corpus)")
    parser.add_argument("--stop-after", choices=NAMES, default=None)
    parser.add_argument("--max-steps", action="append", default=[], metavar="STAGE=N",
                        help="stop that stage's run at step N for now (repeatable)")
    parser.add_argument("--dry-run", action="store_true", help="print the commands only")
    args = parser.parse_args()
    limits: dict[str, int] = {}
    for item in args.max_steps:
        name, _, value = item.partition("=")
        if name not in NAMES or not value.isdigit() or int(value) < 1:
            parser.error(f"--max-steps wants STAGE=N with STAGE one of {', '.join(NAMES)} "
                         f"and N >= 1, got {item!r}")
        limits[name] = int(value)
    work = args.work.resolve()
    corpus = (args.corpus or work / "corpus").resolve()
    if not (corpus / "train").is_dir():
        command(["longplay", "data", "build-corpus", "-o", str(corpus), "--hours", "3",
                 "--seed", "0", "--workers", "1", "--no-progress"], args.dry_run)
    for stage in STAGES:
        if stage.name == "encode":
            command(["longplay", "data", "encode", str(corpus / "train"), "--model",
                     str(work / "models" / "demo-vae-decoder"), "-o", str(work / "latents"),
                     "--no-progress"], args.dry_run)
        elif not train_stage(stage, work, corpus, limits.get(stage.name), args.dry_run):
            return 0
        if stage.name == args.stop_after:
            break
    print("all stages done; bundle with: python scripts/bundle_demo.py "
          f"{work / 'models' / 'demo'} src/longplay/assets/demo/clap, then python "
          f"scripts/bundle_demo.py {work / 'models' / 'demo-fast'} --out "
          "src/longplay/assets/demo-fast --share-vae src/longplay/assets/demo")
    return 0


if __name__ == "__main__":
    sys.exit(main())
