"""Issue 23, names and files accepted that should not be: `submission --submitter/--system`
become directory names, so only letters, digits, '.', '-' and '_' pass; a --system-json field
of the wrong type is named, with its file, in one line. Refused before anything is read or written."""

from __future__ import annotations

import json

import pytest

from hostile import refused

pytestmark = pytest.mark.fault  # `make faults` runs every test so marked

BAD_NAMES = ["a\nb", "a\tb", "a\x1bb", "a\x7fb", "$(id)", "*", "a?", "a/b", "..", "a..b", "~", "~root", "a b",
             " a", "-rf", ".hidden", "", "Acmé", "a;b", "a|b", "a`b`", "a'b", 'a"b', "a\\b", "a\rb"]


def submission(tmp_path, submitter="Acme", system="box", system_json=None) -> list:
    runs = tmp_path / "runs"
    runs.mkdir(exist_ok=True)
    return ["submission", f"--submitter={submitter}", f"--system={system}", "--runs", runs,
            "--out", tmp_path / "out", "--allow-short", *(["--system-json", system_json] if system_json else [])]


@pytest.mark.parametrize("option", ["--submitter", "--system"])
@pytest.mark.parametrize("name", BAD_NAMES, ids=[repr(n) for n in BAD_NAMES])
def test_a_name_that_is_not_a_plain_directory_name_is_refused(tmp_path, option, name):
    names = {"--submitter": "Acme", "--system": "box", option: name}
    line = refused(*submission(tmp_path, names["--submitter"], names["--system"]), within_s=60)
    assert option in line and "not a usable name" in line and "letters, digits" in line, line
    assert not (tmp_path / "out").exists()


@pytest.mark.parametrize("name", ["Acme", "ACME_Corp-2", "box.v1", "a1", "9"])
def test_plain_names_pass_the_name_check(tmp_path, name):
    """They get as far as looking for runs (there are none here)."""
    line = refused(*submission(tmp_path, name, name), within_s=60)
    assert "not a usable name" not in line, line


@pytest.mark.parametrize("field, value", [("cooling", 1), ("cooling", ["air"]), ("host_memory_configuration", {"a": 1}),
                                          ("framework", True), ("operating_system", None), ("hw_notes", 1.5),
                                          ("number_of_nodes", [1]), ("accelerators_per_node", 2.5)])
def test_a_system_json_field_of_the_wrong_type_is_named_with_its_file(tmp_path, field, value):
    sysjson = tmp_path / "sys.json"
    sysjson.write_text(json.dumps({"cooling": "air", "host_memory_configuration": "2x 16GB", field: value}))
    line = refused(*submission(tmp_path, system_json=sysjson), within_s=60)
    assert str(sysjson) in line and field in line and "expects" in line, line
    assert not (tmp_path / "out").exists()


def test_a_count_may_be_a_json_number(tmp_path):
    sysjson = tmp_path / "sys.json"
    sysjson.write_text(json.dumps({"cooling": "air", "host_memory_configuration": "x", "number_of_nodes": 1,
                                   "accelerators_per_node": 0}))
    line = refused(*submission(tmp_path, system_json=sysjson), within_s=60)
    assert "expects" not in line, line  # it got as far as looking for runs
