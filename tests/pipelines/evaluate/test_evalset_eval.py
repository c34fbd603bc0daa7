"""End to end on a tiny set: evalset (deterministic, resumable) → eval (per-row failures) → report."""

import json
import shutil
from html.parser import HTMLParser

import pytest

from headveil.common.errors import HeadVeilError
from headveil.common.images import read_image, write_image
from headveil.pipelines.evaluate.evalset import EvalSetCommand, read_rows, run_evalset
from headveil.pipelines.evaluate.evaluate import EvalCommand, run_eval
from headveil.pipelines.evaluate.report import ReportCommand, write_report

pytestmark = [pytest.mark.faces, pytest.mark.slow]

METHODS = ("blur:sigma=1.0", "mask")


def _cfg(out, **kw):
    return EvalSetCommand(out=out, subjects=3, views=(0.0, 20.0), lights=("front",), methods=METHODS,
                         image_size=192, **kw)


@pytest.fixture(scope="module")
def evalset(tmp_path_factory):
    out = tmp_path_factory.mktemp("sets") / "set"
    res = run_evalset(_cfg(out, meshes=True))
    assert res == {"out": out, "rows": 3 * 2 * 3, "new": 18, "failed": 0, "failed_subjects": {}}
    return out


def test_evalset_rows_and_determinism(evalset, tmp_path):
    rows = read_rows(evalset)
    orig = [r for r in rows if r.method == "original"]
    assert len(orig) == 6 and all(len(r.landmarks68) == 68 for r in orig)
    assert {r.method_label for r in rows} == {"original", "blur:sigma=1.0", "mask"}
    assert all((evalset / r.files["mesh"]["path"]).is_file() for r in orig)
    again = run_evalset(_cfg(tmp_path / "again", workers=2))  # other worker count, same pixels
    sums = {r.id: r.files["image"]["sha256"] for r in rows}
    assert {r.id: r.files["image"]["sha256"] for r in read_rows(again["out"])} == sums
    # every line is a typed row that round-trips
    import json as _json

    from headveil.pipelines.evaluate.evalset import EvalSetRow

    first = _json.loads((evalset / "evalset.jsonl").read_text().splitlines()[0])
    assert first["schema"] == EvalSetRow.SCHEMA and EvalSetRow.from_json(first).to_json() == first


def test_evalset_resumes(evalset, tmp_path):
    copy = tmp_path / "copy"
    shutil.copytree(evalset, copy)
    victim = next(r for r in read_rows(copy) if r.method == "mask")
    (copy / victim.files["image"]["path"]).unlink()
    res = run_evalset(_cfg(copy, meshes=True))
    assert res["new"] == 1 and res["rows"] == 18
    assert (copy / victim.files["image"]["path"]).is_file()
    with pytest.raises(HeadVeilError, match="resume"):
        run_evalset(EvalSetCommand(out=copy, subjects=3, seed=5))
    with pytest.raises(HeadVeilError, match="unknown light"):
        run_evalset(EvalSetCommand(out=tmp_path / "x", lights=("disco",)))


def test_eval_and_report(evalset, tmp_path):
    work = tmp_path / "work"
    shutil.copytree(evalset, work)
    broken = next(r for r in read_rows(work) if r.method == "blur")
    (work / broken.files["image"]["path"]).write_bytes(b"not a png")
    m = run_eval(EvalCommand(folder=work, classifiers=("svm",), lambdas=(1.0,)))
    assert [f["id"] for f in m["failures"]] == [broken.id] and m["failures"][0]["stage"] == "read"
    for rec in ("dlib", "sface"):
        r = m["recognizers"][rec]
        mask, blur = r["methods"]["mask"], r["methods"]["blur:sigma=1.0"]
        assert mask["n"] == 6 and blur["n"] == 5
        assert mask["dis_mean"] > 2 * blur["dis_mean"]          # a solid fill is far from the original
        assert blur["verification_rate"]["own"] == 1.0         # a 1 px blur keeps identity
        assert mask["detectability"] == 0.0 and r["methods"]["original"]["detectability"] > 0.5
        assert r["calibration"]["n_genuine"] == 3 and r["calibration"]["n_impostor"] == 12
        assert blur["psnr"] > 30 and mask["ssim_face"] < 0.2
        assert blur["topk"]["svm/lambda=1"]["top1"] >= mask["topk"]["svm/lambda=1"]["top1"]
    assert (work / "eval" / "rows.csv").read_text().count("\n") == 18  # header + 17 readable images
    assert json.loads((work / "eval" / "manifest.json").read_text())["command"] == "headveil eval"

    report = write_report(ReportCommand(folder=work))
    tags = []

    class P(HTMLParser):
        def handle_starttag(self, tag, attrs):
            tags.append((tag, dict(attrs)))

    P().feed(report.read_text())
    imgs = [a["src"] for t, a in tags if t == "img"]
    assert len(imgs) >= 2 + 4 * 3 - 1 and all(s.startswith("data:image/png;base64,") for s in imgs)
    assert sum(t == "table" for t, _ in tags) == 3  # two recognizers + the image grid (one cell unreadable)


def test_eval_pairs_folder(tmp_path):
    import skimage.data

    from headveil.render.image_ops import gaussian_blur

    img = skimage.data.astronaut()
    (tmp_path / "original").mkdir()
    (tmp_path / "protected").mkdir()
    write_image(tmp_path / "original" / "astro.png", img)
    write_image(tmp_path / "protected" / "astro.png", gaussian_blur(img, [150, 50, 300, 220], 2.0))
    write_image(tmp_path / "original" / "lonely.png", img[::2, ::2].copy())
    m = run_eval(EvalCommand(folder=tmp_path, utility=False))
    assert m["mode"] == "pairs" and [f["id"] for f in m["failures"]] == ["lonely"]
    blur = m["recognizers"]["dlib"]["methods"]["protected"]
    assert blur["n"] == 1 and blur["verification_rate"] == {"own": 1.0}  # no calibration on real pairs
    assert read_image(tmp_path / "protected" / "astro.png").shape == img.shape
    with pytest.raises(HeadVeilError, match="neither an evaluation set"):
        run_eval(EvalCommand(folder=tmp_path / "original"))


def test_report_needs_eval(tmp_path):
    with pytest.raises(HeadVeilError, match="headveil eval"):
        write_report(ReportCommand(folder=tmp_path))
