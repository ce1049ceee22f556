"""The pruning engine, models, accounting and the mobile converter work without TFF (they never import it)."""

import os
import subprocess
import sys

ROOT = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))

CODE = """
import sys
from tff_prune import accounting, pruning
from tff_prune.models import get_model
from tff_prune.federated.steps.structured import make_plan
from tff_prune.federated.steps.auto import AutoPruning
from tff_prune.config import ExperimentConfig
from mobile import convert, host_benchmark
m = get_model("cnn", "femnist", seed=0)
small = pruning.prune_model(m, pruning.plan(m, pruning.ratio(0.5)))
assert accounting.count_params(small) < accounting.count_params(m)
loaded = sorted(n for n in ("tensorflow_federated", "tensorflow_model_optimization") if n in sys.modules)
print("LOADED", loaded)
"""


def test_engine_models_accounting_and_mobile_do_not_import_tff():
    proc = subprocess.run([sys.executable, "-c", CODE], cwd=ROOT, capture_output=True, text=True, timeout=300,
                          stdin=subprocess.DEVNULL)
    assert proc.returncode == 0, proc.stderr
    assert "LOADED []" in proc.stdout, proc.stdout


def test_configuration_and_the_data_catalog_import_without_tensorflow():
    code = ("import sys\nfrom tff_prune.config import ExperimentConfig\nfrom tff_prune.data.catalog import DATASETS\n"
            "from tff_prune.flags import add_run_flags\nfrom tff_prune import experiments\n"
            "ExperimentConfig()\nprint('LOADED', 'tensorflow' in sys.modules)\n")
    proc = subprocess.run([sys.executable, "-c", code], cwd=ROOT, capture_output=True, text=True, timeout=300,
                          stdin=subprocess.DEVNULL)
    assert proc.returncode == 0, proc.stderr
    assert "LOADED False" in proc.stdout, proc.stdout
