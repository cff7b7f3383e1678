import numpy as np
import pytest

from orca.reporting.comparison import best_methods, csv_text, markdown_table, summarise, win_counts
from orca.reporting.profile import performance_ratios, plot_profile, profile_curves
from orca.reporting.report import write_report

RUNS = [
    # task a: error (lower better); orca best
    *({"task": "a", "method": "orca", "seed": s, "metric": "error_rate", "value": v,
       "lower_is_better": True} for s, v in enumerate([10.0, 12.0, 14.0])),
    *({"task": "a", "method": "scratch", "seed": s, "metric": "error_rate", "value": v,
       "lower_is_better": True} for s, v in enumerate([24.0, 24.0, 24.0])),
    # task b: a higher-is-better score; scratch best, orca half as good
    {"task": "b", "method": "orca", "seed": 0, "metric": "acc", "value": 0.4,
     "lower_is_better": False},
    {"task": "b", "method": "scratch", "seed": 0, "metric": "acc", "value": 0.8,
     "lower_is_better": False},
    # task c: a tie
    {"task": "c", "method": "orca", "seed": 0, "metric": "mae", "value": 2.0,
     "lower_is_better": True},
    {"task": "c", "method": "scratch", "seed": 0, "metric": "mae", "value": 2.0,
     "lower_is_better": True},
]  # fmt: skip


def test_summaries_winners_and_tables_by_hand():
    summary = summarise(RUNS)
    a_orca = next(r for r in summary if r.task == "a" and r.method == "orca")
    assert (a_orca.mean, a_orca.std, a_orca.n_seeds) == (12.0, 2.0, 3)
    assert best_methods(summary) == {"a": ["orca"], "b": ["scratch"], "c": ["orca", "scratch"]}
    assert win_counts(summary) == {"orca": 2, "scratch": 2}
    table = markdown_table(summary)
    assert "| a | error_rate ↓ | **12 ± 2** | 24 ± 0 |" in table
    assert "| b | acc ↑ | 0.4 ± 0 | **0.8 ± 0** |" in table
    assert "| **wins** | | 2 | 2 |" in table
    assert (
        csv_text(summary).splitlines()[0] == "task,method,metric,mean,std,n_seeds,lower_is_better"
    )


def test_performance_ratios_and_profile_by_hand():
    tasks, methods, ratios = performance_ratios(summarise(RUNS))
    assert tasks == ["a", "b", "c"] and methods == ["orca", "scratch"]
    np.testing.assert_allclose(ratios, [[1.0, 2.0], [2.0, 1.0], [1.0, 1.0]])
    curves = profile_curves(ratios, np.array([1.0, 1.5, 2.0]))
    np.testing.assert_allclose(curves, [[2 / 3, 2 / 3, 1.0], [2 / 3, 2 / 3, 1.0]])


def test_a_missing_result_or_a_zero_best_gives_an_infinite_ratio(tmp_path):
    runs = [
        {"task": "z", "method": "orca", "seed": 0, "metric": "error_rate", "value": 0.0,
         "lower_is_better": True},
        {"task": "z", "method": "fpt", "seed": 0, "metric": "error_rate", "value": 5.0,
         "lower_is_better": True},
        {"task": "y", "method": "orca", "seed": 0, "metric": "error_rate", "value": 5.0,
         "lower_is_better": True},
    ]  # fmt: skip
    summary = summarise(runs)
    _, methods, ratios = performance_ratios(summary)
    assert methods == ["fpt", "orca"]
    assert np.isinf(ratios[0, 0]) and np.isinf(ratios[1, 0])  # fpt: missing on y, 0-best on z
    png = plot_profile(summary, tmp_path / "profile.png", "test")
    assert png.read_bytes()[:4] == b"\x89PNG"


def test_malformed_runs_are_named():
    with pytest.raises(ValueError, match=r"lacks field\(s\) \['value'"):
        summarise([{"task": "a", "method": "m", "seed": 0, "metric": "x"}])


def test_the_report_files_are_written_together(tmp_path):
    from orca.reporting.report import write_report

    report = write_report(RUNS, tmp_path / "reports", title="t", context={"machine": "test"})
    text = report.markdown.read_text()
    assert text.startswith("# t\n") and "- **machine:** test" in text
    assert "**12 ± 2**" in text and "![performance profile](comparison-profile.png)" in text
    # The findings section states its level; orca against scratch is 3 (task, seed) pairs
    # to 1 (a: seeds 0-2; b: seed 0), c tied: sign test p = 2 * 5/16 = 0.625, undecided.
    assert "only where a paired test shows it at α = 0.05;" in text
    assert (
        "| not distinguishable | pretrained vs random body: orca better in 3 of 5 (task, seed) "
        "pairs, scratch in 1, 1 tied; sign test p = 0.62 (on task means: orca 1, scratch 1, "
        "1 tied) |"
    ) in text
    assert report.csv.read_text().count("\n") == 1 + 6
    assert report.profile.read_bytes()[:4] == b"\x89PNG"
    assert sorted(p.name for p in (tmp_path / "reports").iterdir()) == [
        "comparison-profile.png",
        "comparison.csv",
        "comparison.md",
    ]


def test_ablation_sections_by_hand(tmp_path):
    from orca.reporting.ablations import alignment_convergence, body_modality, data_limited

    convergence = [
        {"align_epochs": k, "final_distance": d, "value": v, "metric": "error_rate"}
        for k, d, v in [(0, 9.0, 30.0), (0, 8.0, 28.0), (5, 5.0, 20.0), (10, 2.0, 12.0)]
    ]
    text = alignment_convergence(convergence, tmp_path)
    assert "| 0 | 8.5 ± 0.71 | 29 ± 1.4 |" in text
    assert "over 4 runs: 1.000" in text  # distance and error fall together: rank corr. 1
    assert (tmp_path / "ablation-alignment.png").read_bytes()[:4] == b"\x89PNG"
    limited = [
        {"train_fraction": f, "method": m, "value": v, "metric": "error_rate"}
        for f, m, v in [(0.1, "orca", 30.0), (1.0, "orca", 10.0), (0.1, "scratch", 50.0)]
    ]
    text = data_limited(limited, tmp_path)
    assert "| 0.1 | 30 ± 0 | 50 ± 0 |" in text and "| 1 | 10 ± 0 | — |" in text
    text = body_modality(
        [{"task": "digits", "backbone": "minilm-l6", "value": 5.0, "metric": "error_rate"}],
        {"swin-base": "no pretrained weights offline"},
    )
    assert "| digits | minilm-l6 | 5 ± 0 |" in text
    assert "**swin-base not run:** no pretrained weights offline" in text


# --- markdown with its images inlined (the Prefect artifact's report) ---


def test_inline_images_round_trips_a_local_png_and_leaves_other_links(tmp_path):
    import base64

    from orca.reporting.embed import inline_images

    png = b"\x89PNG\r\n\x1a\n" + bytes(range(64))  # the bytes are carried, not parsed
    (tmp_path / "plot.png").write_bytes(png)
    (tmp_path / "notes.txt").write_text("not an image")
    markdown = (
        "a ![profile](plot.png) b ![web](https://example.org/x.png) "
        "c ![gone](missing.png) d ![text](notes.txt) e ![again](plot.png)"
    )
    out = inline_images(markdown, tmp_path)
    encoded = base64.b64encode(png).decode()
    assert out == (
        f"a ![profile](data:image/png;base64,{encoded}) b ![web](https://example.org/x.png) "
        f"c ![gone](missing.png) d ![text](notes.txt) e ![again](data:image/png;base64,{encoded})"
    )
    assert inline_images(out, tmp_path) == out  # a data URI is not inlined again


def test_data_uri_names_the_types_it_can_inline(tmp_path):
    from orca.reporting.embed import data_uri

    (tmp_path / "x.bmp").write_bytes(b"BM")
    with pytest.raises(ValueError, match=r"x\.bmp: cannot inline an image of type '\.bmp'"):
        data_uri(tmp_path / "x.bmp")


def test_the_comparison_report_markdown_inlines_into_a_data_uri(tmp_path):
    from orca.reporting.embed import inline_images

    runs = [
        {"task": t, "method": m, "seed": s, "metric": "error", "value": v, "lower_is_better": True}
        for t, values in {"a": (0.1, 0.3), "b": (0.2, 0.1)}.items()
        for s in (0, 1)
        for m, v in zip(("orca", "scratch"), values, strict=True)
    ]
    written = write_report(runs, tmp_path, title="t", context={})
    out = inline_images(written.markdown.read_text(), tmp_path)
    assert "](comparison-profile.png)" in written.markdown.read_text()
    assert "](comparison-profile.png)" not in out
    assert f"![performance profile]({data_uri_of(written.profile)})" in out


def data_uri_of(path):
    import base64

    return "data:image/png;base64," + base64.b64encode(path.read_bytes()).decode()
