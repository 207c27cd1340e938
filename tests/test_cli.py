"""The main job: python -m sklearn_gmnm."""

import numpy as np
import pandas as pd
import pytest

from sklearn_gmnm.cli import infer_task, main


@pytest.fixture
def mixed_csv(tmp_path):
    rng = np.random.default_rng(0)
    n = 90
    frame = pd.DataFrame(
        {
            "size": rng.uniform(10, 100, n),
            "rooms": rng.integers(1, 6, n).astype(float),
            "town": rng.choice(["a", "b", "c"], n),
        }
    )
    frame["price"] = (
        3 * frame["size"] + 10 * (frame["town"] == "a") + rng.normal(0, 5, n)
    )
    frame["sold"] = np.where(frame["price"] > frame["price"].median(), "yes", "no")
    frame.loc[[3, 7], "rooms"] = np.nan  # missing numbers
    frame.loc[[5], "town"] = np.nan  # a missing category
    frame.loc[[11], "price"] = np.nan  # a missing target: the row is dropped
    path = tmp_path / "houses.csv"
    frame.to_csv(path, index=False)
    return path


@pytest.mark.parametrize(
    "target, task, metric",
    [("price", "regression", "R^2"), ("sold", "classification", "accuracy")],
)
def test_csv_end_to_end(mixed_csv, tmp_path, capsys, target, task, metric):
    plot = tmp_path / "curves.png"
    code = main(
        [
            "--csv",
            str(mixed_csv),
            "--target",
            target,
            "--folds",
            "2",
            "--plot",
            str(plot),
        ]
    )
    out = capsys.readouterr().out
    assert code == 0
    assert f"task: {task}" in out
    for model in ("GMNM", "MLP", "HistGradientBoosting"):
        assert model in out
    assert metric in out
    assert plot.stat().st_size > 0
    if target == "price":
        assert "Dropping 1 rows" in out


@pytest.mark.parametrize(
    "argv, message",
    [
        (["--csv", "nowhere.csv", "--target", "y"], "no such file"),
        (["--csv", "{csv}", "--target", "colour"], "no column 'colour'"),
        (["--csv", "{csv}"], "go together"),
        (["--folds", "1"], "at least 2"),
        # 89 rows with a target: more folds than rows (regression), or than the
        # members of every class (classification)
        (["--csv", "{csv}", "--target", "price", "--folds", "90"], "--folds 90"),
        (["--csv", "{csv}", "--target", "sold", "--folds", "60"], "--folds 60"),
    ],
)
def test_clear_errors(mixed_csv, capsys, argv, message):
    argv = [a.replace("{csv}", str(mixed_csv)) for a in argv]
    assert main(argv) == 2
    assert message in capsys.readouterr().err


def test_unreadable_file(tmp_path, capsys):
    path = tmp_path / "binary.csv"
    path.write_bytes(b"\xff\xfe\x00\x01" * 50)
    assert main(["--csv", str(path), "--target", "y"]) == 2
    assert "could not be read" in capsys.readouterr().err


def test_task_inference():
    assert infer_task(pd.Series(["a", "b"] * 10)) == "classification"
    assert infer_task(pd.Series([0, 1] * 50)) == "classification"
    assert infer_task(pd.Series(np.arange(100))) == "regression"
    assert infer_task(pd.Series(np.linspace(0, 1, 100))) == "regression"


def test_missing_matplotlib_is_a_clear_message(
    mixed_csv, tmp_path, capsys, monkeypatch
):
    import sys

    monkeypatch.setitem(sys.modules, "matplotlib", None)  # import matplotlib now fails
    plot = tmp_path / "curves.png"
    code = main(
        [
            "--csv",
            str(mixed_csv),
            "--target",
            "sold",
            "--folds",
            "2",
            "--plot",
            str(plot),
        ]
    )
    assert code == 0  # the table is still printed
    assert "matplotlib is not installed" in capsys.readouterr().out
    assert not plot.exists()
