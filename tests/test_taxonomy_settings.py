import re
from pathlib import Path

import pytest

from instrusense.settings import Settings, SettingsError, load_settings
from instrusense.taxonomy import FAMILIES, FAMILY_OF, LABELS, display_name, to_taxonomy

REPO = Path(__file__).resolve().parents[1]


def test_taxonomy_is_the_spec_table():
    assert len(LABELS) == 28 and len(set(LABELS)) == 28
    assert set(FAMILIES) == {"keyboard", "plucked_string", "bowed_string", "woodwind", "brass", "percussion",
                             "voice", "electronic"}
    assert FAMILY_OF["cello"] == "bowed_string" and FAMILY_OF["mallet_percussion"] == "percussion"
    assert all(re.fullmatch(r"[a-z_]+", k) for k in LABELS)


@pytest.mark.parametrize("name,key", [("Violin, fiddle", "violin"), ("French Horn", "french_horn"),
                                      ("Marimba, xylophone", "mallet_percussion"), ("Speech", None),
                                      ("double-bass", "double_bass"), ("Drum kit", "drums")])
def test_foreign_label_names_map_onto_the_taxonomy(name, key):
    assert to_taxonomy(name) == key


def test_display_names():
    assert display_name("french_horn") == "French horn"
    assert display_name("acoustic_guitar") == "Acoustic guitar"


def test_environment_overrides_defaults_and_flags_override_environment():
    s = load_settings({"INSTRUSENSE_HOP_SECONDS": "0.75", "INSTRUSENSE_MODEL": "x/y"}, model="local/dir")
    assert s.hop_seconds == 0.75 and s.model == "local/dir"
    assert load_settings({}) == Settings()


def test_boolean_settings_read_words_not_truthiness():
    assert load_settings({"INSTRUSENSE_QUANTIZE": "false"}).quantize is False
    assert load_settings({"INSTRUSENSE_QUANTIZE": "1"}).quantize is True


@pytest.mark.parametrize("env", [{"INSTRUSENSE_QUANTIZE": "maybe"}, {"INSTRUSENSE_BATCH_SIZE": "many"}, {"INSTRUSENSE_THRESHOLD": "1.5"},
                                 {"INSTRUSENSE_HOP_SECONDS": "0"}, {"INSTRUSENSE_DEVICE": "gpu"}])
def test_bad_settings_name_the_variable(env):
    with pytest.raises(SettingsError, match=next(iter(env))):
        load_settings(env)


def test_env_example_lists_every_setting():
    text = (REPO / ".env.example").read_text()
    listed = set(re.findall(r"^INSTRUSENSE_(\w+)=", text, re.M))
    assert listed == {f.upper() for f in Settings.__dataclass_fields__}


def test_every_setting_rejects_nonsense_limits():
    for name in ("max_upload_mb", "max_duration_seconds", "request_timeout_seconds", "concurrency_limit"):
        with pytest.raises(ValueError, match=name.upper()):
            load_settings({f"INSTRUSENSE_{name.upper()}": "0"})
