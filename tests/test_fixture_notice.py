"""Without ../shared beside the checkout, the fixture tests skip: pytest's header and summary must say so."""
import shutil
import subprocess
import sys
from pathlib import Path


def test_run_without_shared_names_the_skipped_fixture_tests(tmp_path):
    checkout = tmp_path / "checkout"                      # no ../shared next to this one
    (checkout / "tests").mkdir(parents=True)
    shutil.copy(Path(__file__).with_name("conftest.py"), checkout / "tests" / "conftest.py")
    (checkout / "tests" / "test_x.py").write_text(
        "import pytest\n\n"
        "def test_needs_dog(dog_pair):\n    pass\n\n"
        "def test_other_skip():\n    pytest.skip('no browser')\n\n"
        "def test_plain():\n    pass\n")
    r = subprocess.run([sys.executable, "-m", "pytest", "-q", "-p", "no:cacheprovider", "tests"], cwd=checkout,
                       capture_output=True, text=True, timeout=300)
    assert r.returncode == 0, r.stdout + r.stderr
    assert "1 tests skipped because" in r.stdout and str(tmp_path / "shared") in r.stdout, r.stdout
    assert "1 passed, 2 skipped" in r.stdout
