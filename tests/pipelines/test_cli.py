import subprocess
import sys

import pytest

from headveil.pipelines.cli import load_commands, main


@pytest.mark.parametrize("sub", sorted(load_commands()))
def test_every_subcommand_has_help(sub, capsys):
    with pytest.raises(SystemExit) as e:
        main([sub, "--help"])
    assert e.value.code == 0
    assert "usage" in capsys.readouterr().out.lower()


def test_info_json(capsys):
    import json

    with pytest.raises(SystemExit) as e:
        main(["info", "--json"])
    assert e.value.code == 0
    info = json.loads(capsys.readouterr().out)
    # what info reports is what this machine has, read independently
    from headveil.geometry.morphable.model import load_embedded
    from headveil.geometry.perception.recognizers import is_available
    from headveil.neural_fields.encodings import available_backends as hg
    from headveil.render.deid.registry import available_methods
    from headveil.render.rasterize import available_backends as raster

    assert info["embedded_model"]["identity_components"] == load_embedded().n_id
    assert {b for b, v in info["raster_backends"].items() if v == "available"} == set(raster())
    assert {b for b, v in info["hashgrid_backends"].items() if v == "available"} == set(hg())
    assert set(info["deid_methods"]) == set(available_methods())
    assert {r for r, v in info["recognizers"].items() if v == "available"} == {r for r in info["recognizers"]
                                                                               if is_available(r)}


def test_user_error_exits_2_with_one_line(tmp_path):
    (tmp_path / "x.png").write_bytes(b"junk")
    proc = subprocess.run([sys.executable, "-m", "headveil", "fit", str(tmp_path / "nothing_here")],
                          capture_output=True, text=True)
    assert proc.returncode == 2
    assert proc.stderr.strip().splitlines()[-1].startswith("headveil: error:")


def test_the_cli_is_the_command_registry():
    """Every subcommand comes from the registry, with a …Command config; a new module registering a
    command appears without touching cli.py."""
    from headveil.pipelines.commands import COMMANDS, command

    cmds = load_commands()
    assert {"info", "synth", "fit", "demo", "evalset", "eval", "report", "reconstruct", "protect", "deid", "recover",
            "keygen", "chep-table", "build-model", "donors", "anonymize", "build-attributes"} == set(cmds)
    assert all(c.config.__name__.endswith("Command") for c in cmds.values())
    with pytest.raises(TypeError, match="Command"):
        command("bad", type("BadConfig", (), {}))
    from dataclasses import dataclass

    @dataclass
    class EchoCommand:
        word: str = "hi"

    @command("echo-test", EchoCommand)
    def _echo(cfg):
        print(cfg.word)
        return 3

    try:
        with pytest.raises(SystemExit) as e:
            main(["echo-test", "--word", "yo"])
        assert e.value.code == 3
    finally:
        COMMANDS._entries.pop("echo-test")


def _cli_configs():
    import dataclasses

    seen, todo = [], [c.config for c in load_commands().values()]
    while todo:
        c = todo.pop()
        if c in seen or not dataclasses.is_dataclass(c):
            continue
        seen.append(c)
        todo += [type(f.default_factory()) for f in dataclasses.fields(c) if f.default_factory is not dataclasses.MISSING
                 and dataclasses.is_dataclass(f.default_factory())]
    return seen


def test_every_option_is_documented():
    """Every field of every command's config (nested ones included) has a docstring, the text its
    --help shows."""
    import ast
    import inspect
    import textwrap

    missing = []
    for c in _cli_configs():
        body = ast.parse(textwrap.dedent(inspect.getsource(c))).body[0].body
        for i, st in enumerate(body):
            if isinstance(st, ast.AnnAssign):
                nxt = body[i + 1] if i + 1 < len(body) else None
                if not (isinstance(nxt, ast.Expr) and isinstance(getattr(nxt, "value", None), ast.Constant)
                        and isinstance(nxt.value.value, str) and nxt.value.value.strip()):
                    missing.append(f"{c.__name__}.{st.target.id}")
    assert not missing, f"options without help text: {missing}"


@pytest.mark.parametrize("sub", sorted(load_commands()))
def test_help_is_plain_text(sub, capsys):
    """--help shows no reStructuredText markup and no unset default as 'None' for a number."""
    import re

    with pytest.raises(SystemExit):
        main([sub, "--help"])
    out = capsys.readouterr().out
    assert "``" not in out and not re.search(r":(func|class|meth|mod):`", out), out
    for opt in re.findall(r"--[a-z-]+ (?:FLOAT|INT)\b[^│]*│[^│]*", out):
        assert "(default: None)" not in opt
