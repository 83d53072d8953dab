"""Profiles and notebook stages: the glue between params/, papermill and DVC.

    python -m lib.pipeline use cpu        # switch the active profile
    python -m lib.pipeline run 01_data_prep   # run one notebook stage (dvc.yaml calls this)

Each profile is a file ``params/<profile>.yaml``; ``params/profile.yaml``
names the active one (and the data root DVC hashes as a dependency). Each
stage's notebook receives the profile name and only its own params sections,
and is written, executed, to ``results/<profile>/notebooks/``.
"""
from __future__ import annotations

import argparse
import os
import sys
from pathlib import Path

import yaml

ROOT = Path(__file__).resolve().parent.parent
PROFILES = ("smoke", "demo", "cpu", "paper")
# the params sections each notebook reads (dvc.yaml lists the same keys)
STAGE_SECTIONS = {
    "01_data_prep": ["data"],
    "02_stage1": ["data", "diffusion"],
    "03_stage2": ["data", "diffusion"],
    "04_synthesis": ["data", "diffusion", "synthesis"],
    "05_detector_finetune": ["detector"],
    "06_evaluation": ["data", "evaluate", "synthesis"],
}


def load_params(profile: str, root: Path = ROOT) -> dict:
    path = root / "params" / f"{profile}.yaml"
    if not path.exists():
        raise FileNotFoundError(f"{path}: no such profile; known: {', '.join(PROFILES)}")
    return yaml.safe_load(path.read_text())


def active_profile(root: Path = ROOT) -> str:
    return yaml.safe_load((root / "params" / "profile.yaml").read_text())["profile"]


def data_dir(profile: str, root: Path = ROOT) -> Path:
    return root / "data" / profile


def results_dir(profile: str, root: Path = ROOT) -> Path:
    return root / "results" / profile


def generated_dir(profile: str, root: Path = ROOT) -> Path:
    """Sets the study makes: the stage-2 multi-domain set, synthetic sets, baseline sets."""
    return root / "generated" / profile


def use(profile: str, root: Path = ROOT) -> None:
    params = load_params(profile, root)
    data_root = params["data"].get("root") or "lib/procedural.py"
    (root / "params" / "profile.yaml").write_text(
        "# The active profile; switch with: python -m lib.pipeline use <smoke|demo|cpu|paper>\n"
        "# data_root is what DVC hashes as the data stage's input (the renderer for procedural data).\n"
        + yaml.safe_dump({"profile": profile, "data_root": data_root}, sort_keys=False))


def run(stage: str, profile: str | None = None, root: Path = ROOT) -> Path:
    import papermill as pm

    profile = profile or active_profile(root)
    params = load_params(profile, root)
    out = results_dir(profile, root) / "notebooks" / f"{stage}.ipynb"
    out.parent.mkdir(parents=True, exist_ok=True)
    parameters = {"profile": profile, **{k: params[k] for k in STAGE_SECTIONS[stage]}}
    os.environ.setdefault("TQDM_MININTERVAL", "30")  # executed notebooks keep a progress line every 30 s, not every step
    pm.execute_notebook(str(root / "notebooks" / f"{stage}.ipynb"), str(out), parameters=parameters,
                        cwd=str(root), kernel_name="python3", progress_bar=False)
    return out


def main(argv=None) -> int:
    ap = argparse.ArgumentParser(prog="python -m lib.pipeline")
    sub = ap.add_subparsers(dest="cmd", required=True)
    u = sub.add_parser("use", help="switch the active profile")
    u.add_argument("profile", choices=PROFILES)
    r = sub.add_parser("run", help="run one notebook stage with papermill")
    r.add_argument("stage", choices=sorted(STAGE_SECTIONS))
    r.add_argument("--profile", choices=PROFILES)
    a = ap.parse_args(argv)
    if a.cmd == "use":
        use(a.profile)
        print(f"active profile: {a.profile}")
    else:
        print(run(a.stage, a.profile))
    return 0


if __name__ == "__main__":
    sys.exit(main())
