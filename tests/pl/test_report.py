"""st.pl.report and `histo2st report`: one self-contained HTML page, readable offline."""

import re
import shutil
import subprocess

import pytest
import spatialdata as sd

import histo2st as st
from histo2st.cli import main


@pytest.fixture(scope="module")
def predicted(tiny_pixnet):
    sdata = st.datasets.synthetic_tissue(size_um=800, microns_per_pixel=4.0, n_genes=8, seed=8)
    st.pp.normalize(sdata)
    settings = {**tiny_pixnet, "crop_px": 64, "batch_size": 4}
    st.tl.fit(sdata, "pixnet", epochs=1, microns_per_pixel=8.0, progress=False, n_seeds=2, **settings)
    st.tl.predict(sdata)
    return sdata


def test_the_page_holds_every_part_with_images_embedded(predicted, tmp_path):
    st.tl.evaluate(predicted)
    path = st.pl.report(predicted, tmp_path / "r" / "report.html")
    page = path.read_text()
    parts = [
        "<h2>Model</h2>",
        "Accuracy at the measured spots",
        "MSE mean predictor",
        "coverage@80",
        "Which genes to believe",
        "The 3 best genes by PCC",
        "Uncertainty (std)",
        "Protocol of every number",
    ]
    assert [part for part in parts if part not in page] == []
    images = re.findall(r"<img [^>]*src='([^']*)'", page)
    assert len(images) >= 5
    assert all(src.startswith("data:image/png;base64,") for src in images)
    assert not re.search(r"(src|href)=['\"]?(https?:|//)", page)  # nothing to fetch: opens offline
    assert not [p for p in path.parent.iterdir() if p.name.startswith(".")]  # no temporary file left
    with pytest.raises(FileExistsError, match="overwrite=True"):
        st.pl.report(predicted, path)
    with pytest.raises(ValueError, match="end `out` with '.html'"):
        st.pl.report(predicted, tmp_path / "report.pdf")


def test_the_command_line_evaluates_a_store_and_writes_the_page(predicted, tmp_path, capsys):
    st.tl.predict(predicted, key_added="cli")  # not evaluated
    store = tmp_path / "s.zarr"
    st.io.write_zarr(predicted, store)
    out = tmp_path / "report.html"
    assert main(["report", str(store), "--out", str(out), "--pred-key", "cli"]) == 0
    assert "PCC@M" in out.read_text()
    assert "evaluation_pcc" not in sd.read_zarr(store).tables["cli_spots"].var  # the store is left as it was
    assert main(["report", str(store), "--out", str(out)]) == 1  # exists: refused without --overwrite
    capsys.readouterr()


@pytest.mark.slow
def test_the_page_renders_in_headless_chromium(predicted, tmp_path):
    names = ("chromium", "chromium-browser", "google-chrome")
    browser = next((shutil.which(n) for n in names if shutil.which(n)), None)
    if browser is None:
        pytest.skip("No Chromium on this machine (chromium, chromium-browser or google-chrome on PATH).")
    st.tl.evaluate(predicted)
    path = st.pl.report(predicted, tmp_path / "report.html", overwrite=True)
    shot = tmp_path / "shot.png"
    subprocess.run([browser, "--headless", "--disable-gpu", "--no-sandbox", f"--screenshot={shot}",
                    "--window-size=1200,2000", path.as_uri()], check=True, timeout=120)  # fmt: skip
    assert shot.stat().st_size > 20_000
