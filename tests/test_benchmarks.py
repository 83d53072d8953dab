"""The benchmarks beside the pipeline: their shared module (benchmarks/common.py: where a table goes, its
provenance, settings checked against the schema), every script's command line, and the tables of the committed
profile (results/cpu/benchmarks/, each listed in its index, none at the top of results/cpu/)."""
import argparse
import datetime
import os
import re
import shlex
import subprocess
import sys

import pandas as pd
import pytest

from benchmarks import common
from lib import pipeline
from tests.conftest import REPO

SCRIPTS = sorted(p.stem for p in (REPO / "benchmarks").glob("bench_*.py"))
TABLES = REPO / "results" / "cpu" / "benchmarks"
# the first line of a table written before the scripts recorded their provenance (moved here from results/cpu/)
LEGACY = re.compile(r"Provenance \(recorded when the table moved to benchmarks/; the run did not record it\): last "
                    r"changed in commit `[0-9a-f]{7,40}`, \d{4}-\d{2}-\d{2}, command `python -m benchmarks\.bench_\w+ "
                    r"--profile cpu[^`]*`.*\.")


def _git(*args, cwd):
    return subprocess.run(["git", *args], cwd=cwd, capture_output=True, text=True, check=True).stdout.strip()


@pytest.fixture(autouse=True)
def no_recorded_run(monkeypatch):
    """parse_args records a run's provenance in the module; each test starts without one."""
    monkeypatch.setattr(common, "_recorded", None)


# ------------------------------------------------------------------ provenance

def test_the_provenance_line_names_the_commit_the_command_and_the_date():
    argv = ["--profile", "cpu", "--variants", "hourglass 64 px / 16", "--out", "x"]
    line = common.provenance(argv, "benchmarks.bench_detector_variants", date=datetime.date(2026, 12, 8))
    m = common.PROVENANCE.fullmatch(line)
    assert m, line
    head = _git("rev-parse", "--short", "HEAD", cwd=REPO)
    assert m["commit"] in (head, head + "+dirty")
    assert m["date"] == "2026-12-08"
    # the command as a shell would run it again: the quoted variant stays one argument
    assert m["command"] == "python -m benchmarks.bench_detector_variants --profile cpu --variants " \
                           "'hourglass 64 px / 16' --out x"
    assert shlex.split(m["command"])[3:] == argv


def test_the_commit_is_marked_dirty_when_the_tree_differs_from_it(tmp_path):
    assert common.commit(tmp_path) == "unknown"  # not a git checkout
    git = ["-c", "user.name=t", "-c", "user.email=t@t", "-c", "commit.gpgsign=false"]
    _git("init", "-q", cwd=tmp_path)
    (tmp_path / "a.txt").write_text("1")
    _git("add", "a.txt", cwd=tmp_path)
    _git(*git, "commit", "-q", "-m", "one", cwd=tmp_path)
    head = _git("rev-parse", "--short", "HEAD", cwd=tmp_path)
    assert common.commit(tmp_path) == head
    (tmp_path / "a.txt").write_text("2")
    assert common.commit(tmp_path) == head + "+dirty"
    (tmp_path / "a.txt").write_text("1")
    (tmp_path / "new.py").write_text("")  # a file not yet committed: the run's code may be in it
    assert common.commit(tmp_path) == head + "+dirty"


def test_write_table_writes_plain_csv_and_markdown_under_its_provenance(tmp_path, capsys):
    table = pd.DataFrame({"variant": ["a, b", "c"], "nme": [3.5, 4.25]})
    out = tmp_path / "benchmarks" / "name"
    common.write_table(table, "Heading.", out, line="Provenance: commit `abc1234`, 2026-12-08, command `python -m x`.")
    assert pd.read_csv(tmp_path / "benchmarks" / "name.csv").equals(table)  # no comment lines: pandas reads it as is
    lines = (tmp_path / "benchmarks" / "name.md").read_text().splitlines()
    assert lines[:3] == ["Provenance: commit `abc1234`, 2026-12-08, command `python -m x`.", "", "Heading."]
    assert lines[4].startswith("| variant")
    assert "Heading." in capsys.readouterr().out

    # rows appended to an earlier table keep the earlier provenance below the new one
    common.write_table(table, "Heading.", out, line="Provenance: commit `def5678`, 2026-12-09, command `python -m y`.",
                       keep_earlier=True)
    lines = (tmp_path / "benchmarks" / "name.md").read_text().splitlines()
    assert lines[0].startswith("Provenance: commit `def5678`")
    assert lines[1] == "Earlier rows: Provenance: commit `abc1234`, 2026-12-08, command `python -m x`."

    common.write_table(table, "Printed only.", None)  # no --out: nothing written
    assert sorted(p.name for p in (tmp_path / "benchmarks").iterdir()) == ["name.csv", "name.md"]


def _parser():
    ap = argparse.ArgumentParser(prog="bench_x")
    ap.add_argument("--profile", default="cpu")
    common.add_out_argument(ap)
    return ap


def test_out_takes_a_name_and_the_table_goes_to_the_profiles_benchmarks_folder(tmp_path, capsys):
    args = common.parse_args(_parser(), ["--profile", "demo", "--out", "my_table"], "benchmarks.bench_x", root=tmp_path)
    assert args.out == tmp_path / "results" / "demo" / "benchmarks" / "my_table"
    # the provenance is recorded as the run starts, and every table of the run carries it
    common.write_table(pd.DataFrame({"a": [1]}), "Heading.", args.out)
    first = (args.out.parent / "my_table.md").read_text().splitlines()[0]
    m = common.PROVENANCE.fullmatch(first)
    assert m and m["commit"] == "unknown"  # tmp_path is no git checkout
    assert m["command"] == "python -m benchmarks.bench_x --profile demo --out my_table"

    assert common.parse_args(_parser(), [], root=tmp_path).out is None  # no --out: print only
    for bad in ("results/cpu/my_table", "my_table.md", "../x"):
        with pytest.raises(SystemExit) as exc:
            common.parse_args(_parser(), ["--out", bad], root=tmp_path)
        assert exc.value.code == 2
        assert "not a path" in capsys.readouterr().err


# ------------------------------------------------------------------ settings over a section

@pytest.fixture(scope="module")
def cpu():
    return pipeline.load_params("cpu")


def test_settings_set_nested_keys_and_replace_a_value_whole(cpu):
    detector = cpu["detector"]
    d = common.with_settings(detector, {"model.sigma": 2.0, "train.augment.blur": 0.0}, "detector", cpu)
    assert d["model"]["sigma"] == 2.0 and d["train"]["augment"]["blur"] == 0.0
    assert d["train"]["augment"]["rotate"] == detector["train"]["augment"]["rotate"]
    assert detector["model"]["sigma"] == cpu["detector"]["model"]["sigma"] != 2.0  # the profile is not touched
    train = {**cpu["detector"]["finetune"]["train"], "mix": {"fewshot": 0.25, "real": 0.25}}
    t = common.with_settings(train, {"mix": {"fewshot": 0.5}}, "detector.finetune.train", cpu)
    assert t["mix"] == {"fewshot": 0.5}  # replaced, not merged
    # null where the schema allows it, over a value of another type
    d = common.with_settings(cpu["diffusion"], {"stage1.snr_gamma": None}, "diffusion", cpu)
    assert d["stage1"]["snr_gamma"] is None


def test_a_misspelt_key_is_an_error_naming_it_not_a_setting_added(cpu):
    with pytest.raises(pipeline.ParamsError, match=r"detector\.model\.sigam: unknown key \(did you mean sigma\?\)"):
        common.with_settings(cpu["detector"], {"model.sigam": 1.0}, "detector", cpu)
    with pytest.raises(pipeline.ParamsError, match=r"detector\.train\.augmnt: unknown key \(did you mean augment\?\)"):
        common.with_settings(cpu["detector"], {"train.augmnt.blur": 0.0}, "detector", cpu)
    # without the profile, the section's own keys are all there is
    with pytest.raises(ValueError, match=r"detector\.model has no key 'sigam' \(did you mean sigma\?\)"):
        common.with_settings(cpu["detector"], {"model.sigam": 1.0}, "detector")
    with pytest.raises(ValueError, match="is a value"):
        common.with_settings(cpu["detector"], {"model.sigma.x": 1.0}, "detector", cpu)
    with pytest.raises(ValueError, match="dotted key"):
        common.with_settings(cpu["detector"], {"model..sigma": 1.0}, "detector", cpu)


def test_values_are_checked_against_the_schema(cpu):
    with pytest.raises(pipeline.ParamsError, match=r"detector\.model\.sigma: str 'wide'"):
        common.with_settings(cpu["detector"], {"model.sigma": "wide"}, "detector", cpu)
    with pytest.raises(pipeline.ParamsError, match=r"detector\.train\.augment\.blur: 2\.0 out of range"):
        common.with_settings(cpu["detector"], {"train.augment.blur": 2.0}, "detector", cpu)
    # a key the profile leaves out but the schema knows
    train = cpu["detector"]["finetune"]["train"]
    assert "freeze_norm_stats" not in train
    t = common.with_settings(train, {"freeze_norm_stats": True}, "detector.finetune.train", cpu)
    assert t["freeze_norm_stats"] is True
    with pytest.raises(ValueError, match="has no key 'freeze_norm_stats'"):
        common.with_settings(train, {"freeze_norm_stats": True}, "detector.finetune.train")


def test_every_benchmark_variant_is_valid_over_the_cpu_profile(cpu):
    """Each script's VARIANTS as its main applies them: a key the schema does not know fails here, not hours into
    a run."""
    from benchmarks import bench_autoencoder, bench_detector_variants, bench_finetune, bench_generator, bench_style
    from lib.detector.finetune import recipes
    for name, v in bench_generator.VARIANTS.items():
        common.with_settings(cpu["diffusion"], {**bench_generator.BASE, **v}, "diffusion", cpu)
    for module in (bench_style, bench_autoencoder):
        for v in module.VARIANTS.values():
            common.with_settings(cpu["diffusion"], v, "diffusion", cpu)
    for v in bench_detector_variants.VARIANTS.values():
        common.with_settings(cpu["detector"], {**v, **bench_detector_variants.DETECTOR_BOXES}, "detector", cpu)
    ft = cpu["detector"]["finetune"]
    train = recipes(ft["sets"])[ft["mix"]["set"]].train_cfg(ft["train"], {"fewshot": 0.25, "real": 0.25})
    for v in bench_finetune.VARIANTS.values():
        common.with_settings(train, v, "detector.finetune.train", cpu)


# ------------------------------------------------------------------ every script

def test_every_benchmark_script_answers_help():
    """``python -m benchmarks.<script> --help`` exits 0 for every script (imports and argument parsers intact); the
    scripts that write a table take --out NAME, the one way to name it."""
    env = {**os.environ, "MPLBACKEND": "Agg", "HF_HUB_OFFLINE": "1"}
    runs = {name: subprocess.Popen([sys.executable, "-m", f"benchmarks.{name}", "--help"], cwd=REPO, env=env,
                                   stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True) for name in SCRIPTS}
    for name, proc in runs.items():
        out, err = proc.communicate(timeout=600)
        assert proc.returncode == 0, f"{name} --help: exit {proc.returncode}\n{err[-2000:]}"
        assert "usage:" in out
        source = (REPO / "benchmarks" / f"{name}.py").read_text()
        if "write_table(" in source:
            assert "--out NAME" in out, f"{name}: writes a table but takes no --out NAME"
            assert "add_out_argument(ap)" in source and "parse_args(ap, argv)" in source, name


# ------------------------------------------------------------------ the committed tables

def _index_names() -> list[str]:
    rows = [line for line in (TABLES / "README.md").read_text().splitlines() if line.startswith("| [")]
    names = []
    for row in rows:
        m = re.match(r"\| \[([\w-]+)\]\(([\w-]+)\.md\) \| [^|]+ \| `(bench_\w+)\.py` \|$", row)
        assert m and m[1] == m[2], f"results/cpu/benchmarks/README.md: a row not of the form " \
                                   f"| [name](name.md) | what it compares | `script.py` |: {row}"
        assert m[3] in SCRIPTS, f"{m[1]}: no script benchmarks/{m[3]}.py"
        names.append(m[1])
    return names


def test_the_index_lists_every_table_and_only_tables_that_exist():
    names = _index_names()
    assert len(names) == len(set(names)), "a table listed twice"
    files = {p.name for p in TABLES.iterdir()} - {"README.md"}
    listed = {f"{n}.{ext}" for n in names for ext in ("csv", "md")}
    assert not files - listed, f"in results/cpu/benchmarks/ but not in its README.md: {sorted(files - listed)}"
    assert not listed - files, f"in results/cpu/benchmarks/README.md but missing: {sorted(listed - files)}"


def test_every_table_starts_with_its_provenance_and_its_csv_is_plain():
    for name in _index_names():
        first = (TABLES / f"{name}.md").read_text().splitlines()[0]
        assert common.PROVENANCE.fullmatch(first) or LEGACY.fullmatch(first), f"{name}.md: first line {first!r}"
        assert len(pd.read_csv(TABLES / f"{name}.csv")) > 0


def test_the_top_of_results_cpu_holds_only_what_the_pipeline_declares():
    """Benchmark tables go to results/cpu/benchmarks/; at the top level only dvc.yaml's outputs (files, or the folders
    they are in) and the report and its history."""
    declared = {p.split("/", 2)[2] for p in re.findall(r"(results/cpu/[^\s:]+):", (REPO / "dvc.yaml").read_text())}
    tops = {p.split("/")[0] for p in declared}  # figures/..., plots/..., notebooks/...
    allowed = tops | {"REPORT.md", "HISTORY.md", common.FOLDER}
    stray = sorted(p.name for p in (REPO / "results" / "cpu").iterdir() if p.name not in allowed)
    assert not stray, f"at the top of results/cpu/ but not declared in dvc.yaml: {stray}"
