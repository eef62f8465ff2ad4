"""The README's generated blocks: they match the committed results, and they follow the results."""
from __future__ import annotations

import shutil
from pathlib import Path

import pandas as pd
import pytest

from ifdd_bench.errors import BenchError
from ifdd_bench.reports import readme
from ifdd_bench.reports.render import render_report

ROOT = Path(__file__).resolve().parents[1]
DEFAULTS = dict(model="ifdd_tiny_pretext", variants=("baseline", "full", "gap"), dataset="synth", folds=(1,),
                seeds=(0,))


@pytest.fixture(scope="module")
def committed(tmp_path_factory):
    """The committed results/ and runs/ rendered (tables and CSVs, no plots) into a temporary folder."""
    out = tmp_path_factory.mktemp("report")
    return render_report(ROOT / "results", ROOT / "runs", out, formats="md", plots=False), out


def test_committed_readme_blocks_match_the_generator(committed):
    """README.md's two blocks are exactly what `ifdd-bench report --readme README.md` writes today."""
    from ifdd_bench.readme_models import readme_blocks

    result, out = committed
    text = (ROOT / "README.md").read_text(encoding="utf-8")
    blocks = readme_blocks(result, link_dir="results/report")
    for (start, end), body in blocks.items():
        assert readme.block_text(text, start, end) == body, (
            f"README.md block {start} is stale: run `{readme.README_COMMAND}` and commit README.md")
    headline = blocks[(readme.HEADLINE_START, readme.HEADLINE_END)]
    assert (ROOT / "results/report/plots" / f"{readme.HEADLINE_FIGURE}.png").is_file()
    assert str(out) not in headline and str(ROOT) not in headline  # no absolute paths
    assert readme_blocks(result, link_dir="results/report") == blocks  # same inputs, same bytes


def test_replace_block_keeps_everything_outside_the_markers():
    text = "top\n<!-- s -->\nold\nlines\n<!-- e -->\nbottom\n"
    assert readme.replace_block(text, "<!-- s -->", "<!-- e -->", "new") == "top\n<!-- s -->\nnew\n<!-- e -->\nbottom\n"
    assert readme.block_text(text, "<!-- s -->", "<!-- e -->") == "old\nlines\n"


@pytest.mark.parametrize("text, marker, words", [
    ("a\n<!-- e -->\n", "<!-- s -->", "is missing"),
    ("a\n<!-- s -->\nb\n", "<!-- e -->", "is missing"),
    ("<!-- s -->\n<!-- s -->\n<!-- e -->\n", "<!-- s -->", "occurs 2 times"),
    ("<!-- e -->\nb\n<!-- s -->\n", "<!-- e -->", "comes before"),
])
def test_replace_block_errors_name_file_and_marker(text, marker, words):
    with pytest.raises(BenchError, match=words) as err:
        readme.replace_block(text, "<!-- s -->", "<!-- e -->", "new", path="docs/X.md")
    assert "docs/X.md" in str(err.value) and marker in str(err.value)


def test_update_readme_leaves_a_file_without_markers_untouched(committed, tmp_path):
    from ifdd_bench.readme_models import update_readme

    result, out = committed
    (out / "plots").mkdir(exist_ok=True)
    (out / "plots" / f"{readme.HEADLINE_FIGURE}.png").write_bytes(b"png")
    path = tmp_path / "README.md"
    original = f"# title\n{readme.HEADLINE_START}\nold\n{readme.HEADLINE_END}\nno model table here\n"
    path.write_text(original, encoding="utf-8")
    with pytest.raises(BenchError, match="model-table") as err:
        update_readme(path, result, out)
    assert str(path) in str(err.value)
    assert path.read_text(encoding="utf-8") == original

    path.write_text(original + f"{readme.MODEL_TABLE_START}\n{readme.MODEL_TABLE_END}\ntail\n", encoding="utf-8")
    assert update_readme(path, result, out) == ["ablation-results", "model-table"]
    new = path.read_text(encoding="utf-8")
    assert new.startswith("# title\n") and new.endswith(f"{readme.MODEL_TABLE_END}\ntail\n")
    assert str(out) not in new and "/plots/bars_uar_war.png)" in new  # linked relative to the README
    assert update_readme(path, result, out) == []  # already up to date: nothing changes


def _headline(results_dir: Path, out: Path) -> str:
    """The headline of a results folder with no run folders (so no clip-level table): fast."""
    result = render_report(results_dir, results_dir / "no-runs", out, formats="md", plots=False)
    return readme.headline_markdown(result, **DEFAULTS)


def test_headline_follows_the_results(tmp_path):
    """A difference that becomes significant, and pairs that reach 5, change the generated sentences.

    Starts from a frozen results file (tests/fixtures/readme_runs.csv: the committed runs.csv of
    2026-12-05, 3 seeds of the expression-motion backbone), so retraining leaves the test as it is."""
    base = tmp_path / "base"
    base.mkdir()
    shutil.copy(ROOT / "tests" / "fixtures" / "readme_runs.csv", base / "runs.csv")
    before = _headline(base, tmp_path / "r0")
    assert "no difference to `full` survives Holm correction (smallest adjusted p 0.522, GAP head)" in before
    assert "intervals need 5 pairs, and the most any entry has is 3" in before

    runs = pd.read_csv(base / "runs.csv")
    full = runs[(runs["model"] == "ifdd_tiny_pretext") & (runs["variant"] == "full")].set_index("seed")
    gap = (runs["model"] == "ifdd_tiny_pretext") & (runs["variant"] == "gap")
    # GAP a steady 16 points below full in every seed: the paired t-test now leaves no doubt
    runs.loc[gap, "uar"] = [full.loc[s, "uar"] - 0.16 + d for s, d in zip(runs.loc[gap, "seed"], (1e-3, -1e-3, 0.0))]
    changed = tmp_path / "changed"
    changed.mkdir()
    runs.to_csv(changed / "runs.csv", index=False)
    after = _headline(changed, tmp_path / "r1")
    assert "no difference to `full` survives" not in after
    assert "1 of 6 differences to `full` survives Holm correction: GAP head (−16.00 pp, adjusted p <0.001)" in after

    # two more seeds of every default-model row: 5 pairs, so t-intervals exist
    pretext = runs[runs["model"] == "ifdd_tiny_pretext"]
    extra = [pretext.assign(seed=seed, run_id=pretext["run_id"] + f"-x{seed}") for seed in (3, 4)]
    pd.concat([runs, *extra]).to_csv(changed / "runs.csv", index=False)
    five = _headline(changed, tmp_path / "r2")
    assert "with 5 paired runs (1 fold × 5 seeds)" in five
    assert "6 comparisons have a 95 % t-interval (n ≥ 5)" in five


def test_model_table_leaves_out_models_registered_by_tests():
    """Under pytest-xdist a worker may have imported test modules that register their own models; the
    README's table lists the toolkit's models only, whatever else the process registered."""
    from dataclasses import dataclass

    from ifdd_bench.readme_models import model_table_markdown
    from ifdd_bench.registry import _REGISTRY, register_model

    @dataclass(frozen=True)
    class ProbeConfig:
        num_classes: int = 7
        frames: int = 4
        img_size: int = 8

    @register_model("_readme_probe", config_cls=ProbeConfig, description="test only")
    def _probe(cfg):  # pragma: no cover - never built
        raise AssertionError
    try:
        assert "_readme_probe" not in model_table_markdown()
    finally:
        _REGISTRY.pop("_readme_probe", None)


@pytest.mark.parametrize("readme_text, extra, message", [
    (None, [], "no such file"),
    ("# no markers\n", [], "ablation-results:start"),
    ("<!-- ablation-results:start -->\n<!-- ablation-results:end -->\n<!-- model-table -->\n<!-- /model-table -->\n",
     ["--no-plots"], "needs the plots"),
])
def test_report_readme_is_checked_before_anything_is_rendered(tmp_path, readme_text, extra, message):
    """A --readme that cannot be updated ends in one message, exit 2, and no report folder is written."""
    from click.testing import CliRunner

    import cli

    target = tmp_path / "README.md"
    if readme_text is not None:
        target.write_text(readme_text)
    out = CliRunner().invoke(cli.main, ["report", "--results-dir", str(ROOT / "results"), "--runs-dir",
                                        str(ROOT / "runs"), "--out-dir", str(tmp_path / "report"), "--readme",
                                        str(target), *extra])
    flat = "".join(out.output.split())  # rich may wrap anywhere in a long path
    assert out.exit_code == 2 and message.replace(" ", "") in flat and "Traceback" not in out.output
    assert not (tmp_path / "report").exists()
    assert readme_text is None or target.read_text() == readme_text
