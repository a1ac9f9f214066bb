import pytest

from pumpkin import tags
from pumpkin.errors import TagError
from pumpkin.tags import StateTag


def test_full_and_shorthand_tags_expand_against_the_group():
    assert tags.parse("g:String:UNGREETED") == StateTag("g", "String", "UNGREETED")
    assert tags.parse("String:UNGREETED", "lab") == StateTag("lab", "String", "UNGREETED")
    assert tags.parse("UNGREETED", "lab") == StateTag("lab", "*", "UNGREETED")
    assert str(tags.parse("String:X")) == "default:String:X"


def test_alternatives_inherit_group_and_type_from_the_first():
    assert tags.parse_alternatives("TweetString:POSITIVE|NEGATIVE") == [
        StateTag("default", "TweetString", "POSITIVE"),
        StateTag("default", "TweetString", "NEGATIVE"),
    ]
    assert tags.parse_alternatives("A|A") == [StateTag("default", "*", "A")]


def test_matching_needs_group_and_state_and_compatible_types():
    s = tags.parse("String:GREETING")
    assert s.matches(tags.parse("GREETING"))
    assert tags.parse("GREETING").matches(s)
    assert not s.matches(tags.parse("Bytes:GREETING"))
    assert not s.matches(tags.parse("other:String:GREETING"))
    assert not s.matches(tags.parse("String:UNGREETED"))


@pytest.mark.parametrize("bad", ["", "a:b:c:d", "String:", "has space", "x:y:z z", ":X"])
def test_malformed_tags_say_what_is_wrong(bad):
    with pytest.raises(TagError, match="state tag"):
        tags.parse(bad)


def test_pseudo_states():
    assert tags.injection("g") == StateTag("g", "Seed", "INJECTION")
    assert tags.extraction().is_pseudo
    assert not tags.parse("Seed:OTHER").is_pseudo
