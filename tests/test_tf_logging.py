"""TensorFlow's CUDA plugin-registration noise is filtered at import; other stderr lines pass through."""

import os
import re
import subprocess
import sys

ROOT = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))


def _stderr(code: str) -> str:
    env = {**os.environ, "TF_CPP_MIN_LOG_LEVEL": "0"}  # INFO lines too: they must pass the filter
    proc = subprocess.run([sys.executable, "-c", code], cwd=ROOT, env=env, capture_output=True, text=True,
                          timeout=300, stdin=subprocess.DEVNULL)
    assert proc.returncode == 0, proc.stderr
    return proc.stderr


def test_import_drops_the_cuda_registration_errors_and_keeps_the_rest():
    plain = _stderr("import tensorflow")
    assert "Unable to register cuDNN factory" in plain  # what TF 2.14 prints on this CPU-only machine
    quiet = _stderr("import sys\nfrom tff_prune.tf_logging import import_tensorflow\nimport_tensorflow()\n"
                    "import os; os.write(2, b'after the import\\n')")
    assert "Unable to register" not in quiet and "after the import" in quiet
    # every other line passes through (which lines TF prints depends on the CPU: oneDNN's notice needs AVX-512)
    assert "Could not find cuda drivers on your machine" in plain
    assert _messages(quiet) - {"after the import"} == {m for m in _messages(plain) if "Unable to register" not in m}


def _messages(stderr: str) -> set:
    """stderr lines without TF's leading timestamp (``2026-12-02 17:46:15.481403: ``)."""
    return {re.sub(r"^\d{4}-\d\d-\d\d \d\d:\d\d:\d\d\.\d+: ", "", line) for line in stderr.splitlines()}


def test_a_celeba_run_starts_without_the_cuda_registration_errors(tmp_path):
    """--dataset celeba validates its attribute against TFF's list (TF, TFF and jax imported): still filtered."""
    env = {k: v for k, v in os.environ.items() if k != "TF_CPP_MIN_LOG_LEVEL"}
    proc = subprocess.run([sys.executable, "scripts/run_simulation.py", "--dataset", "celeba", "--celeba-attribute",
                           "bogus", "--output-dir", str(tmp_path / "run")], cwd=ROOT, env=env, capture_output=True,
                          text=True, timeout=300, stdin=subprocess.DEVNULL)
    assert proc.returncode == 2
    assert "--celeba-attribute: unknown CelebA attribute 'bogus'" in proc.stderr
    assert "Unable to register" not in proc.stderr and "cudart_stub" not in proc.stderr, proc.stderr


def test_the_magnitude_runs_size_lookup_imports_tensorflow_filtered(tmp_path):
    """tff-prune-reproduce builds the model in its own process to size the magnitude run: still filtered."""
    (tmp_path / "femnist_cnn" / "inherit").mkdir(parents=True)
    (tmp_path / "femnist_cnn" / "inherit" / "summary.json").write_text('{"final_params": 21488}')
    env = {k: v for k, v in os.environ.items() if k != "TF_CPP_MIN_LOG_LEVEL"}
    code = ("from tff_prune.experiments import EXPERIMENTS, magnitude_sparsity\n"
            f"print(magnitude_sparsity(EXPERIMENTS['femnist_cnn'], {str(tmp_path)!r}, 'femnist_cnn'))")
    proc = subprocess.run([sys.executable, "-c", code], cwd=ROOT, env=env, capture_output=True, text=True,
                          timeout=300, stdin=subprocess.DEVNULL)
    assert proc.returncode == 0, proc.stderr
    assert 0.0 < float(proc.stdout) < 1.0
    assert "Unable to register" not in proc.stderr and "cudart_stub" not in proc.stderr, proc.stderr
