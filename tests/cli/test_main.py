import pytest

from cloudgate import __version__
from cloudgate.cli.main import build_parser, main


def test_no_command_prints_help(capsys):
    assert main([]) == 2
    assert "serve" in capsys.readouterr().out


def test_version(capsys):
    with pytest.raises(SystemExit) as info:
        main(["--version"])
    assert info.value.code == 0
    assert __version__ in capsys.readouterr().out


def test_every_command_has_help():
    parser = build_parser()
    sub = next(a for a in parser._actions if a.dest == "command")
    assert set(sub.choices) >= {"serve", "emulator", "demo"}
    for name, sub_parser in sub.choices.items():
        assert sub_parser.description, name
