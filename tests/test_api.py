import subprocess
import sys

import emimic


def test_top_level_api_names_resolve() -> None:
    for name in emimic.__all__:
        assert getattr(emimic, name) is not None, name


def test_import_is_light() -> None:
    code = "import sys, emimic; print('torch' in sys.modules, 'lightning' in sys.modules)"
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, check=True).stdout
    assert out.split() == ["False", "False"]
