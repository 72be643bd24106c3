"""The drill's settings: options resolved against drill.yaml once, with one rule for the waiting windows' scale."""

from __future__ import annotations

import subprocess
import sys
from pathlib import Path

import pytest

from rollback_drill.config import DrillConfig, check_time_scale, load_config, time_scale_problem
from rollback_drill.errors import ConfigError, InputError
from rollback_drill.options import OPTIONS, DrillOptions, resolve_settings
from rollback_drill.settings import Settings, TimeScale, parse_participants, resolve_time_scale

ROOT = Path(__file__).resolve().parents[1]


@pytest.fixture(scope="module")
def config() -> DrillConfig:
    return load_config()


def raw(**given: object):
    """``get(dest)`` as argparse or pytest would answer it: the table's defaults, with ``given`` (by flag name) on top."""
    values = {option.dest: option.default for option in OPTIONS}
    for name, value in given.items():
        values["drill_" + name] = value
    return values.__getitem__


# --- precedence ----------------------------------------------------------------------------------


def test_without_options_the_settings_are_the_defaults_and_drill_yaml(config):
    settings = resolve_settings(raw())
    assert settings.config == config
    assert (settings.target, settings.taskdb, settings.phase, settings.keep, settings.notify) == (
        "local",
        "container",
        6,
        "never",
        "sinks",
    )
    assert settings.time_scale == config.time_scale
    assert settings.time_scale_source == "drill.yaml"
    assert dict(settings.participants) == dict(config.participants)
    assert settings.incident_commander == config.incident_commander
    assert settings.evidence_dir == Path("reports")


def test_the_time_scale_option_wins_over_drill_yaml(config):
    settings = DrillOptions(time_scale=0.5).resolve(config)
    assert (settings.time_scale, settings.time_scale_source) == (0.5, "--time-scale")


def test_a_kubeconfig_target_keeps_real_windows_unless_the_option_says_otherwise(config):
    staging = DrillOptions(target="kubeconfig", kubeconfig=Path("staging.kubeconfig"), taskdb="dsn")
    assert config.time_scale != 1.0, "the packaged drill.yaml scales its windows; this test needs that"
    assert (staging.resolve(config).time_scale, staging.resolve(config).time_scale_source) == (1.0, "kubeconfig target")
    scaled = DrillOptions(target="kubeconfig", kubeconfig=Path("staging.kubeconfig"), taskdb="dsn", time_scale=0.25)
    assert scaled.resolve(config).time_scale == 0.25


@pytest.mark.parametrize(
    ("option", "target", "expected"),
    [
        (None, "local", 0.01),
        (None, "kind", 0.01),
        (None, "kubeconfig", 1.0),
        (0.2, "local", 0.2),
        (0.2, "kubeconfig", 0.2),
    ],
)
def test_time_scale_precedence_option_then_target_then_drill_yaml(option, target, expected):
    assert resolve_time_scale(option, target, 0.01).factor == expected


def test_participants_and_commander_come_from_the_options_over_drill_yaml(config):
    settings = resolve_settings(raw(participants="SRE On-Call=Ana,Engineering TL=Bo", incident_commander="Cy"))
    assert dict(settings.participants) == {"SRE On-Call": "Ana", "Engineering TL": "Bo"}
    assert settings.incident_commander == "Cy"
    only_commander = resolve_settings(raw(incident_commander="Cy"))
    assert dict(only_commander.participants) == dict(config.participants)


def test_closed_choices_are_typed(config):
    settings = resolve_settings(raw(phase="7", target="kind", keep="on-failure", notify="live", taskdb="local"))
    assert settings.phase == 7
    assert (settings.target, settings.keep, settings.notify, settings.taskdb) == ("kind", "on-failure", "live", "local")


def test_a_value_outside_a_closed_choice_is_refused_with_the_choices():
    with pytest.raises(ConfigError, match="--keep 'sometimes' is not one of never, on-failure, always"):
        resolve_settings(raw(keep="sometimes"))


def test_settings_are_frozen(config):
    settings = resolve_settings(raw())
    with pytest.raises(AttributeError):
        settings.time_scale = 1.0  # type: ignore[misc]


def test_settings_carry_the_loaded_configuration_of_config(tmp_path, config):
    copy = tmp_path / "drill.yaml"
    copy.write_text(Path(config.source).read_text())
    settings = resolve_settings(raw(config=str(copy)))
    assert settings.config_path == copy
    assert settings.config.source == str(copy)


# --- the one rule for the waiting windows' scale ------------------------------------------------


@pytest.mark.parametrize(
    ("value", "message"),
    [
        ("0", "--time-scale must be greater than 0, got 0; use e.g. --time-scale 0.01"),
        ("-1", "--time-scale must be greater than 0, got -1"),
        ("3", "--time-scale must be at most 1 (waiting windows are only ever shortened), got 3; use e.g."),
        ("1.5", "--time-scale must be at most 1"),
        ("nan", "--time-scale must be a finite number"),
        ("inf", "--time-scale must be a finite number"),
        ("abc", "--time-scale 'abc' is not a number; use e.g. --time-scale 0.01"),
    ],
)
def test_a_time_scale_option_outside_0_to_1_is_refused_at_start_naming_the_fix(value, message):
    with pytest.raises(ConfigError) as info:
        resolve_settings(raw(time_scale=value))
    assert message in str(info.value)
    assert "\n" not in str(info.value)


@pytest.mark.parametrize("value", ["1", "0.00005", "0.5"])
def test_a_time_scale_in_0_to_1_is_accepted(value):
    assert resolve_settings(raw(time_scale=value)).time_scale == float(value)


@pytest.mark.parametrize(("value", "ok"), [(1, True), (0.01, True), (0, False), (-0.5, False), (1.01, False)])
def test_one_rule_for_drill_yaml_the_option_and_the_library(value, ok):
    assert (time_scale_problem(value) is None) is ok
    if ok:
        assert check_time_scale(value) == value
    else:
        with pytest.raises(InputError, match="time_scale"):
            check_time_scale(value)


def test_a_scenarios_own_scale_applies_only_where_drill_yaml_would(config):
    assert TimeScale(0.01, "drill.yaml").for_rehearsal(0.00005) == 0.00005
    assert TimeScale(0.3, "--time-scale").for_rehearsal(0.00005) == 0.3
    assert TimeScale(1.0, "kubeconfig target").for_rehearsal(0.00005) == 1.0
    settings = Settings(config=config, time_scale=0.01, time_scale_source="drill.yaml")
    assert settings.rehearsal_time_scale(0.00005) == 0.00005


def test_a_scenarios_own_scale_obeys_the_same_rule():
    with pytest.raises(ConfigError, match="the rehearsal's time scale must be at most 1"):
        TimeScale(0.01, "drill.yaml").for_rehearsal(3)


def test_cross_option_checks_come_with_the_resolution():
    with pytest.raises(ConfigError, match="--target kubeconfig needs --kubeconfig PATH"):
        resolve_settings(raw(target="kubeconfig"))


@pytest.mark.parametrize("taskdb", ["container", "local"])
def test_a_kubeconfig_target_refuses_a_taskdb_the_drill_would_make_itself(taskdb):
    with pytest.raises(ConfigError) as refused:
        resolve_settings(raw(target="kubeconfig", kubeconfig="staging.kubeconfig", taskdb=taskdb))
    assert str(refused.value) == (
        "--target kubeconfig reaches staging's TaskDB: pass --taskdb dsn with ROLLBACK_DRILL_TASKDB_DSN set"
    )


@pytest.mark.parametrize("target", ["local", "kind"])
def test_a_drill_made_target_refuses_somebodys_database_by_dsn(target):
    with pytest.raises(ConfigError, match=f"--taskdb dsn names a database the drill did not create.*--target {target}"):
        resolve_settings(raw(target=target, taskdb="dsn"))


def test_staging_is_a_kubeconfig_target_with_its_taskdb_by_dsn():
    settings = resolve_settings(raw(target="kubeconfig", kubeconfig="staging.kubeconfig", taskdb="dsn"))
    assert (settings.target, settings.taskdb) == ("kubeconfig", "dsn")


def test_participants_parse_and_refuse_what_is_not_role_equals_name():
    assert parse_participants("SRE On-Call = Ana , Engineering TL=Bo") == {"SRE On-Call": "Ana", "Engineering TL": "Bo"}
    assert parse_participants(None) == {}
    with pytest.raises(ConfigError, match="is not Role=Name"):
        parse_participants("SRE On-Call")


# --- refused at start, through both front doors --------------------------------------------------


def test_time_scale_3_is_refused_by_the_command_before_anything_runs(tmp_path):
    result = subprocess.run(
        [sys.executable, "-m", "rollback_drill.cli", "run", "--time-scale", "3", "--evidence-dir", str(tmp_path)],
        capture_output=True,
        text=True,
        timeout=120,
        check=False,
        cwd=ROOT,
    )
    assert result.returncode == 2, result
    lines = result.stderr.strip().splitlines()
    assert len(lines) == 1, lines
    assert "--time-scale must be at most 1" in lines[0]
    assert "--time-scale 0.01" in lines[0]
    assert not list(tmp_path.iterdir()), "a refused drill left evidence behind"


def test_time_scale_3_is_a_usage_error_for_plain_pytest_before_collection():
    result = subprocess.run(
        [
            sys.executable,
            "-m",
            "pytest",
            "features/test_reenablement.py",
            "--time-scale",
            "3",
            "-p",
            "no:cacheprovider",
            "--collect-only",
            "-q",
        ],
        capture_output=True,
        text=True,
        timeout=120,
        check=False,
        cwd=ROOT,
    )
    assert result.returncode == pytest.ExitCode.USAGE_ERROR, result
    assert "--time-scale must be at most 1" in result.stderr
    assert "collected" not in result.stdout, "pytest collected scenarios before refusing the option"


def test_a_kubeconfig_target_without_dsn_is_a_usage_error_for_plain_pytest_before_collection():
    result = subprocess.run(
        [sys.executable, "-m", "pytest", "features/test_drill.py", "--target", "kubeconfig",
         "--kubeconfig", "staging.kubeconfig", "-p", "no:cacheprovider", "--collect-only", "-q"],
        capture_output=True, text=True, timeout=120, check=False, cwd=ROOT,
    )  # fmt: skip
    assert result.returncode == pytest.ExitCode.USAGE_ERROR, result
    assert "--target kubeconfig reaches staging's TaskDB: pass --taskdb dsn" in result.stderr
    assert "collected" not in result.stdout, "pytest collected scenarios before refusing the options"
