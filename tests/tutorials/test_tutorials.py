import re
from pathlib import Path

import pytest

TUTORIALS = Path(__file__).resolve().parents[2] / "tutorials"


def _code_cells(path: Path) -> str:
    return "\n".join(re.findall(r"```\{code-cell\}[^\n]*\n(.*?)```", path.read_text(), flags=re.S))


@pytest.mark.slow
def test_quickstart_runs_at_small_settings(monkeypatch, tmp_path):
    monkeypatch.chdir(tmp_path)
    code = _code_cells(TUTORIALS / "quickstart.md")
    assert "st.tl.fit" in code
    # the tutorial's first cell sets its size and time budget; run it smaller
    code = re.sub(r"SIZE_UM, MAX_TIME = \d+, \d+", "SIZE_UM, MAX_TIME = 400, 5", code)
    namespace: dict = {}
    exec(compile(code, "quickstart.md", "exec"), namespace)
    assert namespace["pred"].n_obs == namespace["truth"].n_obs > 0
    assert len(namespace["pcc"]) == len(namespace["model"].genes)
