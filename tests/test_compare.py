"""``dqnviz compare``: two fixture snapshots of different games (different action counts)."""

import json
import os

import numpy as np
import pytest

from tests.conftest import make_snapshot
from tests.helpers import make_history_snapshot, run_cli

FAST = ["--filters", "2", "--max-steps", "40", "--quiet"]


@pytest.fixture
def compared(compare_page):
    """The session's compare page of breakout_1 and pong_2 (tests/conftest.py), with FAST's options."""
    return compare_page


def test_page_draws_without_errors(compared):
    from tests.browser import all_plots_drawn, open_report

    with open_report(compared) as check:
        count = check.page.evaluate("() => window.dqnvizDrawAll()")
        plots, drawn = all_plots_drawn(check.page)
        silent = check.page.evaluate("() => document.querySelectorAll('article.card .silent-note').length")
        assert plots == count and drawn == plots and plots >= 4 + 2 * (2 * 3 * 2 - silent)  # 2 images a live card
        assert check.errors == [] and check.requests == []
        cards = check.page.evaluate("""() => Array.from(document.querySelectorAll('article.card'))
            .map(c => [c.dataset.snapshot, c.dataset.layer, c.dataset.filter])""")
        assert len(cards) == 2 * 3 * 2  # snapshots × conv layers × filters
        assert {c[0] for c in cards} == {"breakout_1", "pong_2"}
        assert {c[1] for c in cards} == {"conv1", "conv2", "conv3"}
        assert all(c[2].isdigit() for c in cards)
        weights = check.page.evaluate("() => document.querySelectorAll('[data-weight-filter] img[src^=\"data:image/png\"]').length")
        assert weights == 2 * 32


def test_page_content(compared):
    html = compared.read_text()
    assert "different action sets" in html and "q: representation similarity" in html  # q skipped with reason
    for text in ("Hungarian algorithm", "linear_sum_assignment", "centred kernel alignment", "random net",
                 "Temporal lean", "Effective versus theoretical receptive field", "guided-backprop image"):
        assert text in html
    for figure in ("fig-lean", "fig-erf", "fig-cka", "fig-match"):
        assert f'id="{figure}"' in html
    assert "<script src=" not in html and "<link" not in html  # self-contained
    assert html.count('id="dq-plotly-js"') == 1  # plotly.js embedded exactly once, packed (base.html.j2)


def test_gather_numbers_and_evolution_order(tmp_path, monkeypatch):
    """Same game at several epochs: sorted by epoch, consecutive pairs; a dueling net still compares.
    Each network is let go once the pairs it is in are done: while an epoch plays, of the epochs
    before it only the one it is paired with (the one before) still has its network."""
    import dqnviz.agent
    from dqnviz.report.compare import build_context, gather
    from dqnviz.snapshot import load_snapshot

    # one start (seed 3), moved by scaling kernels: ‖cW₀ − W₀‖ / ‖W₀‖ = |c − 1|
    late = make_snapshot(tmp_path / "breakout_9.keras", "breakout", 9, seed=3, scale={"conv1": 1.5, "fc": 0.8})
    early = make_snapshot(tmp_path / "breakout_2.keras", "breakout", 2, seed=3, scale={"conv1": 1.2})
    dueling = make_snapshot(tmp_path / "breakout_5.keras", "breakout", 5, dueling=True, seed=4)
    snapshots = [load_snapshot(p) for p in (late, dueling, early)]
    for snapshot in snapshots:  # one run's epochs by its identity (a network that differs is no real run's)
        snapshot.meta["run_id"] = "one run"
    by_epoch = sorted(snapshots, key=lambda snapshot: snapshot.meta["epoch"])
    real_play, loaded_before = dqnviz.agent.play_games, []

    def play_games(model, *args, **options):
        turn = [s.model for s in by_epoch].index(model)
        loaded_before.append([s.meta["epoch"] for s in by_epoch[:turn] if s.model is not None])
        return real_play(model, *args, **options)

    monkeypatch.setattr(dqnviz.agent, "play_games", play_games)
    data = gather(snapshots, filters=1, max_steps=24, progress=False, let_go=True)
    assert data.evolution and [p.meta["epoch"] for p in data.played] == [2, 5, 9]
    assert data.pairs == [(0, 1), (1, 2)]
    assert loaded_before == [[], [2], [5]] and all(s.model is None for s in snapshots)
    assert all(start.initial is None and start.change == {} for start in data.start)  # let go with them
    assert [p.network.architecture[:2] for p in data.played] == [(4, False), (4, True), (4, False)]  # read before
    assert data.conv_layers == ["conv1", "conv2", "conv3"]
    assert "q" in data.cka_layers and "fc" in data.cka_layers and "fc_value" not in data.cka_layers
    assert any(view.startswith("fc_value") for view, _ in data.skipped)
    for entry in data.cka:
        assert 0.0 <= entry["value"] <= 1.0 + 1e-9
    for layer, size in zip(data.conv_layers, (8, 20, 36)):  # the squares holding half and 90% of the gradient
        for f in data.fields[layer].values():  # (0 and 0: the centre unit is off on these states)
            assert f["theoretical"] == size and (0 < f["core"] <= f["size"] <= size or f["core"] == f["size"] == 0)
    assert any(f["size"] > 0 for fields in data.fields.values() for f in fields.values())
    assert len(data.matching) == 2 and all(-1 <= m["mean"] <= 1 for m in data.matching)
    for item in data.patterns:
        assert -1 <= item[0] <= 1 and len(item[1]) == 3
    context = build_context(data, {"games": 1, "epsilon": 0.05, "seed": 0, "max_steps": 24, "filters": 1})
    assert context["evolution"] and context["title"].startswith("how the filters evolved")
    assert sum(lean.sum() for lean in data.lean) > 0
    # across the epochs: each layer's distance from its start (the start table's figures) and its
    # CKA with the epoch before on the later epoch's states (the CKA entries), against the epoch
    traces = json.loads(context["figures"]["fig-evolution"])["data"]
    moved = {t["name"]: t for t in traces if t["yaxis"] == "y"}
    similar = {t["name"]: t for t in traces if t["yaxis"] == "y2"}
    assert list(moved) == ["conv1", "conv2", "conv3", "fc"]  # the kernels every snapshot has (q: different heads)
    for layer, trace in moved.items():
        assert trace["x"] == [2, 5, 9]
        assert trace["y"] == pytest.approx([start.movement[layer]["change"] for start in data.start])
    assert moved["conv1"]["y"] == pytest.approx([0.2, 0.0, 0.5], abs=1e-6)
    assert moved["fc"]["y"] == pytest.approx([0.0, 0.0, 0.2], abs=1e-6)
    assert set(similar) == set(data.cka_layers)
    for layer, trace in similar.items():
        assert trace["x"] == [5, 9]
        assert trace["y"] == pytest.approx([e["value"] for pair in ((0, 1), (1, 2)) for e in data.cka
                                           if (e["a"], e["b"], e["on"]) == pair + (pair[1],) and e["layer"] == layer])
    assert sum(t["showlegend"] for t in traces) == len(set(moved) | set(similar))  # a layer is one legend entry
    from dqnviz.report.compare import write_report
    from tests.browser import all_plots_drawn, open_report

    page = write_report(tmp_path / "evolution.html", context)
    assert '<a href="#epochs">across the epochs</a>' in page.read_text()
    with open_report(page) as check:
        count = check.page.evaluate("() => window.dqnvizDrawAll()")
        plots, drawn = all_plots_drawn(check.page)
        assert plots == count == drawn and check.errors == [] and check.requests == []
        assert check.page.evaluate("() => !!document.querySelector('[data-figure=\"fig-evolution\"] .plot-container')")
    assert context["evolution_panels"] == ["moved", "previous"]

    # the CKA drawn is the one on the later epoch's states; --pairs first: each epoch against the
    # first; an epoch that is not a number is left out, a snapshot not measured is a gap, and
    # with fewer than two values there is no line
    from dqnviz.report.compare import _evolution_figure

    data.cka = [{"a": i, "b": i + 1, "on": on, "layer": "conv1", "value": 0.1 * i + (0.3 if on > i else 0.0)}
                for i in (0, 1) for on in (i, i + 1)]
    fig, panels = _evolution_figure(data, ["conv1"])
    assert panels == ["moved", "previous"]
    assert [list(t.y) for t in fig.data if t.yaxis == "y2"] == [[pytest.approx(0.3), pytest.approx(0.4)]]
    data.pairs = [(0, 1), (0, 2)]
    data.cka = [{"a": 0, "b": j, "on": on, "layer": "conv1", "value": 0.5 + j / 10 + (0 if on == j else 0.05)}
                for j in (1, 2) for on in (0, j)]
    fig, panels = _evolution_figure(data, ["conv1", "fc"])
    assert panels == ["moved", "first"]
    assert fig.layout.annotations[1].text == "CKA with the first epoch (2), on this epoch's states"
    (line,) = [t for t in fig.data if t.yaxis == "y2"]
    assert (line.name, list(line.x), list(line.y)) == ("conv1", [5, 9], [0.6, 0.7])
    data.start[1].movement = {}
    fig, _ = _evolution_figure(data, ["conv1", "fc"])
    conv1 = [t for t in fig.data if t.name == "conv1" and t.yaxis == "y"][0]
    assert list(conv1.x) == [2, 5, 9] and list(conv1.y) == [pytest.approx(0.2), None, pytest.approx(0.5)]
    data.played[2].meta["epoch"] = None
    assert _evolution_figure(data, ["conv1", "fc"]) is None  # epochs 2 and 5 left: one value a line


def test_identical_weights_are_maximally_similar(tmp_path, capsys):
    from dqnviz.report.compare import gather
    from dqnviz.snapshot import load_snapshot

    a = make_snapshot(tmp_path / "breakout_1.keras", "breakout", 1, seed=7)
    b = make_snapshot(tmp_path / "breakout_3.keras", "breakout", 3, seed=7)
    twin = load_snapshot(b)
    # as if from another seed: not one start (whose CKA rows "in short" leaves out), only one game
    twin.meta["init_seed"] = 8
    data = gather([load_snapshot(a), twin], filters=1, max_steps=16)
    # every stage that takes long with many snapshots says how far it is (plain lines off a terminal)
    said = capsys.readouterr().err.splitlines()
    assert [line.split(" (")[0] for line in said] == [
        "play breakout_1: 16/16 steps", "filters of breakout_1: 3/3 layers",
        "play breakout_3: 16/16 steps", "filters of breakout_3: 3/3 layers",
        "CKA of breakout_3 with breakout_1: 4/4 passes",  # each network on each one's states
        "CKA of untrained networks, on each snapshot's states: 2/2 snapshots"]
    assert data.matching[0]["mean"] == pytest.approx(1.0, abs=1e-6)
    assert data.baseline[0] < 0.5
    assert all(entry["value"] == pytest.approx(1.0, abs=1e-6) for entry in data.cka)
    # the histogram of matched similarities shows them, in its last bin (plotly's bins are
    # [start, start + size), so a value of exactly 1 would fall past the axis and vanish)
    import json

    from dqnviz.report.compare import build_context

    histogram = json.loads(build_context(data)["figures"]["fig-match"])["data"][0]
    values, bins = histogram["x"], histogram["xbins"]
    if isinstance(values, dict):  # plotly's typed array: {"dtype": ..., "bdata": base64}
        import base64

        values = np.frombuffer(base64.b64decode(values["bdata"]), dtype=values["dtype"])
    values = np.asarray(values)  # plotly 5 writes a plain list
    assert len(values) == len(data.matching[0]["similarities"]) > 0
    last_bin_start = bins["start"] + (round((bins["end"] - bins["start"]) / bins["size"]) - 1) * bins["size"]
    assert np.all((values >= last_bin_start) & (values < bins["end"]))

    # identical weights meet the same states step for step: the page says that the row on the
    # second's states repeats the first's, and "in short" says it once
    from dqnviz.report.compare import write_report

    assert data.played[0].digest == data.played[1].digest
    context = build_context(data, {"games": 1, "epsilon": 0.05, "seed": 0, "max_steps": 16, "filters": 1})
    on_first, on_second = context["cka_rows"]
    assert on_first["same_game"] and on_second["same_game"]
    assert (on_first["repeats"], on_second["repeats"]) == (None, "breakout_1")
    assert on_second["values"] == on_first["values"]
    said = [line for line in context["summary"] if line["head"].startswith("CKA")]
    assert len(said) == 1 and "the same on breakout_3's states, which were these, step for step" in said[0]["text"]
    html = write_report(tmp_path / "c.html", context).read_text()
    assert html.count("breakout_3 met the same states as breakout_1, step for step") == 1


@pytest.mark.parametrize("case", ["one", "missing", "same", "not_snapshot", "bad_filters", "bad_steps"])
def test_bad_inputs_fail_and_write_nothing(tmp_path, capsys, case, breakout_snapshot):
    junk = tmp_path / "junk.keras"
    junk.write_text("not a zip")
    args = {
        "one": [breakout_snapshot],
        "missing": [breakout_snapshot, str(tmp_path / "nope.keras")],
        "same": [breakout_snapshot, breakout_snapshot],
        "not_snapshot": [breakout_snapshot, str(junk)],
        "bad_filters": [breakout_snapshot, str(junk), "--filters", "0"],
        "bad_steps": [breakout_snapshot, str(junk), "--max-steps", "x"],
    }[case]
    out = tmp_path / "out.html"
    before = set(os.listdir(tmp_path))
    assert run_cli(["compare", *args, "--out", str(out), "--quiet"]) != 0
    err = capsys.readouterr().err.strip()
    assert err and len(err.splitlines()) == 1
    assert not out.exists() and set(os.listdir(tmp_path)) == before


def _changed_copy(source, path, game_epoch, layer, delta):
    """A copy of snapshot ``source`` whose ``layer`` kernel has ``delta`` added, saved as ``path``."""
    from dqnviz.snapshot import load_snapshot, save_snapshot

    snapshot = load_snapshot(source)
    model = snapshot.model
    kernel, *rest = model.get_layer(layer).get_weights()
    model.get_layer(layer).set_weights([kernel + delta, *rest])
    meta = {**snapshot.meta, "epoch": game_epoch}
    save_snapshot(path, model, meta)
    return path


def test_distance_from_the_start_is_exact(tmp_path):
    """An untrained snapshot has not moved; a known change to conv1 is measured as ‖δ‖ / ‖W₀‖."""
    import numpy as np

    from dqnviz.snapshot import starting_point
    from dqnviz.snapshot import load_snapshot

    untrained = make_snapshot(tmp_path / "breakout_1.keras", "breakout", 1, seed=7)
    start = starting_point(load_snapshot(untrained))
    assert start.reason == "" and set(start.movement) >= {"conv1", "conv2", "conv3", "fc", "q"}
    for layer, moved in start.movement.items():
        assert moved["change"] == 0.0 and moved["cosine"] == pytest.approx(1.0, abs=1e-9), layer

    w0 = load_snapshot(untrained).model.get_layer("conv1").get_weights()[0]
    delta = np.random.default_rng(0).normal(0.0, 0.01, w0.shape).astype(np.float32)
    changed = _changed_copy(untrained, tmp_path / "breakout_2.keras", 2, "conv1", delta)
    moved = starting_point(load_snapshot(changed)).movement
    assert moved["conv1"]["change"] == pytest.approx(np.linalg.norm(delta) / np.linalg.norm(w0), rel=1e-4)
    assert moved["conv1"]["cosine"] < 1.0 - 1e-4
    assert moved["conv2"]["change"] == 0.0


def test_a_shared_start_is_flagged_and_the_changes_compared(tmp_path):
    """Two games trained from the same seed start identical: their matched cosine is high before
    any learning, so the page flags the pair and compares what changed (here opposite changes)."""
    import numpy as np

    from dqnviz.report.compare import build_context, gather
    from dqnviz.snapshot import load_snapshot

    breakout = make_snapshot(tmp_path / "b.keras", "breakout", 1, seed=7)
    pong = make_snapshot(tmp_path / "p.keras", "pong", 1, seed=7)
    other = make_snapshot(tmp_path / "o.keras", "pong", 1, seed=8)
    w0 = load_snapshot(breakout).model.get_layer("conv1").get_weights()[0]
    delta = np.random.default_rng(1).normal(0.0, 0.02, w0.shape).astype(np.float32)
    a = _changed_copy(breakout, tmp_path / "breakout_3.keras", 3, "conv1", delta)
    b = _changed_copy(pong, tmp_path / "pong_3.keras", 3, "conv1", -delta)

    data = gather([load_snapshot(a), load_snapshot(b)], filters=1, max_steps=16, progress=False)
    (pair,) = data.shared_start
    assert (pair["a"], pair["b"], pair["seed"]) == (0, 1, 7)
    assert pair["alignment"]["conv1"] == pytest.approx(-1.0, abs=1e-5)
    assert np.isnan(pair["alignment"]["conv2"])  # unchanged in both: no direction to compare
    assert data.matching[0]["mean"] > 0.9  # high only because of the shared start
    context = build_context(data, {"games": 1, "epsilon": 0.05, "seed": 0, "max_steps": 16, "filters": 1})
    assert context["matching"][0]["shared_seed"] == 7 and context["shared_rows"]
    # their CKA began at 1, not at the chance level of unrelated untrained networks: no verdict against it
    assert [row["shared_seed"] for row in context["cka_rows"]] == [7, 7]
    assert all(verdict is None for row in context["cka_rows"] for verdict in row["verdict"].values())
    from dqnviz.report.render import render

    assert "read the <b>alignment of the changes</b> below" in render("compare.html.j2", **context)
    pair["alignment"] = {}  # as under a backend that cannot rebuild their start: no such section, nor a pointer to it
    context = build_context(data, {"games": 1, "epsilon": 0.05, "seed": 0, "max_steps": 16, "filters": 1})
    page = render("compare.html.j2", **context)
    assert not context["alignment_layers"] and "below instead" not in page
    assert "<b>alignment of their changes</b>, which would say more" in page
    assert all("see the alignment" not in line["text"] for line in context["summary"])

    unrelated = gather([load_snapshot(a), load_snapshot(other)], filters=1, max_steps=16, progress=False)
    assert unrelated.shared_start == [] and unrelated.matching[0]["mean"] < 0.5

    # the same seed and backend, but drawn by the older scheme (no "initialisation": one initialiser
    # for every kernel): another start, as pong-h100-10min_6 against the H200 agents
    older = load_snapshot(b)
    del older.meta["initialisation"]
    older_path = tmp_path / "pong_older_3.keras"
    from dqnviz.snapshot import save_snapshot

    save_snapshot(older_path, older.model, older.meta)
    assert gather([load_snapshot(a), load_snapshot(older_path)], filters=1, max_steps=16,
                  progress=False).shared_start == []


def test_the_start_of_a_snapshot_from_another_backend_is_not_guessed(tmp_path):
    import keras

    from dqnviz.snapshot import starting_point
    from dqnviz.snapshot import load_snapshot

    snapshot = load_snapshot(make_snapshot(tmp_path / "breakout_1.keras", "breakout", 1, seed=7))
    other = "jax" if keras.config.backend() == "tensorflow" else "tensorflow"
    snapshot.meta["backend"] = other
    start = starting_point(snapshot)
    assert start.movement == {} and start.initial is None
    assert f"KERAS_BACKEND={other}" in start.reason


def test_snapshots_record_how_far_they_moved_for_other_backends(tmp_path):
    """The trainer stores ‖W − W₀‖ / ‖W₀‖ and cos(W, W₀) in each snapshot: equal to what a rebuild
    from the seed measures, and what a backend that cannot rebuild W₀ shows instead. A run resumed
    under another backend keeps the backend that drew W₀ and records nothing it cannot know."""

    import keras

    from dqnviz.config import TrainConfig
    from dqnviz.snapshot import load_snapshot, save_snapshot, starting_point
    from tests.conftest import quiet_trainer

    def trainer_for(run, resume=None):
        config = TrainConfig(replay_size=500, batch_size=8, target_steps=20, validation_states=16, seed=3)
        return quiet_trainer(tmp_path, config, game="breakout", run=run, resume=resume)

    trainer = trainer_for("moved")
    trainer.run_phase(0, "random", 64)
    trainer.run_phase(1, "train", 48)
    snapshot = load_snapshot(trainer.save(1))
    recorded = snapshot.meta["movement"]
    assert snapshot.meta["initialised_under"] == keras.config.backend()
    rebuilt = starting_point(snapshot)
    assert rebuilt.source == "rebuilt" and set(recorded) == set(rebuilt.movement) >= {"conv1", "fc", "q"}
    for layer, figures in rebuilt.movement.items():
        assert recorded[layer]["change"] == pytest.approx(figures["change"], rel=1e-6, abs=1e-12), layer
        assert recorded[layer]["cosine"] == pytest.approx(figures["cosine"], rel=1e-6), layer
    assert recorded["conv1"]["change"] > 0  # 12 updates moved it

    other = "jax" if keras.config.backend() == "tensorflow" else "tensorflow"
    snapshot.meta["initialised_under"] = other
    shown = starting_point(snapshot)
    assert shown.source == "recorded" and shown.movement == recorded and shown.initial is None
    assert shown.backend == other and shown.reason == ""
    snapshot.meta["movement"] = {"conv1": {"change": "a lot"}}  # malformed: not shown, not fatal
    assert starting_point(snapshot).movement == {} and f"KERAS_BACKEND={other}" in starting_point(snapshot).reason

    snapshot.meta["movement"] = recorded
    save_snapshot(tmp_path / "other_1.keras", snapshot.model, snapshot.meta)
    resumed = trainer_for("other", resume=load_snapshot(tmp_path / "other_1.keras"))
    meta = load_snapshot(resumed.save(2)).meta
    assert meta["initialised_under"] == other and "movement" not in meta


def test_two_runs_of_one_game_are_compared_not_read_as_a_time_line(tmp_path):
    """Epochs of different runs count different trainings: the order given stays, the first is the reference."""
    from dqnviz.report.compare import order_snapshots
    from dqnviz.snapshot import load_snapshot

    gpu = load_snapshot(make_snapshot(tmp_path / "pong-gpu_2.keras", "pong", 2, run="pong-gpu"))
    cpu = load_snapshot(make_snapshot(tmp_path / "pong_24.keras", "pong", 24))
    cpu_early = load_snapshot(make_snapshot(tmp_path / "pong_3.keras", "pong", 3))
    ordered, evolution = order_snapshots([cpu, gpu])
    assert not evolution and [s.meta["run"] for s in ordered] == ["pong", "pong-gpu"]
    ordered, evolution = order_snapshots([cpu, cpu_early])  # one run: its epochs in order
    assert evolution and [s.meta["epoch"] for s in ordered] == [3, 24]


def test_two_runs_of_one_name_are_told_apart_by_identity_network_or_first_weights(tmp_path):
    """A user's `dqnviz train breakout` and the shipped breakout_13 share a name: their run
    identities (newer snapshots), else their networks or first weights, say they are two runs."""
    from dqnviz.report.compare import order_snapshots
    from dqnviz.report.render import distinct_labels
    from dqnviz.snapshot import load_snapshot

    def snapshot(name, epoch, **meta):
        loaded = load_snapshot(make_snapshot(tmp_path / f"{name}.keras", "breakout", epoch, run="breakout",
                                             dueling=meta.pop("dueling", False)))
        loaded.meta.update(meta)
        return loaded

    early, late = snapshot("a_1", 1, run_id="r1"), snapshot("a_5", 5, run_id="r1")
    assert order_snapshots([late, early]) == ([early, late], True)  # one identity: a time line
    other = snapshot("b_3", 3, run_id="r2")
    assert order_snapshots([late, other]) == ([late, other], False)  # two identities: two runs
    old_nature, old_dueling = snapshot("c_13", 13), snapshot("d_2", 2, dueling=True)
    assert not order_snapshots([old_nature, old_dueling])[1]  # no identities: the networks differ
    assert not order_snapshots([old_nature, early])[1]  # a run begun with an identity has no epoch without one
    adopted = snapshot("g_14", 14, run_id="r3", run_id_since=14)  # an old run resumed as itself at epoch 14
    assert order_snapshots([adopted, old_nature]) == ([old_nature, adopted], True)
    assert not order_snapshots([early, snapshot("h_1", 1, run_id="r1")])[1]  # two epoch 1s: forks, no time line
    assert not order_snapshots([snapshot("e_1", 1, init_seed=0), snapshot("e_2", 2, init_seed=1)])[1]
    assert order_snapshots([snapshot("f_1", 1, init_seed=4), snapshot("f_2", 2, init_seed=4)])[1]

    # labels: the stems, or as many folders as tell two files of one name apart
    paths = [tmp_path / "x" / "snapshots" / "breakout_1.keras", tmp_path / "y" / "snapshots" / "breakout_1.keras"]
    assert distinct_labels(paths) == ["x_snapshots_breakout_1", "y_snapshots_breakout_1"]
    assert distinct_labels([tmp_path / "p" / "breakout_1.keras", tmp_path / "q" / "breakout_1.keras"]) == [
        "p_breakout_1", "q_breakout_1"]
    assert distinct_labels(["snapshots/pong_24.keras", "snapshots/breakout_13.keras"]) == ["pong_24", "breakout_13"]
    assert distinct_labels([*paths, tmp_path / "x" / "snapshots" / "pong_2.keras"]) == [  # only those sharing a stem
        "x_snapshots_breakout_1", "y_snapshots_breakout_1", "pong_2"]
    assert distinct_labels([paths[0], paths[0], paths[1]]) == ["breakout_1", "breakout_1_2", "breakout_1_3"]
    pong = tmp_path / "a" / "pong.keras"
    assert distinct_labels([pong, pong, tmp_path / "a" / "pong_2.keras"]) == ["pong", "pong_3", "pong_2"]
    (tmp_path / "links").mkdir()
    (tmp_path / "links" / "early.keras").symlink_to(tmp_path / "a_1.keras")  # a link keeps the name it was given
    assert distinct_labels([tmp_path / "links" / "early.keras", tmp_path / "a_1.keras"]) == ["early", "a_1"]


@pytest.fixture
def no_games(monkeypatch):
    """Playing a game fails the test: what is checked must be checked up front."""
    import dqnviz.agent

    def refuse(*args, **kwargs):
        raise AssertionError("a game was played before the arguments were checked")

    monkeypatch.setattr(dqnviz.agent, "play_games", refuse)


def _fails_with_one_line(args, out, capsys):
    assert run_cli(["compare", *args, "--out", str(out), "--quiet"]) != 0
    err = capsys.readouterr().err.strip()
    assert len(err.splitlines()) == 1, err
    assert not out.exists()
    return err


@pytest.mark.parametrize("count", ["65", "100"])
def test_too_many_filters_fail_up_front_as_in_nvis(tmp_path, capsys, no_games, breakout_snapshot, pong_snapshot, count):
    err = _fails_with_one_line([breakout_snapshot, pong_snapshot, "--filters", count], tmp_path / "out.html", capsys)
    assert f"--filters {count} is out of range" in err and "conv1 32, conv2 64, conv3 64" in err and "1..64" in err


def test_a_history_below_three_fails_up_front(tmp_path, capsys, no_games, pong_snapshot):
    one = make_history_snapshot(tmp_path / "pong-h1_1.keras", 1)
    err = _fails_with_one_line([pong_snapshot, one], tmp_path / "out.html", capsys)
    assert "pong-h1_1 stacks 1 frame per state" in err and "--history 1" in err and "red, green and blue" in err


def test_a_history_of_three_is_compared_with_its_last_three_frames_as_rgb(tmp_path):
    import re

    from dqnviz.report.compare import four_frames

    a = make_history_snapshot(tmp_path / "pong-h3_1.keras", 3, seed=1)
    b = make_history_snapshot(tmp_path / "pong-h3_2.keras", 3, epoch=2, seed=2)
    out = tmp_path / "h3.html"
    assert run_cli(["compare", a, b, "--out", str(out), "--filters", "1", "--max-steps", "16", "--quiet"]) == 0
    page = re.sub(r"<script.*?</script>", " ", out.read_text(), flags=re.S)
    text = " ".join(re.sub(r"<[^>]+>", " ", page).split())
    assert "(t-2 · t-1 · t)" in text and "its 3 8×8 weight patches" in text and "t-3" not in text
    assert len(re.findall(r'<article class="card"', out.read_text())) == 2 * 3

    state = np.arange(3, dtype=np.uint8).reshape(1, 1, 3) + 1  # frames t-2, t-1, t = 1, 2, 3
    assert four_frames(state).tolist() == [[[0, 1, 2, 3]]]
    five = np.arange(5).reshape(1, 1, 5)  # t-4 … t: the last four are kept
    assert four_frames(five).tolist() == [[[1, 2, 3, 4]]]


def test_never_firing_filters_are_labelled_as_in_nvis(tmp_path):
    """conv1 filters 0 and 1 of one snapshot can never fire: their cards say so, with no unit box."""
    import re

    from dqnviz.snapshot import load_snapshot, save_snapshot

    path = make_snapshot(tmp_path / "breakout_1.keras", "breakout", 1)
    snapshot = load_snapshot(path)
    conv1 = snapshot.model.get_layer("conv1")
    kernel, bias = (np.asarray(w) for w in conv1.get_weights())
    bias[[0, 1]] = -1e4  # inputs are at most 1 after scaling
    conv1.set_weights([kernel, bias])
    save_snapshot(path, snapshot.model, snapshot.meta)
    other = str(make_snapshot(tmp_path / "pong_2.keras", "pong", 2, seed=1))
    out = tmp_path / "dead.html"
    assert run_cli(["compare", str(path), other, "--out", str(out), "--filters", "3", "--max-steps", "16",
                    "--quiet"]) == 0
    html = out.read_text()
    cards = dict(re.findall(r'<article class="card" data-snapshot="breakout_1" data-layer="conv1" '
                            r'data-filter="(\d+)"[^>]*>(.*?)</article>', html, re.S))
    assert sorted(cards) == ["0", "1", "2"]
    for dead in ("0", "1"):
        assert "never fires" in cards[dead] and "data-box" not in cards[dead] and "unit (y, x)" not in cards[dead]
        assert "activation" not in re.sub(r'title="[^"]*"', "", cards[dead])
    assert "never fires" not in cards["2"] and "data-box" in cards["2"] and "unit (y, x)" in cards["2"]
    # counted in the column's heading, and marked in the first-layer weights
    assert "2 of 32 filters never fire" in html
    weights = dict(re.findall(r'data-snapshot="breakout_1" data-weight-filter="(\d+)">(.*?)</div>', html, re.S))
    assert {f for f, text in weights.items() if "never fires" in text} == {"0", "1"}


def test_cards_are_strongest_first_by_the_activation_they_show(compared):
    """Deeper layers show each snapshot's most active filters in the order of the value on the card."""
    import re

    html = compared.read_text()
    for snapshot in ("breakout_1", "pong_2"):
        for layer in ("conv2", "conv3"):
            shown = re.findall(rf'data-snapshot="{snapshot}" data-layer="{layer}" data-filter="\d+">.*?'
                               r'(?:activation ([-0-9.e+]+)|never fires)', html, re.S)
            values = [float(v) if v else 0.0 for v in shown]
            assert len(values) == 2 and values == sorted(values, reverse=True), (snapshot, layer, values)


def test_matched_first_layer_cards_show_their_weights_cosine(compared):
    """Each conv1 card of the second snapshot names its partner and the cosine of their weights, the
    value computed here from the snapshots' kernels; the weight rows give the same cosine."""
    import re

    from dqnviz.snapshot import load_snapshot

    html = compared.read_text()
    folder = compared.parent
    kernels = {name: np.asarray(load_snapshot(folder / f"{name}.keras").model.get_layer("conv1").get_weights()[0],
                                np.float64) for name in ("breakout_1", "pong_2")}
    matches = re.findall(r'data-snapshot="pong_2" data-layer="conv1" data-filter="(\d+)">\s*<p class="match"[^>]*>'
                         r'matched to breakout_1\'s filter (\d+): weights cos <b>([-0-9.]+)</b>', html)
    assert len(matches) == 2
    for mine, theirs, cosine in matches:
        a, b = kernels["pong_2"][..., int(mine)].ravel(), kernels["breakout_1"][..., int(theirs)].ravel()
        assert float(cosine) == pytest.approx(a @ b / np.linalg.norm(a) / np.linalg.norm(b), abs=0.006)
        row = re.search(rf'data-snapshot="pong_2" data-weight-filter="{mine}">.*?</div>', html, re.S).group(0)
        assert f"cos {cosine}" in row
    first_column = re.findall(r'data-snapshot="breakout_1" data-layer="conv1" data-filter="\d+">(.*?)</article>', html, re.S)
    assert len(first_column) == 2 and not any('class="match"' in card for card in first_column)  # no partner


def test_all_filters_as_in_nvis(breakout_snapshot, pong_snapshot, monkeypatch):
    """``--filters all`` (nvis's spelling) is the largest layer's filter count."""
    from dqnviz.cli import build_parser
    from dqnviz.report.compare import check_filter_count
    from dqnviz.snapshot import load_snapshot

    args = build_parser().parse_args(["compare", breakout_snapshot, pong_snapshot, "--filters", "ALL"])
    assert args.filters == "all"
    snapshots = [load_snapshot(breakout_snapshot), load_snapshot(pong_snapshot)]
    assert check_filter_count(args.filters, snapshots) == 64  # conv2 and conv3 of the Nature network
    assert check_filter_count(8, snapshots) == 8


def _figure(html, key):
    """The plotly figure ``key`` of a compare page, as JSON."""
    import json
    import re

    return json.loads(re.search(rf'<script type="application/json" id="{key}">(.*?)</script>', html, re.S).group(1))


def test_a_score_cut_by_max_steps_says_so(compared):
    """--max-steps 40 stops the game: the score shown is a score so far, not a game's score."""
    import re

    text = " ".join(re.sub(r"<[^>]+>", " ", re.sub(r"<script.*?</script>", " ", compared.read_text(), flags=re.S)).split())
    assert text.count("(so far: the game was cut at 40 steps)") == 2


def test_charts_keep_their_legends_off_the_lines(compared):
    """CKA has a line per pair and per snapshot's states: each looks different, and the legend of long
    pair names sits under the chart, not over the lines (nor under the modebar)."""
    from tests.browser import open_report

    html = compared.read_text()
    assert "&lt;br&gt;" not in html  # the legend's line break stays in the legend, not in the table or summary
    cka = _figure(html, "fig-cka")
    styles = [(t["line"]["color"], t["line"]["dash"]) for t in cka["data"] if not t["name"].startswith("chance")]
    assert len(styles) == 2 and len(set(styles)) == 2
    chance = [t for t in cka["data"] if t["name"].startswith("chance")]  # dotted grey: the untrained pairs
    assert len(chance) == 2 and {(t["line"]["dash"], t["line"]["color"]) for t in chance} == {("dot", "#56606b")}
    assert len({t["marker"]["symbol"] for t in chance}) == 2
    assert cka["layout"]["legend"]["y"] < 0 and cka["layout"]["legend"]["yanchor"] == "top"
    match = _figure(html, "fig-match")
    assert match["layout"]["barmode"] != "overlay"  # overlaid bars hid the shorter ones behind them
    (chance,) = [s for s in match["layout"]["shapes"] if s["x0"] == s["x1"]]
    assert 0 < chance["x0"] < 0.5  # random vs random: the chance level the pairs are judged against
    assert _figure(html, "fig-erf")["layout"]["xaxis"]["title"]["text"] == "conv layer"
    lean = _figure(html, "fig-lean")["layout"]["shapes"]
    assert [s["y0"] for s in lean] == [25.0]  # an even share over 4 frames

    with open_report(compared, width=1300) as check:
        check.page.evaluate("() => window.dqnvizDrawAll()")
        boxes = check.page.evaluate("""() => Array.from(document.querySelectorAll('.chart .js-plotly-plot')).map(gd => {
            const box = e => { if (!e) return null; const r = e.getBoundingClientRect(); return [r.left, r.top, r.right, r.bottom]; };
            return [gd.parentElement.dataset.figure, box(gd.querySelector('.legend')), box(gd.querySelector('.nsewdrag'))]; })""")
        assert {key for key, _, _ in boxes} == {"fig-match", "fig-cka", "fig-lean", "fig-erf"}
        for key, legend, plot in boxes:
            if legend:
                assert legend[1] >= plot[3] or legend[3] <= plot[1], (key, legend, plot)
    with open_report(compared, width=390) as check:  # a phone: no legend entry runs past the page's edge
        check.page.evaluate("() => window.dqnvizDrawAll()")
        width = check.page.evaluate("() => document.documentElement.clientWidth")
        rights = check.page.evaluate("""() => Array.from(document.querySelectorAll('.chart .legend .traces text'))
            .map(t => t.getBoundingClientRect().right)""")
        assert rights and max(rights) <= width, (width, rights)


def test_a_narrow_window_scrolls_the_cards_not_the_page(compared):
    """Two columns of cards are 672 px at the least: in a 600 px window they scroll in their own box."""
    from tests.browser import open_report

    with open_report(compared, width=600) as check:
        page = check.page
        page.evaluate("() => window.dqnvizDrawAll()")
        assert page.evaluate("() => document.documentElement.scrollWidth") <= 600
        grids = page.evaluate("""() => Array.from(document.querySelectorAll('.cmp, .weights'))
            .map(g => [g.scrollWidth > g.clientWidth, getComputedStyle(g).overflowX])""")
        assert grids and all(overflow == "auto" for _, overflow in grids) and any(wide for wide, _ in grids)
        # a grid that scrolls says so above it; in a wide window no hint shows
        hints = page.evaluate("""() => Array.from(document.querySelectorAll('.scroll-hint'))
            .map(h => [getComputedStyle(h).display !== 'none', h.nextElementSibling.scrollWidth > h.nextElementSibling.clientWidth])""")
        assert len(hints) == 4 and all(shown == wide for shown, wide in hints) and any(shown for shown, _ in hints)
    with open_report(compared, width=1400) as check:
        assert check.page.evaluate("() => Array.from(document.querySelectorAll('.scroll-hint'))"
                                   ".filter(h => getComputedStyle(h).display !== 'none').length") == 0


def test_distance_from_the_start_without_a_measurement_is_one_line(tmp_path):
    """No snapshot could be measured: no table of empty layer columns and no key to its cells, one line
    with the reasons, each reason once."""
    import dataclasses

    from dqnviz.report.compare import build_context, gather, write_report
    from dqnviz.snapshot import load_snapshot

    a = make_snapshot(tmp_path / "breakout_1.keras", "breakout", 1, seed=7)
    b = make_snapshot(tmp_path / "pong_3.keras", "pong", 3, seed=8)
    data = gather([load_snapshot(a), load_snapshot(b)], filters=1, max_steps=16, progress=False)
    data.start = [dataclasses.replace(s, movement={}, initial=None, reason="it started under another backend")
                  for s in data.start]
    data.shared_start = []
    context = build_context(data, {"games": 1, "epsilon": 0.05, "seed": 0, "max_steps": 16, "filters": 1})
    assert context["movement_layers"] == []
    out = write_report(tmp_path / "c.html", context)
    html = out.read_text()
    assert "Not measured for breakout_1, pong_3: it started under another backend." in html
    assert "Each cell is" not in html
    data.start[1] = dataclasses.replace(data.start[1], reason="it predates those records")
    html = write_report(tmp_path / "d.html", build_context(data, {"games": 1, "epsilon": 0.05, "seed": 0,
                                                                 "max_steps": 16, "filters": 1})).read_text()
    assert ("Not measured for breakout_1: it started under another backend; for pong_3: it predates those records."
            in html)


def _layer_outputs(model, states, layers):
    """The outputs of ``layers`` of ``model`` on ``states``, computed here from scratch."""
    import keras

    probe = keras.Model(model.inputs[0], [model.get_layer(layer).output for layer in layers])
    return dict(zip(layers, (np.asarray(value) for value in probe(states, training=False))))


def test_every_cka_value_has_the_chance_level_of_untrained_networks_on_the_same_states(tmp_path):
    """The chance level of a CKA value is the CKA of the same layer between untrained networks of the
    two snapshots' architectures (fixed seeds, every pair of them), fed the same states: their mean,
    and their 5th and 95th percentiles as the band a value is judged against; the chart draws it as
    a dotted line and the table as a row under each pair."""
    from itertools import combinations

    from dqnviz.analysis.similarity import linear_cka
    from dqnviz.network import build_q_network
    from dqnviz.report.compare import CHANCE_SEEDS, CKA_STATES, _evenly, build_context, gather, write_report
    from dqnviz.snapshot import load_snapshot

    plain = make_snapshot(tmp_path / "breakout_1.keras", "breakout", 1, seed=7)  # 4 actions
    dueling = make_snapshot(tmp_path / "pong_2.keras", "pong", 2, dueling=True, seed=8)  # 6 actions
    data = gather([load_snapshot(plain), load_snapshot(dueling)], filters=1, max_steps=24, progress=False)
    assert data.cka_layers == ["conv1", "conv2", "conv3", "fc"] and len(data.cka) == 2 * 4
    untrained = {(kind, seed): build_q_network(4, seed=seed) if kind == "plain" else
                 build_q_network(6, dueling=True, seed=seed) for kind in ("plain", "dueling") for seed in CHANCE_SEEDS}
    outputs = {}
    for owner in (0, 1):
        states = data.played[owner].states
        states = states[_evenly(len(states), CKA_STATES)]
        for key, model in untrained.items():
            outputs[key + (owner,)] = _layer_outputs(model, states, data.cka_layers)
    for entry in data.cka:
        layer, owner = entry["layer"], entry["on"]
        expected = [linear_cka(outputs[("plain", s, owner)][layer], outputs[("dueling", t, owner)][layer])
                    for s, t in combinations(CHANCE_SEEDS, 2)]
        assert len(expected) == 15
        assert entry["chance_draws"] == pytest.approx(expected, abs=1e-5), entry["layer"]
        assert entry["chance"] == pytest.approx(np.mean(expected), abs=1e-5)
        assert entry["chance_range"] == pytest.approx(tuple(np.quantile(expected, (0.05, 0.95))), abs=1e-5)
        assert min(expected) < entry["chance_range"][0] < entry["chance_range"][1] < max(expected)
    conv1 = [e["chance"] for e in data.cka if e["layer"] == "conv1"]
    assert min(conv1) > 0.8  # untrained first layers already arrange the states alike: the reason for a reference

    context = build_context(data, {"games": 1, "epsilon": 0.05, "seed": 0, "max_steps": 24, "filters": 1})
    assert not any(row["same_game"] or row["repeats"] for row in context["cka_rows"])  # two games, two sets of states
    for row in context["cka_rows"]:
        owner = 0 if "(breakout_1)" in row["label"] else 1
        for layer in data.cka_layers:
            (entry,) = [e for e in data.cka if e["on"] == owner and e["layer"] == layer]
            assert row["chance"][layer] == entry["chance"]
            low, high = entry["chance_range"]
            assert row["verdict"][layer] == ("above" if entry["value"] > high else "below" if entry["value"] < low
                                             else "within")
    html = write_report(tmp_path / "c.html", context).read_text()
    traces = _figure(html, "fig-cka")["data"]
    chance = [t for t in traces if t["name"].startswith("chance")]
    assert len(chance) == 2 and all(t["line"]["dash"] == "dot" for t in chance)  # one per set of states
    for trace in chance:
        owner = 0 if "(breakout_1)" in trace["name"] else 1
        level = {e["layer"]: e for e in data.cka if e["on"] == owner}
        assert trace["y"] == pytest.approx([level[layer]["chance"] for layer in trace["customdata"]], abs=1e-4)
        high = [level[layer]["chance_range"][1] - level[layer]["chance"] for layer in trace["customdata"]]
        assert trace["error_y"]["array"] == pytest.approx(high, abs=1e-4)  # the bar reaches the 95th percentile
        assert "5th–95th percentiles" in trace["hovertemplate"]
    assert "Chance level." in html and html.count('class="chance-row"') == 2
    assert ", ".join(str(seed) for seed in CHANCE_SEEDS) in html
    text = " ".join(html.split())
    assert "6 networks per architecture, so 15 pairs" in text and "5th and 95th percentiles" in text
    assert "mean; 5th–95th percentile of 15 pairs" in text
    assert "lowest and highest" not in text  # the band is no longer the extremes of three pairs


def _untrained_played(*architectures, states=24, seed=0):
    """``Played`` stand-ins for untrained networks of ``(actions, dueling)``, with random states."""
    from types import SimpleNamespace

    from dqnviz.network import build_q_network
    from dqnviz.report.compare import Played, layer_facts

    played = []
    rng = np.random.default_rng(seed)
    for k, (actions, dueling) in enumerate(architectures):
        model = build_q_network(actions, dueling=dueling, seed=100 + k)
        conv, shapes, kernels = layer_facts(model)
        frames = rng.integers(0, 256, size=(states, 84, 84, 4), dtype=np.uint8)
        played.append(Played(SimpleNamespace(model=model, name=f"net{k}", meta={}), frames, [], conv, shapes, kernels))
    return played


def test_the_cka_chance_level_rests_on_many_pairs_for_the_forward_passes_of_few(monkeypatch):
    """Three untrained pairs gave a noisy chance level: it now rests on the 15 pairs of 6 networks,
    the same whenever it is computed (fixed seeds). Each network's layers are reduced once to a Gram
    matrix, and a layer equal to one already computed (the trunk of another action count, built from
    one seed) is not computed again: per set of states, one forward pass per seed."""
    import functools

    import dqnviz.report.compare as compare
    from dqnviz.report.compare import CHANCE_SEEDS, _common_layers, chance_levels, untrained_network

    played = _untrained_played((4, False), (6, False))
    layers, _ = _common_layers(played, "all")
    assert layers == ["conv1", "conv2", "conv3", "fc"]  # q: different action sets
    subsets = [p.states for p in played]
    passes = []
    real = compare._activations
    monkeypatch.setattr(compare, "_activations", lambda model, states, names, **kw: passes.append(list(names))
                        or real(model, states, names, **kw))
    levels = chance_levels(played, [(0, 1)], subsets, layers, functools.cache(untrained_network))
    assert len(passes) == 2 * len(CHANCE_SEEDS)  # not 2 × 2 × 6: the 6-action trunks equal the 4-action ones
    again = chance_levels(played, [(0, 1)], subsets, layers, functools.cache(untrained_network))
    assert set(levels) == {(0, 1, 0), (0, 1, 1)}
    for key, by_layer in levels.items():
        assert set(by_layer) == set(layers)
        for layer, level in by_layer.items():
            draws = level["chance_draws"]
            assert len(draws) == 15 and all(0 < d < 1 for d in draws)  # no pair of one network with itself
            assert level["chance"] == pytest.approx(np.mean(draws))
            assert level["chance_range"] == pytest.approx(tuple(np.quantile(draws, (0.05, 0.95))))
            assert again[key][layer] == level  # deterministic: fixed seeds, no random permutation


def test_the_chance_level_of_architectures_that_differ_in_the_trunk_computes_both(monkeypatch):
    """A dueling network's fc follows fc_value in its layers: its Gram matrix is not assumed equal to
    a plain network's, and each architecture gets its own forward passes."""
    import functools

    import dqnviz.report.compare as compare
    from dqnviz.report.compare import CHANCE_SEEDS, _layer_fingerprints, chance_levels, untrained_network
    from dqnviz.network import build_q_network

    same = [_layer_fingerprints(build_q_network(actions, seed=5)) for actions in (4, 6)]
    assert all(same[0][layer] == same[1][layer] for layer in ("conv1", "conv2", "conv3", "fc"))
    assert same[0]["q"] != same[1]["q"]
    assert _layer_fingerprints(build_q_network(4, seed=6))["conv1"] != same[0]["conv1"]

    played = _untrained_played((4, False), (4, True), states=12)
    passes = []
    real = compare._activations
    monkeypatch.setattr(compare, "_activations", lambda model, states, names, **kw: passes.append(list(names))
                        or real(model, states, names, **kw))
    subsets = [p.states for p in played]
    levels = chance_levels(played, [(0, 1)], subsets, ["conv1", "fc"], functools.cache(untrained_network))
    assert [len(level["chance_draws"]) for level in levels[(0, 1, 0)].values()] == [15, 15]
    # per set of states, the plain nets (seeds s of the pairs s < t: the first 5) and the dueling nets
    # (seeds t: the last 5): conv1 once per seed, fc once per network
    computed = [layer for names in passes for layer in names]
    assert computed.count("conv1") == 2 * len(CHANCE_SEEDS)
    assert computed.count("fc") == 2 * 2 * (len(CHANCE_SEEDS) - 1)


def test_dueling_streams_are_not_joined_into_one_line(tmp_path):
    """A dueling network branches after conv3 into fc_value → value and fc → advantage, joined in q:
    the CKA chart and table group the layers by stream, and no line runs from one stream to another."""
    from dqnviz.network import build_q_network
    from dqnviz.report.compare import build_context, gather, layer_streams
    from dqnviz.snapshot import load_snapshot

    everything = ["conv1", "conv2", "conv3", "fc_value", "fc", "value", "advantage", "q"]  # model order
    dueling, plain = build_q_network(4, dueling=True, seed=1), build_q_network(4, seed=1)
    assert layer_streams([dueling, dueling], everything) == [
        {"label": "trunk", "layers": ["conv1", "conv2", "conv3"]},
        {"label": "value stream", "layers": ["fc_value", "value"]},
        {"label": "advantage stream", "layers": ["fc", "advantage"]},
        {"label": "q: joins the streams", "layers": ["q"]}]
    plain_layers = ["conv1", "conv2", "conv3", "fc", "q"]
    assert layer_streams([plain, plain], plain_layers) == [{"label": None, "layers": plain_layers}]
    # different action sets: advantage and q are not compared, fc still reads as the advantage stream
    assert layer_streams([dueling, build_q_network(6, dueling=True, seed=1)], everything[:-2]) == [
        {"label": "trunk", "layers": ["conv1", "conv2", "conv3"]},
        {"label": "value stream", "layers": ["fc_value", "value"]},
        {"label": "advantage stream", "layers": ["fc"]}]
    # plain against dueling: the layers both have are one path through each (fc → advantage → q), in either order
    for pair in ([plain, dueling], [dueling, plain]):
        assert layer_streams(pair, plain_layers) == [{"label": None, "layers": plain_layers}]
        assert layer_streams(pair, plain_layers[:-1]) == [{"label": None, "layers": plain_layers[:-1]}]

    a = make_snapshot(tmp_path / "breakout_1.keras", "breakout", 1, dueling=True, seed=3)
    b = make_snapshot(tmp_path / "breakout-other_1.keras", "breakout", 1, dueling=True, seed=4, run="breakout-other")
    data = gather([load_snapshot(a), load_snapshot(b)], filters=1, max_steps=16, progress=False)
    assert data.cka_layers == everything
    assert {e["layer"] for e in data.cka if e["chance"] is not None} == set(everything)
    context = build_context(data, {"games": 1, "epsilon": 0.05, "seed": 0, "max_steps": 16, "filters": 1})
    assert context["cka_layers"] == ["conv1", "conv2", "conv3", "fc_value", "value", "fc", "advantage", "q"]
    streams = [s["layers"] for s in context["cka_streams"]]
    figure = json.loads(context["figures"]["fig-cka"])
    groups = {}
    for trace in figure["data"]:
        layers = list(trace["customdata"])
        assert any(layers == stream[stream.index(layers[0]):stream.index(layers[0]) + len(layers)]
                   for stream in streams if layers[0] in stream), layers  # within one stream, in order
        groups.setdefault(trace["name"], []).append(layers)
    assert len(groups) == 4  # both sets of states, each with its chance level
    for name, pieces in groups.items():
        assert sorted(map(tuple, pieces)) == sorted(map(tuple, streams)), name  # a piece per stream
        assert [t["showlegend"] for t in figure["data"] if t["name"] == name].count(True) == 1
    xs = {layer: x for t in figure["data"] for layer, x in zip(t["customdata"], t["x"])}
    assert xs["value"] < xs["fc"] and xs["fc"] - xs["value"] > xs["conv2"] - xs["conv1"]  # a gap between streams
    labels = [a["text"] for a in figure["layout"]["annotations"]]
    assert labels == ["trunk", "value stream", "advantage stream", "q: joins the streams"]


def test_a_network_that_dqnviz_did_not_build_is_one_chain():
    """Layer names outside :func:`dqnviz.network.network_streams` are not guessed into streams."""
    import keras

    from dqnviz.report.compare import layer_streams

    states = keras.Input((8,), name="state")
    joined = keras.layers.Add(name="join")([keras.layers.Dense(4, name="left")(states),
                                            keras.layers.Dense(4, name="right")(states)])
    model = keras.Model(states, keras.layers.Dense(3, name="q")(joined))
    assert layer_streams([model], ["left", "right", "q"]) == [{"label": None, "layers": ["left", "right", "q"]}]


def test_an_architecture_that_cannot_be_built_has_no_untrained_network():
    """The untrained reference is None, not an error, where build_q_network cannot build that shape."""
    from dqnviz.network import build_q_network
    from dqnviz.report.compare import architecture, untrained_network

    assert untrained_network((6, False, 4, (4, 4)), 0) is None  # 4×4 frames: smaller than conv1's 8×8 kernel
    built = untrained_network(architecture(build_q_network(6, dueling=True)), 7)
    same = build_q_network(6, dueling=True, seed=7)
    assert architecture(built) == (6, True, 4, (84, 84))
    assert all(np.array_equal(a, b) for a, b in zip(built.get_weights(), same.get_weights()))


def test_cards_open_on_the_units_receptive_field_as_in_nvis(compared):
    """Both images of every live card carry the zoom window of the field its box shows (nvis's rule);
    a silent card has none."""
    import re

    from dqnviz.report.nvis import zoom_window

    html = compared.read_text()
    cards = re.findall(r'<article class="card" data-snapshot="[^"]+" data-layer="[^"]+" data-filter="\d+">(.*?)</article>',
                       html, re.S)
    live = [card for card in cards if "data-box" in card]
    assert live
    for card in live:
        box = [int(v) for v in re.search(r'data-box="(\d+),(\d+),(\d+),(\d+)', card).groups()]
        window = zoom_window(box, (84, 84))
        assert window is not None and card.count(f'data-zoom="{",".join(map(str, window))}"') == 2
    assert all("data-zoom" not in card for card in cards if "data-box" not in card)


def test_the_page_says_its_findings_in_short(compared):
    """A line per finding at the top: the matched cosine (the table's number) against random networks'
    level as a ratio, each CKA pair's layers by their place against the chance band (as the table
    colours them), and the count of filters that never fire."""
    import re

    html = compared.read_text()
    text = " ".join(re.sub(r"<script.*?</script>|<[^>]+>", " ", html, flags=re.S).split())
    found = re.search(r"First-layer filters, breakout_1 vs pong_2: mean matched cosine ([0-9.]+); the filters of random "
                      r"networks match at ([0-9.]+)–([0-9.]+), so the pair is ([0-9.]+)× the level", text)
    assert found, text[text.find("In short"):][:1500]
    mean, low, high, ratio = (float(v) for v in found.groups())
    table = re.search(r'<td class="num big">([0-9.]+)</td>', html).group(1)
    assert mean == float(table) and low <= high and ratio == pytest.approx(mean / high, abs=0.06)
    summary = html.split('id="summary"')[1].split("</div>")[0]
    for row in re.findall(r"<li><b>CKA, (.*?):</b> (.*?)\.</li>", summary):
        label, verdicts = row
        cells = re.search(re.escape(label) + r"</td>(.*?)</tr>", html, re.S).group(1)
        for verdict, words in (("above", "above chance"), ("within", "within the chance band"), ("below", "below chance")):
            coloured = len(re.findall(rf'class="num {verdict}"', cells))
            assert (words in verdicts) == (coloured > 0), (label, verdict)
    assert re.search(r"<li><b>CKA, ", summary)


def test_many_runs_are_compared_with_the_first_unless_every_pair_is_asked_for(tmp_path, monkeypatch):
    """8 snapshots of separate runs made 28 pairs: 112 CKA rows, a legend taller than its chart,
    colours that repeat. Beyond 4 snapshots the default is each against the first (--pairs all
    gives every pair); one run's epochs stay consecutive; the option reaches gather."""
    from dqnviz.report import compare

    assert compare.choose_pairs(4, False) == [(0, 1), (0, 2), (0, 3), (1, 2), (1, 3), (2, 3)]
    assert compare.choose_pairs(8, False) == [(0, j) for j in range(1, 8)]
    assert len(compare.choose_pairs(8, False, "all")) == 28
    assert compare.choose_pairs(3, False, "first") == [(0, 1), (0, 2)]
    assert compare.choose_pairs(4, True) == [(0, 1), (1, 2), (2, 3)]
    assert compare.choose_pairs(4, True, "first") == [(0, 1), (0, 2), (0, 3)]
    with pytest.raises(ValueError):
        compare.choose_pairs(3, False, "some")
    # the turn after which each network is let go: that of its last partner, or its own
    assert compare.last_turns(compare.choose_pairs(4, False), 4) == [3, 3, 3, 3]
    assert compare.last_turns(compare.choose_pairs(8, False), 8) == [7, 1, 2, 3, 4, 5, 6, 7]
    assert compare.last_turns(compare.choose_pairs(4, True), 4) == [1, 2, 3, 3]

    seen = {}

    class Reached(Exception):
        pass

    def gather(snapshots, **options):
        seen.update(options)
        raise Reached

    monkeypatch.setattr(compare, "gather", gather)
    a = make_snapshot(tmp_path / "a_1.keras", "pong", seed=1)
    b = make_snapshot(tmp_path / "b_1.keras", "pong", seed=2)
    with pytest.raises(Reached):
        run_cli(["compare", str(a), str(b), "--pairs", "first", "--out", str(tmp_path / "c.html")])
    assert seen["pairs"] == "first"
    assert run_cli(["compare", str(a), str(b), "--pairs", "some"]) == 2


def test_one_runner_network_gives_each_seeds_own_activations():
    """The CKA chance level runs every seed of an architecture through one network, its weights
    loaded in turn, so that the passes compile once: its compiled pass must read the weights it
    holds at each call, giving each seed's own activations."""
    from dqnviz.report.compare import _activations, untrained_network

    arch = (6, False, 4, (84, 84))
    states = np.random.default_rng(0).integers(0, 256, (5, 84, 84, 4)).astype(np.float32)
    runner = untrained_network(arch, seed=0)
    for seed in (1, 2, 1):
        own = untrained_network(arch, seed=seed)
        runner.set_weights(own.get_weights())
        through_runner = _activations(runner, states, ["conv2", "fc"])
        for layer, values in _activations(own, states, ["conv2", "fc"]).items():
            np.testing.assert_allclose(through_runner[layer], values, rtol=1e-5, atol=1e-5)
    assert not np.allclose(_activations(untrained_network(arch, seed=1), states, ["fc"])["fc"],
                           _activations(untrained_network(arch, seed=2), states, ["fc"])["fc"])


def test_each_snapshot_keeps_only_the_states_read_after_its_own_analysis(tmp_path, monkeypatch):
    """After a snapshot's cards, receptive fields and patterns, its game is let go but for the
    states the page draws (the cards') and those of CKA, under their indices in the game: they
    equal the states played, and the game's length stays what the page reports."""
    import dqnviz.agent
    import dqnviz.report.compare as compare
    from dqnviz.agent import checked_env_for_snapshot, play_games
    from dqnviz.report.compare import KeptStates, _evenly, gather
    from dqnviz.snapshot import load_snapshot

    monkeypatch.setattr(compare, "CKA_STATES", 8)
    snapshots = [load_snapshot(make_snapshot(tmp_path / "breakout_1.keras", "breakout", 1, seed=7)),
                 load_snapshot(make_snapshot(tmp_path / "pong_2.keras", "pong", 2, seed=8))]

    def compiled(model):
        return [key[1:] for key in vars(model).get("_dqnviz_compiled", {}) if key[1] != "own operations"]

    at_second_play = []

    def recording_play(model, *args, **options):
        if model is snapshots[1].model:  # the first snapshot's turn is over, its pair's CKA not begun
            at_second_play.append(compiled(snapshots[0].model))
        return play_games(model, *args, **options)

    monkeypatch.setattr(dqnviz.agent, "play_games", recording_play)
    data = gather(snapshots, filters=1, max_steps=24, progress=False)
    monkeypatch.setattr(dqnviz.agent, "play_games", play_games)
    # each network's compiled analyses (searches, guided backprop, receptive fields) are let go
    # with its game, before the next snapshot plays; what is left is CKA's one pass over its
    # layers, compiled after. Without let_go the snapshots keep their networks.
    assert at_second_play == [[]]
    for snapshot in snapshots:
        kept = compiled(snapshot.model)
        assert len(kept) == 1 and kept[0][0] == "forward" and len(kept[0][1]) == len(data.cka_layers)
    for i, (p, snapshot) in enumerate(zip(data.played, snapshots)):
        game = play_games(snapshot.model, checked_env_for_snapshot(snapshot, seed=0), games=1, epsilon=0.05,
                          seed=0, max_steps=24).states
        assert isinstance(p.states, KeptStates) and len(p.states) == len(game) == 24
        assert p.states.shape == game.shape and p.states.dtype == game.dtype
        shown = {c["state"] for layer in data.conv_layers for c in data.cards[layer][i]}
        kept = shown | set(_evenly(24, 8).tolist())
        assert len(kept) < 24  # some of the game was let go
        for s in kept:
            assert np.array_equal(p.states[s], game[s])
        assert np.array_equal(p.states[np.array(sorted(kept))], game[sorted(kept)])
        for gone in set(range(24)) - kept:  # the ERF's and the patterns' states too, once used
            with pytest.raises(IndexError, match=f"state {gone} of 24 was not kept"):
                p.states[gone]
        # read only by indices in the game: what would name states by their place among the kept
        # ones (a slice, a mask, the whole as an array) is refused
        for wrong in (lambda: p.states[:3], lambda: p.states[np.ones(24, bool)], lambda: np.asarray(p.states),
                      lambda: list(p.states)):
            with pytest.raises(TypeError, match="kept states"):
                wrong()


def test_a_mixed_up_snapshot_is_said_before_any_game_is_played(tmp_path, monkeypatch):
    """Each snapshot is played and analysed in turn, so its game is checked for every snapshot
    first: a wrong last one is one line up front, not after minutes of the others' analyses."""
    import dqnviz.agent
    from dqnviz.errors import UserError
    from dqnviz.report.compare import gather
    from dqnviz.snapshot import load_snapshot

    played = []
    monkeypatch.setattr(dqnviz.agent, "play_games", lambda *args, **kwargs: played.append(args))
    first = load_snapshot(make_snapshot(tmp_path / "breakout_1.keras", "breakout", 1, seed=7))
    mixed_up = load_snapshot(make_snapshot(tmp_path / "pong_2.keras", "breakout", 2, seed=8))
    mixed_up.meta["game"] = "pong"  # a Breakout snapshot said to be of Pong
    with pytest.raises(UserError, match=r"pong_2\.keras: the snapshot's metadata .* names the game 'pong'"):
        gather([first, mixed_up], filters=1, max_steps=8, progress=False)
    assert played == []
