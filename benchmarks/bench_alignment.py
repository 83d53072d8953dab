"""Alignment and style of a profile's current synthetic sets, read exactly as notebook 06 reads them
(``lib.evaluation.evaluate.alignment``: the real-only detector's NME on each generated face against the
landmarks it was drawn from, edited and on the unedited controls; the style judge fit on the stage-2 set
at the generator's resolution), without the detector fine-tunes of the evaluation stage. For a look at
a new generator right after notebook 04; the committed figures come from notebook 06.

    ./study run python -m benchmarks.bench_alignment --profile cpu

It prints the table; ``--out NAME`` also writes it to ``results/<profile>/benchmarks/NAME.{csv,md}``.
"""
from __future__ import annotations

import argparse

from lib import pipeline
from lib.detector.model import Detector
from lib.evaluation import evaluate as ev
from lib.evaluation import style_classifier as sc

from .common import add_out_argument, parse_args, write_table

COLUMNS = ["generator", "n", "alignment_nme", "alignment_nme_edited_matched", "alignment_nme_unedited",
           "style_accuracy"]


def main(argv=None) -> int:
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    ap.add_argument("--profile", default="cpu")
    add_out_argument(ap)
    args = parse_args(ap, argv)
    params = pipeline.load_params(args.profile)
    syn, generated = params["synthesis"], pipeline.generated_dir(args.profile)
    clf, acc = sc.train_style_classifier(generated / "multidomain", resolution=params["diffusion"]["model"]["resolution"])
    folder = pipeline.models_dir(args.profile) / "detector_real"
    real = Detector(folder, "landmarks", "real only")
    sets = {g: generated / "synthetic" / g for g in [*syn["generators"], *syn["warp_first"]["sets"]]}
    controls = {g: generated / "synthetic" / "unedited" / g for g in syn["generators"]}
    table = ev.alignment(real, clf, sets, controls)
    head = (f"Judge: the real-only detector in {folder.relative_to(pipeline.ROOT)}; style judge {acc * 100:.1f}% on "
            f"held-out stage-2 faces, chance {100 / len(clf.classes):.1f}%.")
    write_table(table[table["style"] == "all"][COLUMNS].round(2), head, args.out)
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
