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
    assert info["embedded_model"]["identity_components"] >= 80
    assert set(info["raster_backends"]) == {"embree", "numpy"}
    assert info["hashgrid_backends"]["torch"] == "available" and "tcnn" in info["hashgrid_backends"]
    assert {"blur", "pixelate", "mask"} <= set(info["deid_methods"]) and set(info["recognizers"]) == {"dlib", "sface"}


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
            "keygen", "chep-table", "build-model"} == set(cmds)
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
