"""One installed namespace: `import kesheng`, the public API, `kesheng --version`."""

import subprocess
import sys

import kesheng


def test_public_api_is_importable_from_kesheng():
    from kesheng import Prediction, TagFileOptions, load_model, tag_file  # noqa: F401

    assert kesheng.__version__ and kesheng.__version__ != "0+unknown"
    assert set(kesheng.__all__) >= {"load_model", "Prediction", "tag_file", "build_report"}


def test_import_kesheng_stays_cheap():
    code = "import sys, kesheng; print(any(m.split('.')[0] in ('pandas', 'torch', 'sklearn') for m in sys.modules))"
    assert subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, check=True).stdout.strip() == "False"


def test_a_users_models_module_does_not_shadow_kesheng(tmp_path):
    (tmp_path / "models.py").write_text("raise SystemExit('the user module was imported')\n")
    code = "from kesheng import load_model; print(load_model().predict(['等了半小时'])[0].tags)"
    result = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, cwd=tmp_path)
    assert result.returncode == 0, result.stderr


def test_version_option():
    result = subprocess.run([sys.executable, "-m", "kesheng", "--version"], capture_output=True, text=True, check=True)
    assert result.stdout.strip() == f"kesheng {kesheng.__version__}"
