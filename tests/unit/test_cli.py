import subprocess
import sys

import pytest

from svcpulse.cli import build_parser, main

COMMANDS = ["up", "services", "migrate", "load", "api", "otlp", "dlq", "retention", "schema", "balancer haproxy",
            "collect tcp", "collect load", "dashboards build", "dashboards push"]


@pytest.mark.parametrize("command", COMMANDS)
def test_every_command_has_help_with_a_worked_example(command: str, capsys: pytest.CaptureFixture) -> None:
    with pytest.raises(SystemExit) as exited:
        build_parser().parse_args([*command.split(), "--help"])
    assert exited.value.code == 0
    assert f"svcpulse {command}" in capsys.readouterr().out.split("example:")[1]


def test_every_command_has_a_worked_example_in_the_docs() -> None:
    from pathlib import Path

    doc = (Path(__file__).parents[2] / "docs" / "cli.md").read_text()
    for command in COMMANDS:
        assert f"## svcpulse {command}" in doc and f"$ svcpulse {command}" in doc, command


def test_schema_export_writes_one_schema_per_kind(tmp_path) -> None:
    assert main(["schema", "export", str(tmp_path)]) == 0
    assert sorted(p.name for p in tmp_path.iterdir()) == [
        "dlq.schema.json", "load.schema.json", "rpc.schema.json", "tcp.schema.json"]


def test_bad_store_url_is_one_line_and_exit_2() -> None:
    result = subprocess.run([sys.executable, "-m", "svcpulse", "migrate", "--store", "mysql://nope"],
                            capture_output=True, text=True, timeout=60)
    assert result.returncode == 2
    assert result.stderr.strip().startswith("svcpulse migrate: store URL 'mysql://nope'")
    assert "Traceback" not in result.stderr


def test_the_readme_configuration_reference_lists_every_setting() -> None:
    from pathlib import Path

    from core.settings import Settings

    readme = (Path(__file__).parents[2] / "README.md").read_text()
    for name in Settings.model_fields:
        assert f"| `SVCPULSE_{name.upper()}` |" in readme, name
