"""One definition per setting: the parser and the README's flag table come from ExperimentConfig's metadata."""

import dataclasses
import os

from tff_prune import flags
from tff_prune.config import ExperimentConfig

ROOT = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))


def test_readme_flag_table_is_the_generated_one():
    text = open(os.path.join(ROOT, "README.md"), encoding="utf-8").read()
    begin, end = text.index(flags.README_BEGIN) + len(flags.README_BEGIN), text.index(flags.README_END)
    assert text[begin:end].strip() == flags.flag_table(), \
        "README flag table is stale: paste the output of `python -m tff_prune.flags` between the flags markers"


def test_every_setting_has_a_flag_and_defaults_round_trip(tmp_path):
    import argparse

    p = argparse.ArgumentParser()
    flags.add_run_flags(p)
    args = p.parse_args(["--output-dir", str(tmp_path / "o"), "--data-dir", str(tmp_path)])
    cfg = flags.config_from_args(args)
    default = ExperimentConfig(output_dir=str(tmp_path / "o"), data_dir=str(tmp_path))
    assert cfg == default
    options = {a for action in p._actions for a in action.option_strings}
    for f in dataclasses.fields(ExperimentConfig):
        assert flags.flag_name(f) in options and f.metadata["help"], f.name


def test_flags_reach_their_fields(tmp_path):
    import argparse

    p = argparse.ArgumentParser()
    flags.add_run_flags(p)
    args = p.parse_args(["--no-prune", "--recovery-rounds", "4", "--client-lr", "0.05", "--max-clients", "17",
                         "--schedule", "paper", "--femnist-crop", "--output-dir", "rel/out"])
    cfg = flags.config_from_args(args)
    assert (cfg.prune, cfg.recovery_rounds, cfg.client_lr, cfg.max_clients, cfg.schedule, cfg.femnist_crop) == \
           (False, 4, 0.05, 17, "paper", True)
    assert cfg.output_dir == os.path.abspath("rel/out") and args.resume is False


def test_resume_ignores_settings_the_run_never_reads(tmp_path):
    def cfg(**kw):
        return ExperimentConfig(output_dir=str(tmp_path), data_dir=str(tmp_path), **kw)

    # A FedAvg checkpoint written before --schedule existed reads as "paper"; FedAvg never reads it.
    assert cfg(prune=False, schedule="auto").resume_mismatches(cfg(prune=False, schedule="paper", k=1.0)) == []
    assert cfg(schedule="paper", val_clients=5).resume_mismatches(cfg(schedule="paper", val_clients=20)) == []
    assert cfg(schedule="auto").resume_mismatches(cfg(schedule="paper"))[0].startswith("--schedule")
    assert cfg(schedule="auto", val_clients=5).resume_mismatches(cfg(schedule="auto"))[0].startswith("--val-clients")
    assert cfg(prune=False, qat_rounds=2, rounds=4).resume_mismatches(cfg(prune=False))[0].startswith("--qat-rounds")
