import pytest

from pumpkin import manifest
from pumpkin.errors import ManifestError
from pumpkin.tags import StateTag

GREET = """
###START-CONF
##{
##"object_name": "greet",
##"object_poi": "my-greet-1234",
##"auto-load" : false,
##"parameters": [ {"name": "name", "type": "String", "state" : "UNGREETED"} ],
##"return": [ {"name": "greeting", "type": "String", "state" : "GREETING", "description": "a greeting"} ] }
##END-CONF
class greet: pass
"""


def test_legacy_manifest_is_read_without_importing():
    m = manifest.parse_legacy(GREET, "default")
    assert m is not None
    assert m.name == "greet" and m.poi == "my-greet-1234" and m.auto_load is False
    assert m.inputs == (StateTag("default", "String", "UNGREETED"),)
    assert m.outputs == (StateTag("default", "String", "GREETING"),)
    assert m.description == "a greeting"


def test_no_block_means_no_legacy_manifest():
    assert manifest.parse_legacy("class X: pass\n", "default") is None


def test_auto_load_defaults_to_true_and_alternatives_expand():
    src = GREET.replace('##"auto-load" : false,\n', "").replace('"UNGREETED"', '"POSITIVE|NEGATIVE"')
    m = manifest.parse_legacy(src, "g")
    assert m.auto_load is True
    assert [t.state for t in m.inputs] == ["POSITIVE", "NEGATIVE"]
    assert {t.group for t in m.inputs} == {"g"}


def test_bad_json_names_the_line():
    src = GREET.replace('"object_poi": "my-greet-1234",', '"object_poi": "my-greet-1234"')
    with pytest.raises(ManifestError, match=r"line \d+: manifest is not valid JSON"):
        manifest.parse_legacy(src, "default")


def test_missing_end_mark_and_missing_state_are_errors():
    with pytest.raises(ManifestError, match="no matching ##END-CONF"):
        manifest.parse_legacy(GREET.replace("##END-CONF", ""), "default")
    with pytest.raises(ManifestError, match="has no 'state'"):
        manifest.parse_legacy(GREET.replace('"state" : "UNGREETED"', '"x": 1'), "default")
    with pytest.raises(ManifestError, match="object_name"):
        manifest.parse_legacy(GREET.replace('"object_name": "greet",', ""), "default")


def test_modern_declarations():
    assert manifest.parse_declared(["A", "String:B|C"], "g", "consumes") == (
        StateTag("g", "*", "A"),
        StateTag("g", "String", "B"),
        StateTag("g", "String", "C"),
    )
    with pytest.raises(ManifestError, match="'emits'"):
        manifest.parse_declared("a:b:c:d", "g", "emits")
