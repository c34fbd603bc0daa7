"""Executors: local and Ray give the same outputs; a failed task is retried once then reported; a
killed worker's task is redone; configuration errors are one clear message before any work."""

import importlib
import importlib.util
import json
import sys

import pytest

from headveil.common.errors import HeadVeilError, MissingDependencyError
from headveil.pipelines.executor import LocalExecutor, TaskFailure, make_executor

TASKS = '''
import os
from pathlib import Path

def square(x):
    if x == 3:
        raise ValueError("three is refused")
    return x * x

def die_once(arg):
    """Kill the worker process the first time task 2 runs (a marker file remembers)."""
    x, marker = arg
    if x == 2 and not Path(marker).exists():
        Path(marker).write_text("died")
        os._exit(1)
    return x * 10
'''

needs_ray = pytest.mark.skipif(importlib.util.find_spec("ray") is None, reason="needs headveil[dist]")


@pytest.fixture()
def tasks_mod(tmp_path, monkeypatch):
    (tmp_path / "hv_exec_tasks.py").write_text(TASKS)
    monkeypatch.syspath_prepend(str(tmp_path))  # spawned workers get the parent's sys.path
    sys.modules.pop("hv_exec_tasks", None)
    return importlib.import_module("hv_exec_tasks")


@pytest.mark.parametrize("workers", [1, 2])
def test_local_results_failures_and_a_killed_worker(tasks_mod, tmp_path, workers):
    got = dict(LocalExecutor(workers).run(tasks_mod.square, list(range(5))))
    assert {i: v for i, v in got.items() if not isinstance(v, TaskFailure)} == {0: 0, 1: 1, 2: 4, 4: 16}
    assert isinstance(got[3], TaskFailure) and "three is refused" in got[3].error
    if workers > 1:  # a worker killed in the middle: its task is redone, nothing lost or duplicated
        out = list(LocalExecutor(workers).run(tasks_mod.die_once, [(i, str(tmp_path / "m")) for i in range(5)]))
        assert sorted(out) == [(i, 10 * i) for i in range(5)]


def test_configuration_errors_are_clear():
    with pytest.raises(HeadVeilError, match="--executor must be one of"):
        make_executor("spark")
    with pytest.raises(HeadVeilError, match="applies to --executor ray only"):
        make_executor("local", 1, "127.0.0.1:6379")
    with pytest.raises(HeadVeilError, match="--workers must be"):
        make_executor("local", 0)


def test_without_ray_the_message_names_the_extra(monkeypatch):
    monkeypatch.setitem(sys.modules, "ray", None)
    with pytest.raises(MissingDependencyError, match="dist"):
        make_executor("ray", 1)


@needs_ray
def test_an_unreachable_cluster_fails_before_any_work():
    import time

    t0 = time.perf_counter()
    with pytest.raises(HeadVeilError, match="cannot be reached"):
        make_executor("ray", 1, "127.0.0.1:1")
    assert time.perf_counter() - t0 < 10


@needs_ray
def test_ray_matches_local_and_redoes_a_killed_worker(tasks_mod, tmp_path):
    from ray import cloudpickle

    from headveil.pipelines.evaluate.evalset import EvalSetCommand, run_evalset

    cloudpickle.register_pickle_by_value(tasks_mod)  # Ray workers do not see the test's sys.path
    with make_executor("ray", 2) as ex:
        got = dict(ex.run(tasks_mod.square, list(range(5))))
        assert got[4] == 16 and isinstance(got[3], TaskFailure) and "three is refused" in got[3].error
        out = list(ex.run(tasks_mod.die_once, [(i, str(tmp_path / "m")) for i in range(5)]))
        assert sorted(out) == [(i, 10 * i) for i in range(5)]
    import ray

    assert not ray.is_initialized()  # the local runtime it started is gone
    cloudpickle.unregister_pickle_by_value(tasks_mod)
    kw = dict(subjects=2, views=(0.0,), lights=("front",), methods=("blur", "mask"), image_size=96, workers=2)
    run_evalset(EvalSetCommand(out=tmp_path / "l", **kw))
    run_evalset(EvalSetCommand(out=tmp_path / "r", executor="ray", **kw))

    def sums(d):
        return {json.loads(x)["id"]: {k: v["sha256"] for k, v in json.loads(x)["files"].items()}
                for x in (d / "evalset.jsonl").read_text().splitlines()}

    assert sums(tmp_path / "l") == sums(tmp_path / "r") and len(sums(tmp_path / "l")) == 6
    man = json.loads((tmp_path / "r" / "manifest.json").read_text())
    assert man["backends"]["executor"] == "ray" and man["backends"]["address"] == "local runtime"


@needs_ray
@pytest.mark.faces
def test_batch_deid_is_the_same_on_two_workers_and_on_ray(tmp_path, model):
    import skimage.data

    from headveil.common.images import write_image
    from headveil.common.outputs import sha256_file
    from headveil.pipelines.deid import DeidCommand, run_deid
    from headveil.pipelines.evaluate.calibration import package_photos

    (tmp_path / "in").mkdir()
    write_image(tmp_path / "in" / "a.png", skimage.data.astronaut()[:384, 64:448])
    write_image(tmp_path / "in" / "b.png", dict(package_photos())["lenna"])
    write_image(tmp_path / "in" / "c.png", skimage.data.astronaut()[:8, :8])  # no face: reported, not fatal
    sums = []
    for i, kw in enumerate(({}, {"workers": 2}, {"executor": "ray", "workers": 2})):
        res = run_deid(DeidCommand([tmp_path / "in"], guard="off", insecure_reproducible=True, seed=5,
                                   out=tmp_path / f"o{i}", **kw), model)
        assert len(res["done"]) == 2 and len(res["failed"]) == 1
        sums.append({n: (sha256_file(tmp_path / f"o{i}" / n / "deid.png"),
                         sha256_file(tmp_path / f"o{i}" / n / "face0" / "mesh.ply")) for n in res["done"].values()})
    assert sums[0] == sums[1], "local: 1 vs 2 workers"
    assert sums[1] == sums[2], "local vs ray"


@needs_ray
@pytest.mark.faces
def test_eval_metrics_are_the_same_on_the_executors(tmp_path):
    from headveil.pipelines.evaluate.evalset import EvalSetCommand, run_evalset
    from headveil.pipelines.evaluate.evaluate import EvalCommand, run_eval

    run_evalset(EvalSetCommand(subjects=3, views=(0.0,), lights=("front",), methods=("blur", "mask"), image_size=128,
                               out=tmp_path / "s"))
    got = []
    for kw in ({}, {"workers": 2}, {"executor": "ray", "workers": 2}):
        m = run_eval(EvalCommand(tmp_path / "s", utility=False, **kw))
        got.append(json.dumps(m, sort_keys=True, default=str))
    assert got[0] == got[1] == got[2]


@needs_ray
@pytest.mark.faces
def test_the_chep_table_is_the_same_on_ray(tmp_path):
    from headveil.pipelines.evaluate.table1 import Table1Command, run_table1

    kw = dict(identities=8, splits=((5, 3),), qs=(2,), yaws=(0.0,), size=128, recognizers=("sface",), workers=2)
    a = run_table1(Table1Command(out=tmp_path / "l", **kw))
    b = run_table1(Table1Command(out=tmp_path / "r", executor="ray", **kw))
    a.pop("seconds"), b.pop("seconds")
    assert json.dumps(a, sort_keys=True) == json.dumps(b, sort_keys=True)
