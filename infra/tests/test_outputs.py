"""The outputs interface the portal reads after `cdk deploy --outputs-file` (no synthesis needed)."""

from __future__ import annotations

import json

import pytest

from infra import outputs


def deployed_outputs() -> dict[str, dict[str, str]]:
    """What `cdk deploy --all --outputs-file` writes, with a value for every documented output."""
    return {stack: {key: f"{stack}.{key}" for key in keys} for stack, keys in outputs.STACK_OUTPUTS.items()}


def test_every_stack_has_its_outputs_listed():
    assert list(outputs.STACK_OUTPUTS) == list(outputs.STACK_NAMES)
    assert len(set(outputs.STACK_NAMES)) == len(outputs.STACK_NAMES)


def test_every_portal_setting_comes_from_a_documented_output():
    for item in outputs.PORTAL_SETTINGS:
        assert item.output_key in outputs.STACK_OUTPUTS[item.stack], item
    assert len({item.setting for item in outputs.PORTAL_SETTINGS}) == len(outputs.PORTAL_SETTINGS)


def test_settings_from_outputs_maps_the_outputs_file(tmp_path):
    path = tmp_path / "outputs.json"
    path.write_text(json.dumps(deployed_outputs()))
    settings = outputs.settings_from_outputs_file(path)
    assert settings["COGNITO_USER_POOL_ID"] == f"{outputs.API_STACK}.UserPoolId"
    assert settings["COGNITO_CLIENT_ID"] == f"{outputs.API_STACK}.UserPoolClientId"
    assert settings["ATHENA_WORKGROUP"] == f"{outputs.ATHENA_STACK}.AthenaWorkGroupName"
    assert settings["ATHENA_OUTPUT_LOCATION"] == f"{outputs.ATHENA_STACK}.AthenaOutputLocation"
    assert settings["LAKE_DATABASE"] == f"{outputs.TABLE_STACK}.GlueDatabaseName"
    assert settings["LAKE_TABLE"] == f"{outputs.TABLE_STACK}.GlueTableName"
    assert settings["AWS_REGION"] == settings["COGNITO_REGION"] == f"{outputs.API_STACK}.Region"
    assert settings["LAKE_EVENTS_TABLE"] == f"{outputs.EVENTS_STACK}.EventsTableName"
    assert settings["EVENTS_FIREHOSE_STREAM"] == f"{outputs.EVENTS_STACK}.EventsFirehoseStreamName"
    assert set(settings) == {item.setting for item in outputs.PORTAL_SETTINGS}


def test_a_missing_stack_is_named():
    partial = deployed_outputs()
    del partial[outputs.API_STACK]
    with pytest.raises(outputs.MissingOutputError, match=f"{outputs.API_STACK}.UserPoolId"):
        outputs.settings_from_outputs(partial)
    lenient = outputs.settings_from_outputs(partial, strict=False)
    assert "COGNITO_USER_POOL_ID" not in lenient and lenient["LAKE_TABLE"]


def test_settings_that_portal_settings_reads_exist_there():
    """Names shared with portal/settings.py must be the variables it reads (when the portal is present)."""
    from pathlib import Path

    settings_py = Path(__file__).resolve().parents[2] / "portal" / "settings.py"
    if not settings_py.exists():
        pytest.skip("portal/settings.py is not there")
    text = settings_py.read_text()
    for name in ("AWS_REGION", "COGNITO_REGION", "COGNITO_USER_POOL_ID", "COGNITO_CLIENT_ID",
                 "LAKE_DATABASE", "LAKE_TABLE", "ATHENA_WORKGROUP", "ATHENA_OUTPUT_LOCATION"):
        assert f'"{name}"' in text, f"portal/settings.py no longer reads {name}"


def test_the_events_stack_comes_last_and_its_outputs_are_required():
    """Deploying the events stack is part of `cdk deploy --all`: a portal deployed before issue 15 whose
    outputs lack it is told which stack to deploy, and with strict=False keeps its other settings."""
    assert outputs.STACK_NAMES[-1] == outputs.EVENTS_STACK
    partial = deployed_outputs()
    del partial[outputs.EVENTS_STACK]
    with pytest.raises(outputs.MissingOutputError, match=f"{outputs.EVENTS_STACK}.EventsFirehoseStreamName"):
        outputs.settings_from_outputs(partial)
    lenient = outputs.settings_from_outputs(partial, strict=False)
    assert "EVENTS_FIREHOSE_STREAM" not in lenient and "LAKE_EVENTS_TABLE" not in lenient
    assert lenient["LAKE_DATABASE"] == f"{outputs.TABLE_STACK}.GlueDatabaseName"


def test_events_settings_are_the_ones_portal_settings_reads():
    """The stack's outputs name the settings portal/settings.py reads (a deploy hands them to the portal)."""
    from pathlib import Path

    text = (Path(__file__).resolve().parents[2] / "portal" / "settings.py").read_text()
    for name in ("LAKE_EVENTS_TABLE", "EVENTS_FIREHOSE_STREAM"):
        assert f'"{name}"' in text, f"portal/settings.py does not read {name}"
